"""The input partitions this member holds, and why any of them is paused.

A rebalance callback only *marks*: :meth:`Partitions.on_assigned` notes the partitions
handed over, :meth:`Partitions.on_revoked` forgets the ones taken away (closing their
stores, dropping a restore in progress). Everything else happens in the loop, between polls:
:meth:`Partitions.start` pauses the marked partitions and queues their stores for the
:class:`~processor.worker.restore.Restorer`; :meth:`Partitions.restored` makes a restored
partition ready (a :class:`~processor.worker.partition.PartitionProcessor` over its store)
and resumes it. Records polled for a partition that is not ready are put back.

Both input topics are keyed by account and have the same partition count; the range
assignor gives one member the same partition numbers of both (co-partitioning), so
partition p of either topic reads and writes the state store p.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import structlog

from processor.config import Settings
from processor.errors import StateError
from processor.observability.aggregations import AggregationTracker
from processor.observability.metrics import Metrics
from processor.state.store import StateStore, StoreFactory
from processor.transport import TP, GroupConsumer, InRecord, put_back
from processor.worker.partition import PartitionProcessor
from processor.worker.registry import SourceRegistry
from processor.worker.restore import Restorer, open_store

log = structlog.get_logger("processor.runner")

#: Why a partition is paused: its store is being restored.
RESTORING = "restoring"


class Pausable(Protocol):
    """What :class:`Pauses` needs of a consumer."""

    def pause(self, tps: Iterable[TP]) -> None: ...

    def resume(self, tps: Iterable[TP]) -> None: ...


class Pauses:
    """Why each input partition is paused; it is resumed when no reason is left."""

    def __init__(self) -> None:
        self._reasons: dict[TP, set[str]] = {}

    def pause(self, consumer: Pausable, tps: Iterable[TP], reason: str) -> None:
        """Pause ``tps`` for ``reason`` (those already paused for another stay paused)."""
        tps = list(tps)
        new = [tp for tp in tps if not self._reasons.get(tp)]
        if new:
            consumer.pause(new)  # first: a failure leaves nothing noted that is not so
        for tp in tps:
            self._reasons.setdefault(tp, set()).add(reason)

    def release(self, consumer: Pausable, tps: Iterable[TP], reason: str) -> None:
        """Drop ``reason``; resume those of ``tps`` paused for nothing else."""
        mine = [tp for tp in tps if reason in self._reasons.get(tp, ())]
        free = [tp for tp in mine if self._reasons[tp] == {reason}]
        if free:
            consumer.resume(free)  # first: a failure leaves them paused for this reason
        for tp in mine:
            self._reasons[tp].discard(reason)
            if not self._reasons[tp]:
                del self._reasons[tp]

    def forget(self, tps: Iterable[TP]) -> None:
        """Forget partitions taken away (the consumer drops their pause itself)."""
        for tp in tps:
            self._reasons.pop(tp, None)


@dataclass
class Partition:
    """A restored input partition: its store and the processor deciding over it."""

    store: StateStore
    processor: PartitionProcessor


class Partitions:
    """Assigned input partitions: marked by the rebalance callbacks, restored by the loop."""

    def __init__(
        self,
        settings: Settings,
        stores: StoreFactory,
        registry: SourceRegistry,
        metrics: Metrics,
        aggregations: AggregationTracker,
    ) -> None:
        self._settings = settings
        self._stores = stores
        self._registry = registry
        self._metrics = metrics
        self._aggregations = aggregations
        self.pauses = Pauses()
        #: Restored partitions, by number: the only ones whose records are decided.
        self.ready: dict[int, Partition] = {}
        #: Input partitions assigned and not yet restored, by number.
        self._marked: dict[int, set[TP]] = {}
        self._restoring: dict[int, set[TP]] = {}
        #: Input partitions restored whose resume has not been done yet.
        self._resume: set[TP] = set()

    def on_assigned(self, tps: list[TP]) -> None:
        """Mark newly assigned partitions; the loop pauses and restores them."""
        for tp in tps:
            number = tp.partition
            if number not in self.ready and number not in self._restoring:
                self._marked.setdefault(number, set()).add(tp)
            elif number in self._restoring:
                self._restoring[number].add(tp)

    def on_revoked(self, tps: list[TP], restorer: Restorer | None) -> None:
        """Forget partitions taken away: close their stores, drop their restores."""
        self.pauses.forget(tps)
        self._resume.difference_update(tps)
        for number in sorted({tp.partition for tp in tps}):
            self._marked.pop(number, None)
            if self._restoring.pop(number, None) is not None and restorer is not None:
                store = restorer.drop(number)
                if store is not None:
                    store.close()
            self.close(number)
            self._metrics.forget_partition(number)
            self._aggregations.forget(number)

    def restoring(self) -> bool:
        """Whether a partition is assigned but not yet ready."""
        return bool(self._marked or self._restoring)

    def not_ready(self) -> list[int]:
        """Numbers of the partitions assigned but not yet ready."""
        return sorted({*self._marked, *self._restoring})

    def owns(self, partition: int) -> bool:
        """Whether the partition is assigned here (ready or not)."""
        return partition in self.ready or partition in self._marked or partition in self._restoring

    def start(self, consumer: GroupConsumer, restorer: Restorer) -> None:
        """Pause the marked partitions, open their stores and queue them for restore."""
        for number in sorted(self._marked):
            self.pauses.pause(consumer, sorted(self._marked[number]), RESTORING)
            restorer.add(number, open_store(self._stores, number))
            self._restoring[number] = self._marked.pop(number)

    def restored(self, consumer: GroupConsumer, number: int, store: StateStore) -> None:
        """Make a restored partition ready and resume it."""
        tps = self._restoring.pop(number)
        s = self._settings
        processor = PartitionProcessor(
            self._registry, hold_s=s.provisioning_hold_s, max_record_bytes=s.max_record_bytes
        )
        entry = self.ready[number] = Partition(store, processor)
        # Read when scraped: the store as it is then (a rebuild may replace it).
        self._metrics.state_size(number, lambda: entry.store.stored_entries())
        self._resume.update(tps)
        self.resume(consumer)

    def resume(self, consumer: GroupConsumer) -> None:
        """Resume the restored partitions not resumed yet (a failed resume is tried again)."""
        if self._resume:
            self.pauses.release(consumer, sorted(self._resume), RESTORING)
            self._resume.clear()

    def usable(self, consumer: GroupConsumer, records: list[InRecord]) -> list[InRecord]:
        """The records of ready partitions; those of partitions still restoring are put back,
        those of partitions no longer assigned dropped (their new owner reads them)."""
        if all(record.partition in self.ready for record in records):
            return records
        waiting = [r for r in records if r.partition not in self.ready and self.owns(r.partition)]
        put_back(consumer.seek, waiting)
        return [record for record in records if record.partition in self.ready]

    def close(self, number: int) -> None:
        """Close a ready partition's store (revoked, or the worker stops)."""
        entry = self.ready.pop(number, None)
        if entry is not None:
            entry.store.close()

    def close_all(self, restorer: Restorer | None) -> None:
        """Close every store: ready, restoring or waiting to restore. Each close waits for
        the store's last apply; the first that failed is raised once all are closed."""
        stores = [self.ready.pop(number).store for number in list(self.ready)]
        stores += restorer.stores() if restorer is not None else []
        failed: StateError | None = None
        for store in stores:
            try:
                store.close()
            except StateError as exc:
                failed = failed or exc
        if failed is not None:
            raise failed
