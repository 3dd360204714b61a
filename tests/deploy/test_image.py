"""The image of deploy/Dockerfile built and run against the session's broker.

The checks are scripts/deploy_smoke.py's (the smoke test users run); this is its entry point
in the test suite. The image is built on a base made from Debian's packages (debootstrap,
kept in the engine's image store between runs), or on ``NCD_DEPLOY_BASE_IMAGE`` when set
(``python:3.11-slim``, the Dockerfile's default, where a registry is reachable).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.deploy.support import load_smoke, missing

pytestmark = pytest.mark.deploy


@pytest.mark.timeout(1800)
def test_image_runs_the_examples_and_restores_from_its_volume(kafka_bootstrap: str) -> None:
    """The built image turns the examples into diff's events as uid 10001 with its state on
    the volume, passes its HEALTHCHECK, exits 0 on SIGTERM and restarts from the volume
    without reprocessing."""
    smoke = load_smoke()
    base_image = os.environ.get("NCD_DEPLOY_BASE_IMAGE") or None
    if base_image is None and (os.geteuid() != 0 or shutil.which("debootstrap") is None):
        missing("the Debian base image needs root and debootstrap; or set NCD_DEPLOY_BASE_IMAGE")
    try:
        engine = smoke.find_engine()
    except smoke.SmokeError as exc:
        missing(str(exc))
    report = smoke.run_smoke(
        kafka_bootstrap, engine=engine, debian=base_image is None, base_image=base_image
    )
    print(f"deploy-smoke report: {json.dumps(report.__dict__)}")
    assert report.events == 5
    assert report.state_keys > 0
