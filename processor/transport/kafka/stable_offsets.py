"""The group's committed offsets as a read_committed consumer must see them (KIP-447).

A transaction's commit returns once the coordinator has decided it, before its markers are
written: for a moment after, ``OffsetFetch`` without ``require_stable`` answers the offsets
from BEFORE that transaction, and not even all partitions at once (measured on Apache Kafka
4.1: ``(10, 21)`` read right after a commit of ``(11, 21)``). A member that starts from
such an offset processes a committed batch again. The Java client and librdkafka ask with
``require_stable`` (OffsetFetch v7+), and the broker answers ``UNSTABLE_OFFSET_COMMIT``
until the markers are in; kafka-python 2.3 asks with v5 at most. This module sends v7
itself through the consumer's own client and coordinator (kafka-python's protocol types
and network client; only the two message schemas are written here) and retries while the
broker says unstable. A broker without v7 (Tansu) is asked through kafka-python's own call.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer
from kafka import errors as kafka_errors
from kafka.protocol.api import Request, Response
from kafka.protocol.commit import OffsetFetchRequest
from kafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)
from kafka.structs import TopicPartition

#: OffsetFetch's version that carries ``require_stable``.
STABLE_VERSION = 7
#: Between two asks while the broker still writes a transaction's markers.
UNSTABLE_RETRY_S = 0.05


class OffsetFetchResponseV7(Response):  # type: ignore[misc]
    API_KEY = 9
    API_VERSION = 7
    FLEXIBLE_VERSION = True
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("committed_offset", Int64),
                        ("committed_leader_epoch", Int32),
                        ("metadata", CompactString("utf-8")),
                        ("error_code", Int16),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("error_code", Int16),
        ("tags", TaggedFields),
    )


class OffsetFetchRequestV7(Request):  # type: ignore[misc]
    API_KEY = 9
    API_VERSION = 7
    FLEXIBLE_VERSION = True
    RESPONSE_TYPE = OffsetFetchResponseV7
    SCHEMA = Schema(
        ("group_id", CompactString("utf-8")),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("partition_indexes", CompactArray(Int32)),
                ("tags", TaggedFields),
            ),
        ),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


def stable_committed(
    consumer: KafkaConsumer, group_id: str, tps: Iterable[TopicPartition], timeout_s: float
) -> dict[TopicPartition, int]:
    """The group's committed offsets of ``tps`` once no transaction holds them pending.

    Partitions without a committed offset are left out. Raises ``KafkaTimeoutError`` (a
    retriable kafka-python error) when the broker does not answer a stable value in time,
    and the broker's error for anything else.
    """
    wanted = sorted(set(tps))
    if not wanted:
        return {}
    client = consumer._client
    coordinator = consumer._coordinator
    versions = client.get_api_versions() or {}
    if versions.get(OffsetFetchRequest[0].API_KEY, (0, 0))[1] < STABLE_VERSION:
        return _unstable(consumer, wanted, timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        remaining_ms = max(1, int((deadline - time.monotonic()) * 1000))
        if not coordinator.ensure_coordinator_ready(timeout_ms=remaining_ms):
            raise kafka_errors.KafkaTimeoutError("no group coordinator")
        future = client.send(coordinator.coordinator_id, _request(group_id, wanted))
        client.poll(future=future, timeout_ms=remaining_ms)
        try:
            if not future.is_done:
                raise kafka_errors.KafkaTimeoutError("no answer to OffsetFetch")
            if future.failed():
                raise future.exception
            answer = _answer(future.value)
        except kafka_errors.KafkaError as exc:
            if not exc.retriable or time.monotonic() >= deadline:
                raise
            if isinstance(exc, kafka_errors.NotCoordinatorError):
                coordinator.coordinator_dead(exc)
            answer = None
        if answer is not None:
            return answer
        if time.monotonic() >= deadline:
            raise kafka_errors.KafkaTimeoutError("committed offsets stayed unstable")
        time.sleep(UNSTABLE_RETRY_S)


def _unstable(
    consumer: KafkaConsumer, tps: list[TopicPartition], timeout_s: float
) -> dict[TopicPartition, int]:
    offsets = consumer._coordinator.fetch_committed_offsets(tps, timeout_ms=int(timeout_s * 1000))
    return {tp: int(meta.offset) for tp, meta in offsets.items() if meta.offset >= 0}


def _request(group_id: str, tps: list[TopicPartition]) -> Any:
    topics: dict[str, list[int]] = {}
    for tp in tps:
        topics.setdefault(tp.topic, []).append(tp.partition)
    return OffsetFetchRequestV7(
        group_id=group_id,
        topics=[(name, partitions, {}) for name, partitions in topics.items()],
        require_stable=True,
        tags={},
    )


def _answer(response: Any) -> dict[TopicPartition, int] | None:
    """The offsets of ``response``; ``None`` while the broker calls them unstable."""
    _raise_for(response.error_code)
    offsets: dict[TopicPartition, int] = {}
    for name, partitions, _tags in response.topics:
        for partition, offset, _epoch, _metadata, error_code, _ptags in partitions:
            if error_code == kafka_errors.UnstableOffsetCommitError.errno:
                return None
            _raise_for(error_code)
            if offset >= 0:
                offsets[TopicPartition(name, partition)] = int(offset)
    return offsets


def _raise_for(error_code: int) -> None:
    if error_code != 0:
        raise kafka_errors.for_code(error_code)()
