"""The provisioning hold: a partition's account records wait for its provisioning input.

Kafka orders records within a partition, not across the two input topics; an account record
read before a provisioning record that completed earlier would report the platform's own
change as native. So while the consumer knows of provisioning records it has not read yet for
a partition, that partition's aggregation records are put back, its aggregation partition is
paused, and it is resumed once the provisioning partition has caught up. Bounded: after
``MAX_HOLD_POLLS`` polls the aggregation records go ahead (a provisioning stream that never
drains must not stall aggregations); the race window (docs/provisioning.md) still covers
what comes late.
"""

from __future__ import annotations

from collections.abc import Mapping

from processor.transport import LAG_UNKNOWN, TP, GroupConsumer, InRecord, put_back
from processor.worker.partitions import Pauses
from processor.worker.tally import Stats

#: Polls in a row a partition's aggregation records may wait for its provisioning input.
MAX_HOLD_POLLS = 20
#: Why a partition is paused: its provisioning input is behind.
HELD = "provisioning"


class ProvisioningHold:
    """Holds back aggregation records of partitions whose provisioning input is behind."""

    def __init__(self, aggregations: str, provisioning: str, pauses: Pauses, stats: Stats) -> None:
        self._aggregations = aggregations
        self._provisioning = provisioning
        self._pauses = pauses
        self._stats = stats
        #: Polls each partition has been held (or behind) for, in a row.
        self._polls: dict[int, int] = {}
        self._holding: set[int] = set()

    def apply(
        self, records: list[InRecord], consumer: GroupConsumer, lag: Mapping[TP, int]
    ) -> list[InRecord]:
        """The records that may be decided now; called every iteration, records or not
        (held partitions are resumed here)."""
        behind = {
            tp.partition
            for tp, count in lag.items()
            # Unknown (no fetch answered yet, e.g. just after assignment) counts as behind.
            if tp.topic == self._provisioning and (count > 0 or count == LAG_UNKNOWN)
        }
        self._resume(consumer, behind)
        if not behind:
            return records
        held = [
            record
            for record in records
            if record.topic == self._aggregations
            and record.partition in behind
            and self._polls.get(record.partition, 0) < MAX_HOLD_POLLS
        ]
        if not held:
            return records
        self._stats.held_back += len(held)
        firsts = put_back(consumer.seek, held)
        self._holding.update(tp.partition for tp in firsts)
        self._pauses.pause(consumer, list(firsts), HELD)
        held_tps = set(firsts)
        return [record for record in records if record.tp not in held_tps]

    def _resume(self, consumer: GroupConsumer, behind: set[int]) -> None:
        """Count one more poll for each held partition; resume those caught up or held long
        enough."""
        resume = []
        for partition in sorted(self._holding):
            self._polls[partition] = self._polls.get(partition, 0) + 1
            if partition not in behind or self._polls[partition] >= MAX_HOLD_POLLS:
                self._holding.discard(partition)
                resume.append(TP(self._aggregations, partition))
        if resume:
            self._pauses.release(consumer, resume, HELD)
        for partition in list(self._polls):
            if partition not in behind and partition not in self._holding:
                del self._polls[partition]

    def forget(self, partition: int) -> None:
        """Drop what is known of a partition taken away."""
        self._holding.discard(partition)
        self._polls.pop(partition, None)
