"""``PartitionReader`` on confluent-kafka: manual assignment, no group, read_committed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from confluent_kafka import Consumer, KafkaError  # type: ignore[import-untyped]

from processor.transport.confluent._common import (
    consumer_options,
    fetch,
    mapped_errors,
    start_offset,
    to_ck_tp,
    to_in_records,
    transport_error,
)
from processor.transport.records import TP, ClientSettings, InRecord

# Longest wait for a metadata or ListOffsets answer.
ANSWER_TIMEOUT_S = 30.0
# Longest time the broker holds a fetch that finds no new record (librdkafka: 500 ms).
FETCH_WAIT_MS = 50


class ConfluentPartitionReader:
    """Reads chosen partitions from chosen offsets (changelog restore, config topics).

    ``end_offsets`` asks the partition leader (ListOffsets, read_committed: the last stable
    offset). Until the first record of a partition is fetched, ``position`` is the offset
    it was assigned from (the beginning resolved to the low watermark), so an empty
    partition reads as complete at once.
    """

    def __init__(self, settings: ClientSettings) -> None:
        # librdkafka wants a group id even without a subscription, and looks up its
        # coordinator (authorized against the group): the worker's own group, which it
        # may read. This consumer never joins or commits (every partition is assigned
        # from an explicit offset).
        group = settings.group_id or f"{settings.client_id}-reader"
        options = {
            **consumer_options(settings, group),
            # A broker answers requests of one connection in order, so an idle fetch
            # holds back the ListOffsets of ``end_offsets`` for up to this long.
            "fetch.wait.max.ms": FETCH_WAIT_MS,
        }
        self._starts: dict[TP, int] = {}
        # Asks for high watermarks only (read_uncommitted); made on first use.
        self._uncommitted_options = {**options, "isolation.level": "read_uncommitted"}
        self._uncommitted: Consumer | None = None
        with mapped_errors("reader start"):
            self._consumer = Consumer(options)

    def written_ends(self, tps: Iterable[TP]) -> dict[TP, int]:
        """The high watermark of each partition (ListOffsets, read_uncommitted)."""
        ends: dict[TP, int] = {}
        with mapped_errors("end offsets"):
            if self._uncommitted is None:
                self._uncommitted = Consumer(self._uncommitted_options)
            for tp in tps:
                _, high = self._uncommitted.get_watermark_offsets(
                    to_ck_tp(tp), ANSWER_TIMEOUT_S, cached=False
                )
                ends[tp] = int(high)
        return ends

    def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        """The offset after the last readable record of each partition."""
        ends: dict[TP, int] = {}
        with mapped_errors("end offsets"):
            for tp in tps:
                _, high = self._consumer.get_watermark_offsets(
                    to_ck_tp(tp), ANSWER_TIMEOUT_S, cached=False
                )
                ends[tp] = int(high)
        return ends

    def partitions_for(self, topic: str) -> list[TP]:
        """Partitions of ``topic`` in order; ``[]`` when the topic does not exist."""
        with mapped_errors("partitions for topic"):
            metadata = self._consumer.list_topics(topic, ANSWER_TIMEOUT_S)
        described = metadata.topics.get(topic)
        if described is None:
            return []
        if described.error is not None:
            if described.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return []
            raise transport_error("partitions for topic", described.error)
        return [TP(topic, p) for p in sorted(described.partitions)]

    def assign(self, positions: Mapping[TP, int | None]) -> None:
        """Read exactly these partitions, each from its offset (``None``: the beginning)."""
        with mapped_errors("assign"):
            self._starts = {}
            for tp, offset in positions.items():
                if offset is None:
                    low, _ = self._consumer.get_watermark_offsets(
                        to_ck_tp(tp), ANSWER_TIMEOUT_S, cached=False
                    )
                    offset = int(low)
                self._starts[tp] = offset
            self._consumer.assign(
                [to_ck_tp(tp, start_offset(offset)) for tp, offset in positions.items()]
            )

    def poll(self, timeout_s: float, max_records: int) -> list[InRecord]:
        """Up to ``max_records`` records of the assigned partitions."""
        with mapped_errors("poll"):
            messages = fetch(self._consumer, max_records, timeout_s)
        return to_in_records("poll", messages)

    def position(self, tp: TP) -> int:
        """Offset of the next record to be read from ``tp``."""
        with mapped_errors("position"):
            (current,) = self._consumer.position([to_ck_tp(tp)])
        if current.offset >= 0:
            return int(current.offset)
        return self._starts.get(tp, 0)

    def close(self) -> None:
        """Release the connections."""
        with mapped_errors("reader close"):
            self._consumer.close()
            if self._uncommitted is not None:
                self._uncommitted.close()
