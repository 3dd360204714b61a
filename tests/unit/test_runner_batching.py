"""The runner fills a batch from several polls, and drops what a rebalance made stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.memory_transport import MemoryGroupConsumer
from processor.transport import InRecord
from tests.unit.conftest import make_account, make_source
from tests.unit.memory_worker import MemoryWorker

CHUNK = 3


@pytest.fixture
def small_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every poll returns at most CHUNK records, like a client whose fetches are small."""
    original = MemoryGroupConsumer.poll

    def poll(self: MemoryGroupConsumer, timeout_s: float, max_records: int) -> list[InRecord]:
        return original(self, timeout_s, min(max_records, CHUNK))

    monkeypatch.setattr(MemoryGroupConsumer, "poll", poll)


def _run(tmp_path: Path, linger_ms: int) -> int:
    worker = MemoryWorker(tmp_path, max_batch_records=1000)
    accounts = [make_account(f"CN=u{i}", {"title": "t"}) for i in range(60)]
    worker.publish(make_source(), accounts)
    settings = worker.settings.model_copy(update={"batch_linger_ms": linger_ms})
    runner = worker.runner()
    runner.settings = settings
    worker.run(runner)
    assert runner.stats.verdicts["stored"] == 60
    return runner.stats.batches


@pytest.mark.usefixtures("small_polls")
def test_lingering_puts_many_small_polls_into_one_batch(tmp_path: Path) -> None:
    """With a linger the 62 records of small polls make far fewer transactions than polls."""
    without = _run(tmp_path / "a", 0)
    with_linger = _run(tmp_path / "b", 1000)
    assert without >= 62 // CHUNK
    assert with_linger < without / 4
