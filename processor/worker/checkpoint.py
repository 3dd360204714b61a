"""One batch's checkpoint: a transaction of outputs, changelog and offsets, then local state.

The order, and why:

1. :meth:`Checkpoint.begin` (``sink.begin()``).
2. The batch sends every event, dead letter and remediation command, then every state write
   to the changelog partition of the same number (:mod:`processor.worker.batch`).
3. :meth:`Checkpoint.commit`: ``sink.commit(offsets)`` flushes, adds the input offsets to
   the transaction and commits. Events, dead letters, changelog and offsets become visible
   together, or not at all.
4. Only then the overlay of each partition is applied to its local store, with the
   changelog offset reached. State is never persisted ahead of the output it implies (the
   KIP-557 lesson): if the worker dies between 3 and 4, the restore on start replays the
   changelog from the store's checkpoint and the store catches up; if it dies before 3,
   nothing happened. The LMDB store writes an apply on a thread of its own while the next
   batch is decided (its reads see the apply at once; the next apply, a revoke and the
   close wait for it), so a worker that dies may have lost the local state of two batches
   committed in Kafka, the one being written and the one committed meanwhile: the restore
   reads both again from the changelog, as it reads one. A write that fails raises from
   the store's next call: inside the next batch, which is aborted, or at the next commit,
   after its Kafka transaction (as a failed apply always did); the worker then stops.

In at-least-once mode step 3 is a flush followed by a commit of the offsets on the
consumer; a crash in between re-emits events with the same deterministic ids.

A failed batch is aborted (:meth:`Checkpoint.abort`): the transaction is aborted, the
batch's records are put back, and its partitions are *unsettled* until
:meth:`Checkpoint.settle` has made the transaction's outcome final and moved them to what is
really committed.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from processor.errors import TransportError
from processor.state.overlay import BatchOverlay
from processor.transport import TP, GroupConsumer, InRecord, OutRecord, TransactionalSink, put_back
from processor.worker.clock import Clock
from processor.worker.partitions import Partitions
from processor.worker.restore import Restorer

log = structlog.get_logger("processor.runner")


class Checkpoint:
    """Commits and aborts the batches of one sink and one group consumer."""

    def __init__(
        self,
        sink: TransactionalSink,
        consumer: GroupConsumer,
        changelog: str,
        *,
        exactly_once: bool,
        clock: Clock,
    ) -> None:
        self._sink = sink
        self._consumer = consumer
        self._changelog = changelog
        self._exactly_once = exactly_once
        self._clock = clock
        #: Input partitions of aborted batches, to resume from their committed offsets.
        self._unsettled: set[TP] = set()

    def begin(self) -> None:
        """Open the batch's transaction."""
        self._sink.begin()

    def send(self, record: OutRecord) -> None:
        """Write one record in the batch's transaction."""
        self._sink.send(record)

    def commit(
        self,
        offsets: Mapping[TP, int],
        overlays: Mapping[int, BatchOverlay],
        partitions: Partitions,
    ) -> float:
        """Commit outputs, changelog and ``offsets``; then apply ``overlays`` to the stores.

        Returns how long the commit took, in seconds.
        """
        started = self._clock.monotonic()
        produced = self._sink.commit(offsets, self._consumer.group_id())
        if not self._exactly_once:
            self._consumer.commit(offsets)
        commit_s = self._clock.monotonic() - started
        for partition, overlay in overlays.items():
            checkpoint = produced.get(TP(self._changelog, partition))
            partitions.ready[partition].store.apply(overlay.writes, checkpoint)
        return commit_s

    def abort(self, records: list[InRecord], partitions: Partitions) -> None:
        """Abort the transaction and put the batch's records back; their partitions are
        settled (:meth:`settle`) before anything else is processed."""
        try:
            self._sink.abort()
        except TransportError as exc:
            log.warning("abort_failed", error=str(exc))
        owned = [record for record in records if record.partition in partitions.ready]
        self._unsettled.update(put_back(self._consumer.seek, owned))
        log.warning("batch_aborted", records=len(records))

    def unsettled(self) -> bool:
        """Whether an aborted batch's partitions wait to be settled."""
        return bool(self._unsettled)

    def forget(self, tps: list[TP]) -> None:
        """Partitions taken away need no settling here."""
        self._unsettled.difference_update(tps)

    def settle(self, partitions: Partitions, restorer: Restorer) -> None:
        """Resume aborted partitions from what is committed, not from what we believe.

        A commit can fail on our side after the broker applied it (its answer lost while the
        broker was frozen): its events, changelog records and input offsets are then
        committed although the batch raised. So once the transaction's outcome is final
        (``sink.settle``), each partition's store catches up from the changelog and the
        consumer moves to the group's committed offset: a batch that did commit is not
        processed, nor its events emitted, a second time.
        """
        self._sink.settle()
        for partition in sorted({tp.partition for tp in self._unsettled}):
            entry = partitions.ready.get(partition)
            if entry is not None:
                entry.store = restorer.catch_up(partition, entry.store)
        for tp in sorted(self._unsettled):
            if tp.partition in partitions.ready:
                committed = self._consumer.committed(tp)
                if committed is not None:
                    self._consumer.seek(tp, committed)
        self._unsettled.clear()
