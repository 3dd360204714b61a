"""Shared pieces of the confluent-kafka adapters: client options, error mapping, records."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from confluent_kafka import (  # type: ignore[import-untyped]
    OFFSET_BEGINNING,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from processor.errors import BrokerAccessError, TransportError
from processor.transport import base
from processor.transport.records import AUTH_HINT, TP, ClientSettings, InRecord

#: librdkafka's log lines go through stdlib logging under this name, not raw to stderr.
LOGGER = logging.getLogger("processor.transport.confluent.librdkafka")

# Refusals a retry cannot cure, even where they fail a transaction that could be aborted and
# tried again: a missing ACL or bad credentials must stop the worker, naming the refusal.
_REFUSED = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
    }
)

# Error codes that a retry can cure even when librdkafka does not flag them retriable
# (a KafkaException raised from a plain call carries only a code, retriable() False).
_TRANSIENT = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._TIMED_OUT_QUEUE,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._QUEUE_FULL,
        KafkaError._WAIT_COORD,
        KafkaError._RESOLVE,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._PREV_IN_PROGRESS,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.CONCURRENT_TRANSACTIONS,
    }
)


#: Where librdkafka spells an option otherwise than Kafka's dotted name: it has no
#: request timeout for every client, its socket timeout plays that part.
_NAMES = {"request.timeout.ms": "socket.timeout.ms"}


def to_librdkafka(options: dict[str, Any]) -> dict[str, Any]:
    """Options in Kafka's names (``processor.transport.base``) as librdkafka's, logging
    through :data:`LOGGER`."""
    return {**base.renamed(options, _NAMES), "logger": LOGGER}


def common_options(settings: ClientSettings) -> dict[str, Any]:
    """librdkafka options shared by consumers, producers and the admin client."""
    return to_librdkafka(base.client_options(settings))


class AuthWatch:
    """Remembers whether librdkafka reported a refused SASL authentication.

    librdkafka reports it only through ``error_cb`` (served by ``poll``); the call that
    failed meanwhile says just ``_TRANSPORT``, which looks retriable.
    """

    def __init__(self) -> None:
        self.refused = False

    def on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._AUTHENTICATION:
            self.refused = True

    def check(self, operation: str) -> None:
        """Raise a non-retriable ``TransportError`` naming the settings, once refused."""
        if self.refused:
            raise BrokerAccessError(f"{operation} failed: {AUTH_HINT}", retriable=False)


#: How long librdkafka waits before it fetches again for a partition whose prefetched records
#: filled its queue (``queued.max.messages.kbytes``, 64 MiB: ~20,000 records of 3 KB). Its
#: default, 1000 ms, outlasted the worker: it took the queue in ~0.6 s and then stood for the
#: rest of the second, every ~10 batches (worker 1.64x and 1.76x with 20 ms, side by side on
#: Apache Kafka; BENCHMARKS.md, "librdkafka's fetch queue").
FETCH_QUEUE_BACKOFF_MS = 20


def consumer_options(settings: ClientSettings, group_id: str) -> dict[str, Any]:
    """Options of every consumer: read_committed, manual commits, start at the beginning."""
    return {
        **to_librdkafka(base.consumer_options(settings)),
        "group.id": group_id,
        # Positions are only stored by our own commit calls.
        "enable.auto.offset.store": False,
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
    }


def producer_options(settings: ClientSettings) -> dict[str, Any]:
    """Options of every producer; transactional when the settings carry an id.

    Keyed records are partitioned with murmur2 like the Java client and kafka-python, so
    both transports put an account on the same partition.
    """
    options = {**to_librdkafka(base.producer_options(settings)), "partitioner": "murmur2_random"}
    if settings.transactional_id is not None:
        # librdkafka refuses a message timeout longer than the transaction's (its default
        # is 300 s): a record that cannot be delivered within the transaction fails it.
        options["message.timeout.ms"] = min(300_000, settings.transaction_timeout_ms)
        # ... and a socket timeout longer than the transaction's timeout + 100 ms.
        options["socket.timeout.ms"] = min(
            options["socket.timeout.ms"], settings.transaction_timeout_ms + 100
        )
    return options


def error_of(exc: BaseException) -> KafkaError | None:
    """The ``KafkaError`` a confluent-kafka exception carries, if any."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def transport_error(operation: str, error: KafkaError) -> TransportError:
    """``error`` as a ``TransportError``; the message names the operation and the code only.

    Fatal errors (a fenced producer) and refusals (authorization, authentication) are never
    retriable. Another error that requires the transaction to be aborted is retriable: the
    runner aborts, rewinds and tries again.
    """
    retriable = (
        not error.fatal()
        and error.code() not in _REFUSED
        and (
            bool(error.retriable())
            or bool(error.txn_requires_abort())
            or error.code() in _TRANSIENT
        )
    )
    return TransportError(f"{operation} failed: {error.name()}", retriable=retriable)


@contextmanager
def mapped_errors(operation: str) -> Iterator[None]:
    """Turn confluent-kafka's exceptions into ``TransportError``, keeping the cause."""
    try:
        yield
    except KafkaException as exc:
        error = error_of(exc)
        if error is None:
            raise TransportError(f"{operation} failed: KafkaException", retriable=False) from exc
        raise transport_error(operation, error) from exc
    except RuntimeError as exc:  # a call on a closed client
        raise TransportError(f"{operation} failed: {type(exc).__name__}", retriable=False) from exc


def to_tp(tp: TopicPartition) -> TP:
    """Our partition value from confluent-kafka's."""
    return TP(tp.topic, tp.partition)


def to_ck_tp(tp: TP, offset: int | None = None) -> TopicPartition:
    """confluent-kafka's partition value from ours (``offset=None``: no offset)."""
    if offset is None:
        return TopicPartition(tp.topic, tp.partition)
    return TopicPartition(tp.topic, tp.partition, offset)


def to_offsets(offsets: Mapping[TP, int]) -> list[TopicPartition]:
    """Offsets to commit, in confluent-kafka's shape."""
    return [TopicPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]


def start_offset(offset: int | None) -> int:
    """An offset to assign from; ``None`` is the beginning of the partition."""
    return OFFSET_BEGINNING if offset is None else offset


def fetch(consumer: Any, max_records: int, timeout_s: float) -> list[Message]:
    """Up to ``max_records`` messages, returning as soon as any are there (or at timeout).

    ``Consumer.consume(n, timeout)`` waits the whole timeout unless ``n`` messages arrive;
    so take what is queued, else wait for one message with ``poll`` and add what
    came with it. Rebalance callbacks are served inside either call.
    """
    messages: list[Message] = consumer.consume(max_records, 0)
    if messages:
        return messages
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]


def to_in_records(operation: str, messages: list[Message]) -> list[InRecord]:
    """Records of a ``consume`` result, in order; error events are raised, not returned.

    An error is only raised when the batch holds no record: the records' positions have
    already advanced, so dropping them would lose them; a lasting error comes back on the
    next call.
    """
    records: list[InRecord] = []
    error: KafkaError | None = None
    for msg in messages:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                error = error or err
            continue
        records.append(
            InRecord(
                topic=msg.topic(),
                partition=msg.partition(),
                offset=msg.offset(),
                key=msg.key(),
                value=msg.value(),
                headers=base.headers_of(msg.headers()),
                timestamp_ms=msg.timestamp()[1],
            )
        )
    if error is not None and not records:
        raise transport_error(operation, error)
    return records
