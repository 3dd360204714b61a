"""The changelog restore runs from the loop: partitions paused, restored in steps, resumed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import processor.worker.restore
from processor.errors import TransportError
from processor.runner import Runner
from processor.state.store import InMemoryStoreFactory
from processor.transport import TP, InRecord
from processor.transport.memory import MemoryGroupConsumer, MemoryPartitionReader
from tests.unit.conftest import make_account, make_source
from tests.unit.fake_clock import DEFAULT_WALL_MS, FakeClock
from tests.unit.memory_worker import HookedFactory, MemoryWorker

#: Changelog records per restore step in these tests: a restore takes several steps.
STEP = 2


@pytest.fixture(autouse=True)
def small_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processor.worker.restore, "RESTORE_BATCH", STEP)


class Polls:
    """Counts the group consumer's polls and says whether one is running."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.inside = False
        self.consumer: MemoryGroupConsumer | None = None
        self.before: Callable[[MemoryGroupConsumer], None] = lambda _consumer: None
        original = MemoryGroupConsumer.poll

        def poll(consumer: MemoryGroupConsumer, timeout_s: float, limit: int) -> list[InRecord]:
            self.count += 1
            self.consumer = consumer
            self.before(consumer)
            self.inside = True
            try:
                return original(consumer, timeout_s, limit)
            finally:
                self.inside = False

        monkeypatch.setattr(MemoryGroupConsumer, "poll", poll)


def _with_changelog(tmp_path: Path, accounts: int = 7) -> tuple[MemoryWorker, InMemoryStoreFactory]:
    """A worker whose first run left a changelog (and the stores it wrote)."""
    worker = MemoryWorker(tmp_path)
    worker.publish(make_source(), [make_account(f"r{i}") for i in range(accounts)])
    stores = InMemoryStoreFactory()
    worker.run(worker.runner(stores))
    return worker, stores


def test_the_restore_runs_between_polls_while_its_partitions_stay_paused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each restore step applies at most a few records outside the consumer's poll, the
    consumer is polled between steps, and the partition stays paused and unready meanwhile."""
    worker, _ = _with_changelog(tmp_path)
    polls = Polls(monkeypatch)
    steps: list[tuple[bool, int, bool, bool]] = []
    runner: Runner | None = None
    s = worker.settings
    inputs = {TP(s.topic_aggregations, 0), TP(s.topic_provisioning, 0)}

    def before_apply(writes: int) -> None:
        assert runner is not None and polls.consumer is not None
        if not runner.ready.is_set():
            paused = inputs <= polls.consumer._paused
            steps.append((polls.inside, polls.count, paused, writes <= STEP))

    runner = worker.runner(HookedFactory(before_apply))
    worker.run(runner)
    assert len(steps) > 2
    assert all(not inside and paused and bounded for inside, _, paused, bounded in steps)
    counts = [count for _, count, _, _ in steps]
    assert counts == sorted(set(counts))  # one step per poll at most
    assert polls.consumer is not None and not polls.consumer._paused
    assert runner.stats.restored_records == len(worker.broker.records(s.topic_changelog))


def test_a_partition_revoked_mid_restore_is_dropped_and_restored_when_assigned_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revocation between restore steps closes the store and drops the restore; assigned
    again, the partition restores to the same state and its records are decided."""
    worker, _ = _with_changelog(tmp_path)
    s = worker.settings
    tps = [TP(s.topic_aggregations, 0), TP(s.topic_provisioning, 0)]
    worker.publish(make_source(), [make_account(f"r{i}") for i in range(7)])
    polls = Polls(monkeypatch)
    applied = {"restore": 0}
    seen: dict[str, bool] = {}
    runner: Runner | None = None

    def before_apply(_writes: int) -> None:
        assert runner is not None
        if not runner.ready.is_set():
            applied["restore"] += 1

    def rebalance(consumer: MemoryGroupConsumer) -> None:
        assert runner is not None
        if applied["restore"] == 1 and "revoked" not in seen:
            consumer._listener.on_revoked(tps)
            seen["revoked"] = True
            seen["store closed"] = all(store.closed for store in opened)
            seen["ready"] = runner.ready.is_set()
        elif "revoked" in seen and "assigned" not in seen:
            consumer._listener.on_assigned(tps)
            seen["assigned"] = True

    polls.before = rebalance
    stores = HookedFactory(before_apply)
    opened = []
    original_open = HookedFactory.open

    def open_(factory: HookedFactory, partition: int):  # type: ignore[no-untyped-def]
        store = original_open(factory, partition)
        opened.append(store)
        return store

    monkeypatch.setattr(HookedFactory, "open", open_)
    runner = worker.runner(stores)
    worker.run(runner)
    assert seen == {"revoked": True, "store closed": True, "ready": False, "assigned": True}
    assert len(opened) == 2
    # Unchanged, not stored as a new baseline: the second restore brought the state back.
    assert runner.stats.verdicts["unchanged"] == 7


