"""The LMDB store's writer thread: an apply returns before it is written, and nothing shows it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

import processor.state.lmdb_writer as lmdb_writer
from processor.errors import StateCorruptError, StateError
from processor.observability.aggregations import AggregationTracker
from processor.observability.metrics import Metrics
from processor.runner import Runner
from processor.state import (
    InMemoryStateStore,
    InMemoryStoreFactory,
    LmdbStateStore,
    LmdbStoreFactory,
    open_store,
)
from processor.transport import TP
from processor.worker.partition import PartitionProcessor
from processor.worker.partitions import Partition, Partitions
from processor.worker.registry import SourceRegistry
from tests.unit.conftest import make_account, make_source
from tests.unit.memory_worker import MemoryWorker

SMALL_MAP = 1 << 20


class Gate:
    """Holds every write of the writer thread at its start until ``open()``; counts them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.wrote = threading.Event()
        self._open = threading.Event()
        self._open.set()
        real = lmdb_writer.write

        def write(env: Any, dbs: Any, items: Any, checkpoint: int | None) -> int:
            if threading.current_thread() is not threading.main_thread():
                self.entered.set()
                self._open.wait()
            entries = real(env, dbs, items, checkpoint)
            self.wrote.set()
            return entries

        monkeypatch.setattr(lmdb_writer, "write", write)

    def close(self) -> None:
        """Hold the writes to come."""
        self._open.clear()
        self.entered.clear()
        self.wrote.clear()

    def open(self) -> None:
        """Let the held write (and the next ones) go."""
        self._open.set()

    def open_once_entered(self) -> threading.Thread:
        """Open the gate from another thread as soon as a write is held at it."""

        def release() -> None:
            self.entered.wait()
            self.open()

        thread = threading.Thread(target=release)
        thread.start()
        return thread


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """The writer thread's gate, open at the end whatever the test did."""
    held = Gate(monkeypatch)
    yield held
    held.open()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbStateStore]:
    """A fresh LMDB store with a small map, closed after the test."""
    opened = open_store(tmp_path, "acc", 0, map_size_bytes=SMALL_MAP)
    yield opened
    opened.close()


def test_reads_see_an_apply_still_in_flight(store: LmdbStateStore, gate: Gate) -> None:
    """get, the viewer and checkpoint read an apply's puts and deletes before the writer
    thread has written them (stored_entries counts what is written); scans, keys and
    counts read them once it has."""
    store.apply({b"a": b"1", b"b": b"1", b"d": b"1"}, 1)
    store.flush()
    assert store.get(b"a") == b"1"  # a read snapshot older than the next apply
    gate.close()
    store.apply({b"a": b"2", b"b": None, b"c": b"2", b"e": b"2", b"x": None}, 2)
    assert gate.entered.wait(timeout=60) and not gate.wrote.is_set()
    assert [store.get(k) for k in (b"a", b"b", b"c", b"d", b"x")] == [b"2", None, b"2", b"1", None]
    view = store.viewer({b"d": b"batch"})
    assert [view(k) for k in (b"a", b"b", b"c", b"d")] == [b"2", None, b"2", b"batch"]
    assert (store.stored_entries(), store.checkpoint()) == (3, 2)
    assert not gate.wrote.is_set()
    gate.open()
    assert list(store.scan(b"")) == [(b"a", b"2"), (b"c", b"2"), (b"d", b"1"), (b"e", b"2")]
    assert gate.wrote.is_set()
    assert list(store.keys(b"")) == [b"a", b"c", b"d", b"e"]
    assert (store.count(b""), store.count(b"c"), store.stored_entries()) == (4, 1, 4)


