"""Fixtures shared by the integration tests (a module's own fixture of the same name wins)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import SessionBroker
from tests.integration.harness import WorkerEnv


@pytest.fixture
def env(kafka_broker: SessionBroker, tmp_path: Path) -> Iterator[WorkerEnv]:
    """Unique topics, group and state for one test; every worker is killed afterwards."""
    worker_env = WorkerEnv(
        kafka_broker.bootstrap, tmp_path, hides_aborted=kafka_broker.hides_aborted
    )
    worker_env.ensure_topics()
    yield worker_env
    worker_env.stop_all()
