"""The changelog restore: a partition's store caught up from its changelog, in bounded steps.

Assignment only marks partitions (:mod:`processor.worker.partitions`); the loop hands their
stores here and calls :meth:`Restorer.step` once per iteration, between polls of the group
consumer, so a long restore never counts against ``max.poll.interval.ms``: each step is one
poll of the changelog (at most ``RESTORE_BATCH`` records, at most ``RESTORE_POLL_S`` of
waiting). One partition is restored at a time, from its store's checkpoint.

The end is the changelog's high watermark (``PartitionReader.written_ends``), not the last
stable offset, and the changelog is read with read_committed: so a restore waits for every
transaction that was still open when it began. The group can hand a partition over while the
previous owner's last commit is still writing its markers (its input offsets already
visible, its changelog records not yet): restoring only to the last stable offset would then
miss that batch's state. A transaction left open by a killed worker ends when the broker
aborts it (``transaction_timeout_ms``) or that worker comes back.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from processor.errors import StateCorruptError, TransportError
from processor.observability.metrics import Metrics
from processor.state.store import StateStore, StoreFactory
from processor.transport import TP, PartitionReader
from processor.worker.clock import Clock
from processor.worker.config_follower import CATCH_UP_STALL_S
from processor.worker.tally import Stats

log = structlog.get_logger("processor.runner")

#: Changelog records read per step (one poll).
RESTORE_BATCH = 5_000
#: Longest wait of one step for records the high watermark promises: short, because the
#: group consumer is polled between steps, and because a poll that finds no records waits it
#: out whole. That is the common case at every start: the changelog's end is one offset past
#: the store's checkpoint (the last commit's transaction marker), so each partition's
#: "restore" is a poll that returns nothing (0.5 s each, one partition after the other,
#: before this was 0.1 s). A poll returns as soon as records come, so a real restore is not
#: slower.
RESTORE_POLL_S = 0.1


def open_store(stores: StoreFactory, partition: int) -> StateStore:
    """Open a partition's store; one found corrupt is destroyed and rebuilt empty."""
    try:
        return stores.open(partition)
    except StateCorruptError as exc:
        return rebuild_store(stores, partition, exc)


def rebuild_store(stores: StoreFactory, partition: int, exc: StateCorruptError) -> StateStore:
    """Destroy a partition's corrupt store and open an empty one (the changelog refills it)."""
    log.warning("state_store_rebuilt", partition=partition, reason=str(exc))
    stores.destroy(partition)
    return stores.open(partition)


@dataclass
class _Restore:
    """The restore in progress."""

    partition: int
    store: StateStore
    end: int
    start: int | None
    started: float
    deadline: float
    restored: int = 0
    #: Offsets left to ``end`` as of the last step.
    remaining: int = 0


