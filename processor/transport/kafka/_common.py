"""Shared pieces of the kafka-python adapters: client options, error mapping, records."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import (
    IncompatibleBrokerVersion,
    InvalidProducerEpochError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NoBrokersAvailable,
)
from kafka.structs import OffsetAndMetadata, TopicPartition

from processor.errors import BrokerAccessError, TransportError
from processor.transport import base
from processor.transport.records import START_HINT, TP, ClientSettings, InRecord

#: Where kafka-python spells an option otherwise than Kafka's dotted name with underscores.
_NAMES = {
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
    "ssl.ca.location": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
    "ssl.key.password": "ssl_password",
}


def to_kafka_python(options: dict[str, Any]) -> dict[str, Any]:
    """Options in Kafka's names (``processor.transport.base``) as kafka-python's arguments."""
    out = {_NAMES.get(key, key.replace(".", "_")): value for key, value in options.items()}
    if "bootstrap_servers" in out:
        out["bootstrap_servers"] = out["bootstrap_servers"].split(",")
    if out.get("partition_assignment_strategy") == "range":
        out["partition_assignment_strategy"] = (RangePartitionAssignor,)
    return out


def common_options(settings: ClientSettings) -> dict[str, Any]:
    """kafka-python options shared by consumers, producers and the admin client."""
    return to_kafka_python(base.client_options(settings))


def consumer_options(settings: ClientSettings) -> dict[str, Any]:
    """Options of every consumer: read_committed, manual commits, start at the beginning."""
    return to_kafka_python(base.consumer_options(settings))


#: kafka-python's batching window. Every sink is flushed by its ``commit`` (each batch of the
#: worker, the publisher's ``flush``), so a record waits at most for its batch's end: the long
#: window only keeps the producer from sending while the batch is being decided. kafka-python's
#: sender is a Python thread: with the common 5 ms window it woke every few records and took
#: the GIL from the decisions (the worker's rate 1.37x and 1.66x with 1000 ms and 1 MB
#: batches, side by side on Apache Kafka: BENCHMARKS.md, "Producer batching"). librdkafka's
#: sender is not Python (no difference measured): it keeps the common options.
LINGER_MS = 1000
#: Most bytes of one record batch: full batches are sent, linger or not (kafka-python's
#: default, 16 KiB, holds about five events; librdkafka's default is this).
BATCH_BYTES = 1_000_000


def producer_options(settings: ClientSettings) -> dict[str, Any]:
    """Options of every producer; transactional when the settings carry an id."""
    options = to_kafka_python(base.producer_options(settings))
    options.update(linger_ms=LINGER_MS, batch_size=BATCH_BYTES)
    return options


@contextmanager
def mapped_errors(operation: str) -> Iterator[None]:
    """Turn kafka-python's exceptions into ``TransportError``, keeping the cause.

    ``KafkaError.retriable`` decides retriability (the unspecific base class counts as
    retriable); socket-level ``OSError`` counts as retriable (the broker may come back).
    The message names the operation and the error class only: kafka-python messages can
    quote whole requests.
    """
    try:
        yield
    except KafkaError as raised:
        exc = _underlying(raised)
        name = type(exc).__name__
        # kafka-python fails flushed sends of an unreachable broker with the bare base class
        # (not marked retriable); specific errors (fencing, authorization, ...) keep theirs.
        # An epoch bumped by the coordinator (it aborted a transaction that outlived its
        # timeout, e.g. while the broker was frozen) is cured by the abort that replaces the
        # producer; a fenced producer (another worker with our transactional id) is not.
        retriable = exc.retriable or type(exc) in (KafkaError, InvalidProducerEpochError)
        message = f"{operation} failed: {name}"
        if operation.endswith("start") and isinstance(
            exc,
            (
                KafkaTimeoutError,
                KafkaConnectionError,
                NoBrokersAvailable,
                IncompatibleBrokerVersion,
            ),
        ):
            # kafka-python reports a refused TLS or SASL handshake only as a time-out, or as
            # a failed version probe (no broker, "incompatible" broker).
            message += f" ({START_HINT})"
            raise BrokerAccessError(message, retriable=retriable) from raised
        raise TransportError(message, retriable=retriable) from raised
    except OSError as exc:
        name = type(exc).__name__
        raise TransportError(f"{operation} failed: {name}", retriable=True) from exc


def _underlying(exc: KafkaError) -> KafkaError:
    """The error a bare ``KafkaError`` carries as an argument, else ``exc`` itself.

    kafka-python refuses a send after its transaction failed with a bare ``KafkaError``
    ("at least one previous transactional ... request has failed") holding the real one (a
    refused topic, say): retrying that would fail the same way for ever.
    """
    if type(exc) is KafkaError:
        for arg in exc.args:
            if isinstance(arg, KafkaError):
                return arg
    return exc


def to_tp(tp: TopicPartition) -> TP:
    """Our partition value from kafka-python's."""
    return TP(tp.topic, tp.partition)


def to_kafka_tp(tp: TP) -> TopicPartition:
    """kafka-python's partition value from ours."""
    return TopicPartition(tp.topic, tp.partition)


def to_offsets(offsets: Mapping[TP, int]) -> dict[TopicPartition, OffsetAndMetadata]:
    """Offsets to commit, in kafka-python's shape (no metadata, unknown leader epoch)."""
    return {to_kafka_tp(tp): OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}


def to_in_records(batches: Mapping[TopicPartition, list[Any]]) -> list[InRecord]:
    """Flatten a ``poll`` result; records of one partition stay in offset order."""
    records: list[InRecord] = []
    for batch in batches.values():
        for rec in batch:
            records.append(
                InRecord(
                    topic=rec.topic,
                    partition=rec.partition,
                    offset=rec.offset,
                    key=rec.key,
                    value=rec.value,
                    headers=base.headers_of(rec.headers),
                    timestamp_ms=rec.timestamp,
                )
            )
    return records
