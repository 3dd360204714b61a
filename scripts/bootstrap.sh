#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the project into it
# with its test dependencies, from the project's own files only (the lock in requirements/).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# Everything comes from the hash-pinned lock (scripts/lock.sh regenerates it), then the
# project itself without dependencies: a changed or tampered package fails the install.
stamp="$VENV/.installed-$(cat pyproject.toml requirements/dev.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    "$VENV/bin/python" -m pip install --quiet --require-hashes -r requirements/dev.txt
    "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
    rm -f "$VENV"/.installed-* && touch "$stamp"
fi
