#!/usr/bin/env bash
# The test command of the README and of CI: set up, then lint, type-check and run every test
# (unit, contract, and integration against a real Kafka-protocol broker the suite starts itself).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check processor tests bench
"$VENV/bin/mypy"
"$VENV/bin/python" -m pytest "$@"