def test_the_key_gauge_counts_what_the_writer_wrote_when_scraped(
    store: LmdbStateStore, gate: Gate
) -> None:
    """ncd_state_keys is read at the scrape: the keys of the last write transaction, an
    apply in flight counted once written, without the worker setting it again."""
    metrics = Metrics()
    metrics.state_size(0, store.stored_entries)

    def scraped() -> float | None:
        return metrics.registry.get_sample_value("ncd_state_keys", {"partition": "0"})

    assert scraped() == 0
    store.apply({b"a": b"1", b"b": b"1"}, 1)
    store.flush()
    assert scraped() == 2
    gate.close()
    store.apply({b"c": b"2"}, 2)
    assert gate.entered.wait(timeout=60)
    assert scraped() == 2
    gate.open()
    store.flush()
    assert scraped() == 3


def test_flush_and_close_wait_for_the_apply_in_flight(tmp_path: Path, gate: Gate) -> None:
    """flush returns, and close closes the file, only once the writer has written."""
    store = open_store(tmp_path, "acc", 0)
    gate.close()
    store.apply({b"a": b"1"}, 1)
    released = gate.open_once_entered()
    store.flush()
    assert gate.wrote.is_set()
    released.join()
    gate.close()
    store.apply({b"a": None, b"b": b"2"}, 2)
    released = gate.open_once_entered()
    store.close()
    assert gate.wrote.is_set()
    released.join()
    again = open_store(tmp_path, "acc", 0)
    try:
        assert (again.get(b"a"), again.get(b"b"), again.checkpoint()) == (None, b"2", 2)
    finally:
        again.close()


def test_an_apply_that_does_not_fit_grows_the_map_after_its_reads(store: LmdbStateStore) -> None:
    """An apply bigger than the map is read from at once, and written, the map grown, by the
    next call that waits for it, although reads were begun while it was in flight."""
    big = {f"k{i:03d}".encode(): bytes([i % 256]) * 3072 for i in range(600)}
    store.apply({b"small": b"1"}, 1)
    view = store.viewer()
    assert view(b"small") == b"1"
    store.apply(big, 2)
    view = store.viewer()
    assert store.get(b"k599") == big[b"k599"] and view(b"k000") == big[b"k000"]
    assert store.checkpoint() == 2
    store.apply({b"small": None}, 3)  # waits for the big one: grown and written first
    assert store.map_size_bytes > SMALL_MAP
    assert (store.count(b"k"), store.count(b""), store.checkpoint()) == (600, 600, 3)
    assert dict(store.scan(b"k")) == big


#: Every kind of call that meets a failed write first.
CALLS: dict[str, Callable[[LmdbStateStore], object]] = {
    "get": lambda s: s.get(b"a"),
    "viewer": lambda s: s.viewer(),
    "apply": lambda s: s.apply({b"b": b"2"}, 3),
    "flush": lambda s: s.flush(),
    "count": lambda s: s.count(b""),
    "checkpoint": lambda s: s.checkpoint(),
    "scan": lambda s: list(s.scan(b"")),
    "close": lambda s: s.close(),
}


@pytest.mark.parametrize("error", [StateError, StateCorruptError])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_failed_write_surfaces_from_the_next_call(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: type[StateError],
    call: str,
) -> None:
    """A write that fails on the writer thread raises its error class and message from the
    store's next call, and every call after it but close refuses; the file keeps the last
    apply written before it."""
    store = open_store(tmp_path, "acc", 0)
    store.apply({b"a": b"1"}, 1)
    store.flush()

    def fail(*_args: object) -> None:
        raise error("state store failed (apply): No space left on device")

    monkeypatch.setattr(lmdb_writer, "write", fail)
    done = threading.Event()
    attempt = lmdb_writer.Writer._attempt

    def attempt_and_tell(writer: lmdb_writer.Writer, *args: Any) -> bool:
        try:
            return attempt(writer, *args)
        finally:
            done.set()

    monkeypatch.setattr(lmdb_writer.Writer, "_attempt", attempt_and_tell)
    store.apply({b"a": b"2"}, 2)  # returns: the failure is the writer thread's
    assert done.wait(timeout=60)  # (a read before it fails reads the pending writes)
    with pytest.raises(error, match="No space left on device"):
        CALLS[call](store)
    if call != "close":
        with pytest.raises(error):
            store.get(b"a")
        with pytest.raises(error):
            store.apply({b"c": b"3"}, 3)
    store.close()  # reported once already: closes quietly
    monkeypatch.undo()
    again = open_store(tmp_path, "acc", 0)
    try:
        assert (again.get(b"a"), again.checkpoint()) == (b"1", 1)
    finally:
        again.close()