def test_a_restore_waits_for_the_high_watermark_and_a_stalled_one_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore short of the changelog's high watermark waits; past the stall limit (on the
    injected clock) it fails retriably, is retried after the backoff, and then completes."""
    worker, _ = _with_changelog(tmp_path)
    original = MemoryPartitionReader.written_ends
    promised = {"more": 2}

    def written_ends(reader: MemoryPartitionReader, tps: list[TP]) -> dict[TP, int]:
        ends = original(reader, tps)
        if promised["more"] and worker.settings.topic_changelog in {tp.topic for tp in tps}:
            promised["more"] -= 1
            return {tp: end + 5 for tp, end in ends.items()}  # a transaction still open
        return ends

    monkeypatch.setattr(MemoryPartitionReader, "written_ends", written_ends)
    clock = FakeClock(tick_s=5.0)
    runner = Runner(worker.settings, worker.broker, InMemoryStoreFactory(), clock=clock)
    with capture_logs() as logs:
        worker.run(runner)
    retried = [line for line in logs if line["event"] == "batch_retried"]
    assert [line["error"] for line in retried] == ["changelog restore stopped advancing"] * 2
    # Each stall comes after iterations that went well, so each waits the first backoff.
    first = worker.settings.retry_backoff_first_s
    assert clock.sleeps == [first, first]
    restored = runner.metrics.registry.get_sample_value("ncd_restore_records_total")
    assert restored == len(worker.broker.records(worker.settings.topic_changelog))


def test_a_retriable_failure_backs_off_on_the_injected_clock(tmp_path: Path) -> None:
    """Commits failing twice in a row make the worker wait the first backoff, then twice it,
    on its clock; the batch then commits."""
    worker = MemoryWorker(tmp_path)
    # Started at the fake clock's wall time: a real "now" would lie in its future, and a
    # startedAt more than NCD_FUTURE_ALLOWANCE_S after the worker's clock is dead-lettered.
    started = datetime.fromtimestamp(DEFAULT_WALL_MS / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    worker.publish(make_source(), [make_account("CN=a")], started_at=started)
    failure = TransportError("broker away", retriable=True)

    class Failing(FakeClock):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            if len(self.sleeps) == 1:
                worker.broker.fail_next("commit", failure)

    clock = Failing()
    worker.broker.fail_next("commit", failure)
    runner = Runner(worker.settings, worker.broker, InMemoryStoreFactory(), clock=clock)
    worker.run(runner)
    first = worker.settings.retry_backoff_first_s
    assert clock.sleeps == [first, 2 * first]
    assert runner.stats.aborted_batches == 2
    assert runner.stats.verdicts["marker"] == 2


def test_liveness_reads_the_injected_clock(tmp_path: Path) -> None:
    """Live until max_poll_interval passes on the worker's clock without a beat of the loop."""
    worker = MemoryWorker(tmp_path)
    clock = FakeClock()
    runner = Runner(worker.settings, worker.broker, InMemoryStoreFactory(), clock=clock)
    assert runner.live()
    clock.advance(worker.settings.max_poll_interval_ms / 1000)
    assert not runner.live()


def test_readiness_and_metrics_show_the_restore_progress(tmp_path: Path) -> None:
    """While a partition restores, the readiness detail names it with the offsets left and
    ncd_restoring_partitions counts it; once restored both say so."""
    worker, _ = _with_changelog(tmp_path)
    seen: list[tuple[str, float | None]] = []
    runner: Runner | None = None

    def before_apply(_writes: int) -> None:
        assert runner is not None
        if not runner.ready.is_set():
            count = runner.metrics.registry.get_sample_value("ncd_restoring_partitions")
            seen.append((runner.readiness(), count))

    runner = worker.runner(HookedFactory(before_apply))
    worker.run(runner)
    end = worker.broker.end_offset(TP(worker.settings.topic_changelog, 0))
    assert seen[0] == (
        f"restoring partitions [0]: {end} changelog offsets left in the current one",
        1,
    )
    lefts = [int(detail.split(": ")[1].split()[0]) for detail, _ in seen]
    assert lefts == sorted(lefts, reverse=True) and lefts[-1] < lefts[0]
    assert runner.metrics.registry.get_sample_value("ncd_restoring_partitions") == 0
