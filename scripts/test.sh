#!/usr/bin/env bash
# The test command of the README and of CI: set up, then lint, type-check, audit the
# dependencies and run every test (unit, contract, integration against a real Kafka-protocol
# broker the suite starts itself, and the slow reliability suite).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check processor tests bench scripts
"$VENV/bin/mypy"
"$VENV/bin/python" scripts/audit.py
# kcat (a Kafka client nobody here wrote) reads the worker's output in one test; CI runs
# as root and installs it; elsewhere that test skips, saying why, when kcat is missing.
if ! command -v kcat >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q kcat >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q kcat >/dev/null; }
fi
# The test broker, Apache Kafka, assembled from Maven Central on its own line so its time
# shows (seconds with a warm ~/.m2; skipped where no JDK exists: the suite says so loudly).
if command -v java >/dev/null && command -v mvn >/dev/null; then
    "$VENV/bin/python" -m tests.apache_kafka --assemble
fi
# Test files run in parallel processes (each with its own broker where it needs one): the
# broker tests spend most of their time waiting, so this halves the wall time on 2 cores.
"$VENV/bin/python" -m pytest -n "${TEST_WORKERS:-4}" --dist loadfile "$@"
