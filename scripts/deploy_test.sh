#!/usr/bin/env bash
# CI step for deploy/: the image built with podman and run against a Kafka broker, and the
# configuration files checked by their tools (pytest -m deploy tests/deploy). Installs what
# it needs from Debian's packages when missing (podman, runc, debootstrap, promtool), so it
# runs on a fresh machine as root. The broker: KAFKA_BOOTSTRAP_SERVERS when set, else the
# one the test suite starts itself.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ] || ! command -v promtool >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        echo "deploy: missing ${need[*]} promtool; install podman runc debootstrap prometheus" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    [ ${#need[@]} -eq 0 ] || apt-get install -y -q "${need[@]}"
    # promtool comes with Debian's prometheus package; its recommends are not needed.
    command -v promtool >/dev/null || apt-get install -y -q --no-install-recommends prometheus
fi
scripts/bootstrap.sh
VENV=${VENV:-.venv}
# -s: the smoke test's progress and figures (build time, image size) go to the log.
exec "$VENV/bin/python" -m pytest -m deploy tests/deploy -s -v "$@"
