"""A worker whose start the broker never serves exits as for bad settings, on any client."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from processor.cli import EXIT_BAD_INPUT, exit_code
from processor.errors import BrokerAccessError, TransportError
from processor.runner import START_RETRY_S, Runner
from processor.state.store import InMemoryStoreFactory
from processor.transport import START_HINT, Admin
from processor.transport.memory import MemoryBroker
from tests.unit.fake_clock import FakeClock
from tests.unit.memory_worker import MemoryWorker


class SilentBroker(MemoryBroker):
    """A memory broker whose admin client fails as librdkafka does with no broker up."""

    def __init__(self) -> None:
        super().__init__()
        self.admin_calls = 0

    def admin(self) -> Admin:
        self.admin_calls += 1
        raise TransportError("describe topics failed: _TRANSPORT", retriable=True)


def test_a_start_never_served_ends_with_the_settings_to_check_and_exit_2(
    tmp_path: Path,
) -> None:
    """Retriable start faults are retried with backoff for the start window, then the run
    ends with a broker-access error naming NCD_BOOTSTRAP_SERVERS (exit 2, not 3)."""
    broker, clock = SilentBroker(), FakeClock()
    runner = Runner(MemoryWorker(tmp_path).settings, broker, InMemoryStoreFactory(), clock=clock)
    with pytest.raises(BrokerAccessError) as caught:
        runner.run(threading.Event())
    message = str(caught.value)
    assert message.startswith("describe topics failed: _TRANSPORT")
    assert START_HINT in message and message.count("NCD_BOOTSTRAP_SERVERS") == 1
    assert exit_code(caught.value) == EXIT_BAD_INPUT
    assert broker.admin_calls > 2, "the start was not retried"
    assert sum(clock.sleeps) >= START_RETRY_S - max(clock.sleeps)
    assert clock.sleeps == sorted(clock.sleeps), "the backoff does not grow"
