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
"$VENV/bin/python" -m pytest "$@"