def test_a_worker_killed_with_applies_in_flight_restores_the_same_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches committed in Kafka whose local writes never reached the disk (the worker
    died with them in flight) come back from the changelog at the next start: the store
    ends as the changelog says, and no record is decided, nor event emitted, twice."""
    worker = MemoryWorker(tmp_path, max_batch_records=4)
    s = worker.settings
    worker.publish(make_source(), [make_account(f"r{i}") for i in range(10)])
    written: list[int | None] = []
    real = lmdb_writer.write

    def lost_after_two(env: Any, dbs: Any, items: Any, checkpoint: int | None) -> int:
        written.append(checkpoint)
        # The later applies are "in flight" when the worker dies: never written.
        return real(env, dbs, items, checkpoint) if len(written) <= 2 else 0

    monkeypatch.setattr(lmdb_writer, "write", lost_after_two)
    stores = LmdbStoreFactory(s.state_dir, "ncd.aggregations")
    first = Runner(s, worker.broker, stores)
    worker.run(first)
    assert len(written) > 3
    monkeypatch.undo()
    events = len(worker.broker.records(s.topic_events))
    changelog = worker.broker.records(s.topic_changelog)
    store = stores.open(0)
    try:
        assert store.checkpoint() == written[1] and written[1] is not None
        assert written[1] < len(changelog)
    finally:
        store.close()

    second = Runner(s, worker.broker, stores)
    worker.run(second)
    assert second.stats.restored_records > 0
    assert len(worker.broker.records(s.topic_events)) == events
    expected = {r.key: r.value for r in changelog if r.key is not None}
    store = stores.open(0)
    try:
        assert dict(store.scan(b"")) == {k: v for k, v in expected.items() if v is not None}
        assert store.checkpoint() == worker.broker.end_offset(TP(s.topic_changelog, 0))
    finally:
        store.close()


class FailingClose(InMemoryStateStore):
    """A store whose last write failed: its close raises that failure."""

    def close(self) -> None:
        super().close()
        raise StateError("state store failed (apply): No space left on device")


def test_the_workers_close_closes_every_store_and_raises_a_failed_write(tmp_path: Path) -> None:
    """A store whose close reports a failed write does not keep the other stores open: all
    are closed, then its error is raised."""
    worker = MemoryWorker(tmp_path)
    partitions = Partitions(
        worker.settings, InMemoryStoreFactory(), SourceRegistry(), Metrics(), AggregationTracker()
    )
    stores = [InMemoryStateStore(), FailingClose(), InMemoryStateStore()]
    for number, store in enumerate(stores):
        partitions.ready[number] = Partition(store, cast(PartitionProcessor, None))
    with pytest.raises(StateError, match="No space left"):
        partitions.close_all(None)
    assert all(store.closed for store in stores) and not partitions.ready


def test_a_store_whose_start_fails_after_its_open_can_be_opened_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after LMDB opened (starting the writer) releases the directory: the next
    open in this process is not refused as "already open"."""
    LmdbStateStore.open(tmp_path / "s").close()

    def refuse(*_args: object) -> None:
        raise StateError("writer could not start")

    monkeypatch.setattr("processor.state.lmdb_store.Writer", refuse)
    with pytest.raises(StateError, match="could not start"):
        LmdbStateStore.open(tmp_path / "s")
    monkeypatch.undo()
    LmdbStateStore.open(tmp_path / "s").close()
