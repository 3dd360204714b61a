"""``PartitionReader`` on kafka-python: manual assignment, no group, read_committed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kafka import KafkaConsumer

from processor.transport import TP, ClientSettings, InRecord
from processor.transport.kafka._common import (
    consumer_options,
    mapped_errors,
    to_in_records,
    to_kafka_tp,
    to_tp,
)

#: How long the broker may hold a fetch of this reader that finds nothing new (kafka-python's
#: default is 500 ms). The broker answers one connection's requests in order, so the next
#: request of the reader (a restore's next partition, a config catch-up) waited behind a
#: fetch parked at a partition's end: ~0.5 s per partition restored at start-up.
FETCH_MAX_WAIT_MS = 100


class KafkaPartitionReader:
    """Reads chosen partitions from chosen offsets (changelog restore, config topics).

    ``end_offsets`` is the last stable offset (read_committed): reading until
    ``position(tp) >= end_offsets()[tp]`` reads the partition in full, control
    records included (they advance the position but are never returned).
    """

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        # Asks for high watermarks only (read_uncommitted); made on first use.
        self._uncommitted: KafkaConsumer | None = None
        with mapped_errors("reader start"):
            self._consumer = KafkaConsumer(**_options(settings))

    def written_ends(self, tps: Iterable[TP]) -> dict[TP, int]:
        """The high watermark of each partition (ListOffsets, read_uncommitted)."""
        with mapped_errors("end offsets"):
            if self._uncommitted is None:
                options = {**_options(self._settings), "isolation_level": "read_uncommitted"}
                self._uncommitted = KafkaConsumer(**options)
            ends = self._uncommitted.end_offsets([to_kafka_tp(tp) for tp in tps])
        return {to_tp(tp): int(offset) for tp, offset in ends.items()}

    def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        """The offset after the last readable record of each partition."""
        with mapped_errors("end offsets"):
            ends = self._consumer.end_offsets([to_kafka_tp(tp) for tp in tps])
        return {to_tp(tp): int(offset) for tp, offset in ends.items()}

    def partitions_for(self, topic: str) -> list[TP]:
        """Partitions of ``topic`` in order; ``[]`` when the topic does not exist."""
        with mapped_errors("partitions for topic"):
            partitions = self._consumer.partitions_for_topic(topic) or set()
        return [TP(topic, p) for p in sorted(partitions)]

    def assign(self, positions: Mapping[TP, int | None]) -> None:
        """Read exactly these partitions, each from its offset (``None``: the beginning)."""
        with mapped_errors("assign"):
            self._consumer.assign([to_kafka_tp(tp) for tp in positions])
            from_start = [to_kafka_tp(tp) for tp, off in positions.items() if off is None]
            if from_start:
                self._consumer.seek_to_beginning(*from_start)
            for tp, offset in positions.items():
                if offset is not None:
                    self._consumer.seek(to_kafka_tp(tp), offset)

    def poll(self, timeout_s: float, max_records: int) -> list[InRecord]:
        """Up to ``max_records`` records of the assigned partitions."""
        with mapped_errors("poll"):
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return to_in_records(batches)

    def position(self, tp: TP) -> int:
        """Offset of the next record to be read from ``tp``."""
        with mapped_errors("position"):
            return int(self._consumer.position(to_kafka_tp(tp)))

    def close(self) -> None:
        """Release the connections."""
        with mapped_errors("reader close"):
            self._consumer.close(autocommit=False)
            if self._uncommitted is not None:
                self._uncommitted.close(autocommit=False)


def _options(settings: ClientSettings) -> dict[str, object]:
    """A reader's consumer: no group, fetches held at most :data:`FETCH_MAX_WAIT_MS`."""
    return {**consumer_options(settings), "group_id": None, "fetch_max_wait_ms": FETCH_MAX_WAIT_MS}