class Restorer:
    """Restores the stores handed to it, one partition at a time, one poll per step."""

    def __init__(
        self,
        reader: PartitionReader,
        changelog: str,
        stores: StoreFactory,
        *,
        clock: Clock,
        metrics: Metrics,
        stats: Stats,
        transaction_timeout_s: float,
    ) -> None:
        self._reader = reader
        self._changelog = changelog
        self._stores = stores
        self._clock = clock
        self._metrics = metrics
        self._stats = stats
        # An open transaction may hold the restore until the broker aborts it.
        self._stall_s = CATCH_UP_STALL_S + transaction_timeout_s
        self._waiting: dict[int, StateStore] = {}
        self._current: _Restore | None = None
        # Whether the reader is assigned to the current restore (a catch-up moves it).
        self._reading = False

    def add(self, partition: int, store: StateStore) -> None:
        """Queue a partition's store to be restored."""
        self._waiting[partition] = store

    def drop(self, partition: int) -> StateStore | None:
        """Stop restoring a partition (revoked); returns its store for the caller to close."""
        if self._current is not None and self._current.partition == partition:
            store = self._current.store
            self._current = None
            self._metrics.restoring(partition, 0, 0)
            return store
        return self._waiting.pop(partition, None)

    def busy(self) -> bool:
        """Whether a partition is restoring or waiting to."""
        return self._current is not None or bool(self._waiting)

    def remaining(self) -> int:
        """Changelog offsets left in the restore in progress, as of its last step (0: none).

        A plain number kept by the loop: safe to read from the health endpoint's thread.
        """
        return 0 if self._current is None else self._current.remaining

    def stores(self) -> list[StateStore]:
        """Every store being restored or waiting to."""
        current = [] if self._current is None else [self._current.store]
        return current + list(self._waiting.values())

    def step(self) -> list[tuple[int, StateStore]]:
        """Do one bounded piece of restoring; returns the partitions it finished."""
        done: list[tuple[int, StateStore]] = []
        if self._current is None and self._waiting:
            partition, store = next(iter(self._waiting.items()))
            finished = self._begin(partition, store)  # may raise: the store stays queued
            del self._waiting[partition]
            if finished:
                return [(partition, store)]
        current = self._current
        try:
            if current is not None and self._advance_or_rebuild(current):
                done.append((current.partition, current.store))
                self._current = None
        except TransportError:
            if current is not None and self._current is current:
                # Begun afresh on the next step: the end and the stall limit asked again.
                self._current = None
                self._waiting[current.partition] = current.store
            raise
        return done

    def catch_up(self, partition: int, store: StateStore) -> StateStore:
        """Restore a partition's store to the changelog's end now (after an aborted batch);
        returns the store (a new one if it was found corrupt and rebuilt)."""
        paused, self._current = self._current, None
        try:
            if self._begin(partition, store):
                return store
            while True:
                current = self._current
                assert current is not None
                if self._advance_or_rebuild(current):
                    return current.store
        finally:
            self._current, self._reading = paused, False

    def _advance_or_rebuild(self, restore: _Restore) -> bool:
        """:meth:`_advance`; a store found corrupt is rebuilt and restored from the start."""
        try:
            return self._advance(restore)
        except StateCorruptError as exc:
            restore.store.close()
            store = rebuild_store(self._stores, restore.partition, exc)
            self._begin(restore.partition, store)  # an empty store always has work
            return False

    def _begin(self, partition: int, store: StateStore) -> bool:
        """Start restoring ``store``; True when there is nothing to restore."""
        tp = TP(self._changelog, partition)
        end = self._reader.written_ends([tp])[tp]
        start = store.checkpoint()
        if start is not None and start > end:
            store.close()
            exc = StateCorruptError("checkpoint is past the changelog's end (topic recreated?)")
            store = rebuild_store(self._stores, partition, exc)
            start = None
        if start is not None and start == end:
            self._metrics.restoring(partition, 0, 0)
            return True
        now = self._clock.monotonic()
        remaining = max(end - (start or 0), 0)
        self._current = _Restore(
            partition, store, end, start, now, now + self._stall_s, 0, remaining
        )
        self._reading = False
        self._metrics.restoring(partition, 0, remaining)
        return False

    def _advance(self, restore: _Restore) -> bool:
        """One poll of the changelog into the store; True once the end is reached."""
        tp = TP(self._changelog, restore.partition)
        if not self._reading:
            self._reader.assign({tp: restore.store.checkpoint()})
            self._reading = True
        if self._reader.position(tp) >= restore.end:
            return self._finish(restore)
        records = self._reader.poll(RESTORE_POLL_S, RESTORE_BATCH)
        now = self._clock.monotonic()
        if not records:
            if now > restore.deadline:
                raise TransportError("changelog restore stopped advancing", retriable=True)
            # Transaction markers take offsets too; position may reach the end without data.
            return self._reader.position(tp) >= restore.end and self._finish(restore)
        restore.deadline = now + self._stall_s
        position = self._reader.position(tp)
        restore.store.apply({r.key: r.value for r in records if r.key is not None}, position)
        restore.restored += len(records)
        restore.remaining = max(restore.end - position, 0)
        self._metrics.restoring(restore.partition, len(records), restore.remaining)
        return position >= restore.end and self._finish(restore)

    def _finish(self, restore: _Restore) -> bool:
        if restore.store.checkpoint() != restore.end:
            restore.store.apply({}, restore.end)
        self._metrics.restoring(restore.partition, 0, 0)
        self._stats.restored_records += restore.restored
        log.info(
            "state_restored",
            partition=restore.partition,
            records=restore.restored,
            from_offset=restore.start,
            to_offset=restore.end,
            duration_s=round(self._clock.monotonic() - restore.started, 3),
        )
        return True
