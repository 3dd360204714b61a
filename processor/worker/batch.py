"""Deciding one batch: every record against its partition's state, its outputs sent.

No single record can stop the loop: any failure while deciding one record or building its
outputs (:func:`~processor.worker.decision.decide_record`) undoes what the record did and
dead-letters it with its reason, and the batch goes on. Only broker and state failures
(:data:`~processor.worker.decision.NOT_THE_RECORDS_FAULT`) end a batch.
"""

from __future__ import annotations

import structlog

from processor.config import Settings
from processor.state.overlay import BatchOverlay
from processor.transport import InRecord, OutRecord
from processor.worker.checkpoint import Checkpoint
from processor.worker.config_follower import BATCH_SETTLE_S, ConfigFollower
from processor.worker.decision import decide_record
from processor.worker.outputs import Outputs, OutputTopics, outputs_of
from processor.worker.partition import Outcome, PartitionProcessor, Verdict
from processor.worker.partitions import Partition
from processor.worker.tally import BatchTally

log = structlog.get_logger("processor.runner")


def by_partition(records: list[InRecord], provisioning: str) -> dict[int, list[InRecord]]:
    """The records of each partition, the platform's own changes first: an account record
    must meet the baseline with every provisioning record that is already in (the sort is
    stable: offsets stay in order)."""
    grouped: dict[int, list[InRecord]] = {}
    for record in records:
        grouped.setdefault(record.partition, []).append(record)
    for batch in grouped.values():
        batch.sort(key=lambda r: r.topic != provisioning)
    return grouped


class BatchDecider:
    """Decides the records of one batch and sends what they produce to the checkpoint."""

    def __init__(self, settings: Settings, follower: ConfigFollower) -> None:
        s = self._settings = settings
        self._follower = follower
        self._topics = OutputTopics(
            s.topic_events, s.topic_remediations, s.topic_dlq, s.max_record_bytes
        )
        self._caught_up = False

    def decide(
        self,
        grouped: dict[int, list[InRecord]],
        partitions: dict[int, Partition],
        checkpoint: Checkpoint,
        latest_ms: int,
    ) -> tuple[BatchTally, dict[int, BatchOverlay]]:
        """Decide every record of ``grouped``; returns the tally and each partition's writes.

        ``latest_ms`` bounds the instants records may carry (the wall clock plus
        ``NCD_FUTURE_ALLOWANCE_S``).
        """
        s = self._settings
        tally = BatchTally()
        overlays: dict[int, BatchOverlay] = {}
        self._caught_up = False
        for partition, batch in grouped.items():
            entry = partitions[partition]
            overlay = overlays[partition] = BatchOverlay(entry.store, s.max_record_bytes)
            processor = entry.processor
            processor.begin_batch(latest_ms)
            i = 0
            while i < len(batch):
                # Runs of unchanged records in bulk; any other record one at a time.
                run = processor.unchanged_run(batch, i, s.topic_aggregations, overlay)
                if run is not None and run.decided:
                    tally.unchanged(partition, *run)
                    i += run.decided
                    continue
                outcome, outputs = self._decide(processor, batch[i], overlay)
                i += 1
                for out in outputs.records:
                    checkpoint.send(out)
                tally.add(partition, outcome, outputs)
                if outcome.deletes_suppressed:
                    _warn_guard(outcome, partition)
            # Aggregation offsets grow per partition: the batch's first one names its chunk.
            processor.end_batch(
                overlay, next((r.offset for r in batch if r.topic == s.topic_aggregations), 0)
            )
            for key, value in overlay.writes.items():
                checkpoint.send(OutRecord(s.topic_changelog, key, value, partition=partition))
        return tally, overlays

    def _catch_up(self) -> bool:
        """Read the config topics once per batch: a descriptor may have just come."""
        if self._caught_up:
            return False
        self._follower.catch_up(settle_s=BATCH_SETTLE_S)
        self._caught_up = True
        return True

    def _decide(
        self,
        processor: PartitionProcessor,
        record: InRecord,
        overlay: BatchOverlay,
    ) -> tuple[Outcome, Outputs]:
        """Decide one record and build its outputs within the record's failure boundary
        (:func:`~processor.worker.decision.decide_record`, shared with ``replay``)."""
        return decide_record(
            processor,
            record.value,
            overlay,
            provisioning=record.topic == self._settings.topic_provisioning,
            outputs=lambda outcome: self._outputs(outcome, record),
            key=record.key,
            catch_up=self._catch_up,
        )

    def _outputs(self, outcome: Outcome, record: InRecord) -> Outputs:
        """The records a decision produces; each dead letter is logged."""
        reason = None
        if outcome.verdict == Verdict.DEAD_LETTERED:
            reason = outcome.reason or "invalid record"
        outputs = outputs_of(self._topics, record, outcome.events, outcome.remediations, reason)
        for why in outputs.dead_letter_reasons:
            log.warning(
                "record_dead_lettered",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                reason=why,
            )
        return outputs


def _warn_guard(outcome: Outcome, partition: int) -> None:
    guard = outcome.guard
    log.warning(
        "delete_guard_tripped",
        source_id=outcome.source_id,
        partition=partition,
        suppressed=outcome.deletes_suppressed,
        previous_accounts=None if guard is None else guard.previous_count,
        threshold_percent=None if guard is None else guard.threshold_percent,
        reason=outcome.reason or "deletions over the source's deleteThreshold",
    )
