"""Fixtures of the reliability suite: one WorkerEnv per test on the session broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import SessionBroker
from tests.integration.harness import WorkerEnv
from tests.reliability.common import session_env


@pytest.fixture
def env(kafka_broker: SessionBroker, tmp_path: Path) -> Iterator[WorkerEnv]:
    """Unique topics, group and state on the session broker; workers are killed afterwards."""
    worker_env = session_env(kafka_broker, tmp_path)
    yield worker_env
    worker_env.stop_all()
