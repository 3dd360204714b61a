"""The runner fills a batch from several polls, and drops what a rebalance made stale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from processor.runner import Runner
from processor.state.store import InMemoryStoreFactory
from processor.transport import InRecord
from processor.transport.memory import MemoryGroupConsumer
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
    runner = Runner(settings, worker.broker, InMemoryStoreFactory())
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


def test_an_output_over_the_size_limit_dead_letters_its_input(tmp_path: Path) -> None:
    """An event the producer would refuse sends its input to the DLQ; the batch commits."""
    worker = MemoryWorker(tmp_path)
    source = make_source()
    worker.publish(source, [make_account("CN=small", {"title": "t"})])
    small = worker.settings.model_copy(update={"max_record_bytes": 1024})
    runner = Runner(small, worker.broker, InMemoryStoreFactory())
    worker.run(runner)
    big = make_account("CN=big", {"title": "x" * 600})
    worker.publish(source, [make_account("CN=small", {"title": "t"}), big])
    runner = Runner(small, worker.broker, InMemoryStoreFactory())
    worker.run(runner)
    dlq = [s.record for log in worker.broker.logs[worker.settings.topic_dlq] for s in log]
    dlq = [r for r in dlq if r is not None]  # not the transaction markers
    assert len(dlq) == 1
    reason = dict(dlq[0].headers)["ncd_error"].decode()
    assert "over NCD_MAX_RECORD_BYTES" in reason
    assert "x" * 20 not in reason
    events = [s.record for log in worker.broker.logs[worker.settings.topic_events] for s in log]
    assert [r for r in events if r is not None] == []


def test_a_commit_applied_by_the_broker_but_reported_failed_is_not_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a commit succeeds on the broker but the worker sees an error (the answer was
    lost), the batch is not processed again: its events are not emitted a second time."""
    import json

    from processor.errors import TransportError
    from processor.transport.memory import MemorySink

    worker = MemoryWorker(tmp_path, max_batch_records=3)
    source = make_source()
    worker.publish(source, [make_account(f"CN=u{i}", {"title": "old"}) for i in range(6)])
    worker.run(worker.runner())
    original = MemorySink.commit
    lost: list[int] = []

    def commit_then_lose_the_answer(self: MemorySink, *args: Any) -> Any:
        written = original(self, *args)
        if not lost and self._transactional:  # the worker's sink, not the publisher's
            lost.append(1)
            raise TransportError("commit transaction failed: answer lost", retriable=True)
        return written

    monkeypatch.setattr(MemorySink, "commit", commit_then_lose_the_answer)
    worker.publish(source, [make_account(f"CN=u{i}", {"title": "new"}) for i in range(6)])
    worker.run(worker.runner())
    assert lost, "the lost commit answer was not exercised"
    slots = worker.broker.logs[worker.settings.topic_events]
    events = [
        json.loads(slot.record.value)
        for partition in slots
        for slot in partition
        if slot.record is not None and slot.record.value is not None
    ]
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "an event was emitted twice"
    assert len(events) == 6
