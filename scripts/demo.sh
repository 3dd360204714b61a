#!/usr/bin/env bash
# The README's first command: set up, then run the processor on the bundled example.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
VENV=${VENV:-.venv}
exec "$VENV/bin/ncd-processor" demo "$@"
