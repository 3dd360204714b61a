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
from processor.transport import AUTH_HINT, TP, ClientSettings, InRecord

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


def common_options(settings: ClientSettings) -> dict[str, Any]:
    """librdkafka options shared by consumers, producers and the admin client."""
    options: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.client_id,
        "security.protocol": settings.security_protocol,
        "socket.timeout.ms": settings.request_timeout_ms,
        "logger": LOGGER,
    }
    if settings.sasl_mechanism is not None:
        options["sasl.mechanism"] = settings.sasl_mechanism
        options["sasl.username"] = settings.sasl_username
        options["sasl.password"] = settings.sasl_password
    for ours, theirs in (
        ("ssl_cafile", "ssl.ca.location"),
        ("ssl_certfile", "ssl.certificate.location"),
        ("ssl_keyfile", "ssl.key.location"),
        ("ssl_password", "ssl.key.password"),
    ):
        value = getattr(settings, ours)
        if value is not None:
            options[theirs] = value
    return options


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


def consumer_options(settings: ClientSettings, group_id: str) -> dict[str, Any]:
    """Options of every consumer: read_committed, manual commits, start at the beginning."""
    return {
        **common_options(settings),
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        # Positions are only stored by our own commit calls.
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "max.partition.fetch.bytes": settings.max_partition_fetch_bytes,
        "fetch.max.bytes": settings.fetch_max_bytes,
    }


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
        headers = msg.headers()
        records.append(
            InRecord(
                topic=msg.topic(),
                partition=msg.partition(),
                offset=msg.offset(),
                key=msg.key(),
                value=msg.value(),
                headers=()
                if headers is None
                else tuple((name, bytes(value or b"")) for name, value in headers),
                timestamp_ms=msg.timestamp()[1],
            )
        )
    if error is not None and not records:
        raise transport_error(operation, error)
    return records
