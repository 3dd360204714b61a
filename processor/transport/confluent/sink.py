"""``TransactionalSink`` and ``Producer`` on confluent-kafka.

Commit order of one exactly-once transaction, as in the kafka-python sink: ``begin`` ->
``send``... -> ``commit``: flush (delivery reports give each record's offset and surface
failures), ``send_offsets_to_transaction`` with the consumer's group metadata, then
``commit_transaction``. Without a transactional id the same calls only flush, and the
runner commits offsets on the consumer afterwards (at-least-once).

Keyed records are partitioned with murmur2 like the Java client and kafka-python, so
both transports put an account on the same partition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from confluent_kafka import KafkaError, Message, Producer  # type: ignore[import-untyped]

from processor.errors import TransportError
from processor.transport import TP, ClientSettings, OutRecord
from processor.transport.confluent._common import (
    common_options,
    error_of,
    mapped_errors,
    to_offsets,
    transport_error,
)

# Longest wait for outstanding records in flush/close and for a transaction call;
# beyond it the broker is considered unreachable and the error is retriable.
FLUSH_TIMEOUT_S = 60.0
# Wait for room in librdkafka's local queue when it is full.
QUEUE_FULL_WAIT_S = 0.05
_PURGES = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})


def _producer_options(settings: ClientSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        **common_options(settings),
        # acks=all + idempotence: no loss or duplicates from the producer's own retries.
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,  # small batching window; commit() flushes anyway
        "partitioner": "murmur2_random",
    }
    if settings.transactional_id is not None:
        options["transactional.id"] = settings.transactional_id
        options["transaction.timeout.ms"] = settings.transaction_timeout_ms
        # librdkafka refuses a message timeout longer than the transaction's (its default
        # is 300 s): a record that cannot be delivered within the transaction fails it.
        options["message.timeout.ms"] = min(300_000, settings.transaction_timeout_ms)
        # ... and a socket timeout longer than the transaction's timeout + 100 ms.
        options["socket.timeout.ms"] = min(
            options["socket.timeout.ms"], settings.transaction_timeout_ms + 100
        )
    return options


class _Deliveries:
    """Collects delivery reports: last offset + 1 per partition, and the first failure."""

    def __init__(self) -> None:
        self.written: dict[TP, int] = {}
        self.failure: KafkaError | None = None

    @property
    def purged(self) -> bool:
        """Whether the first failure is a purge: librdkafka dropped the queue, because the
        transaction failed as a whole (its own error says why)."""
        return self.failure is not None and self.failure.code() in _PURGES

    def __call__(self, error: KafkaError | None, msg: Message) -> None:
        if error is not None:
            self.failure = self.failure or error
            return
        tp = TP(msg.topic(), msg.partition())
        end = msg.offset() + 1
        if end > self.written.get(tp, 0):
            self.written[tp] = end

    def reset(self) -> None:
        self.written = {}
        self.failure = None


def _send(client: Any, record: OutRecord, on_delivery: _Deliveries) -> None:
    options: dict[str, Any] = {"key": record.key, "value": record.value, "on_delivery": on_delivery}
    if record.partition is not None:
        options["partition"] = record.partition
    if record.headers:
        options["headers"] = list(record.headers)
    with mapped_errors("send"):
        while True:
            try:
                client.produce(record.topic, **options)
                return
            except BufferError:  # the local queue is full: serve delivery reports, retry
                client.poll(QUEUE_FULL_WAIT_S)


def _flush(client: Any, deliveries: _Deliveries) -> dict[TP, int]:
    """Wait for every queued record; raise the first failure; return offsets written."""
    with mapped_errors("flush"):
        left = client.flush(FLUSH_TIMEOUT_S)
    if left:
        raise TransportError(f"flush failed: {left} records not delivered", retriable=True)
    if deliveries.failure is not None:
        raise transport_error("send", deliveries.failure)
    return dict(deliveries.written)


class ConfluentTransactionalSink:
    """One producer: transactional when ``settings.transactional_id`` is set.

    ``group_metadata(group_id)`` gives what ``send_offsets_to_transaction`` needs: the
    metadata of this process's consumer of that group (generation and member id, so a
    zombie member is fenced), supplied by the transport.
    """

    def __init__(self, settings: ClientSettings, group_metadata: Callable[[str], Any]) -> None:
        self._transactional = settings.transactional_id is not None
        self._group_metadata = group_metadata
        self._deliveries = _Deliveries()
        self._open = False
        with mapped_errors("producer start"):
            self._client = Producer(_producer_options(settings))
            if self._transactional:
                self._client.init_transactions(FLUSH_TIMEOUT_S)

    def begin(self) -> None:
        """Start a transaction (plain mode: start tracking written offsets)."""
        if self._open:
            raise TransportError("begin while a transaction is open", retriable=False)
        self._deliveries.reset()
        if self._transactional:
            with mapped_errors("begin transaction"):
                self._client.begin_transaction()
        self._open = True

    def send(self, record: OutRecord) -> None:
        """Queue ``record`` in the open transaction."""
        if not self._open:
            raise TransportError("send outside a transaction", retriable=False)
        try:
            _send(self._client, record, self._deliveries)
        except TransportError as exc:
            cause = error_of(exc.__cause__) if exc.__cause__ is not None else None
            if cause is not None and cause.code() == KafkaError._STATE:
                self._transaction_error()  # refused in an open one: the transaction failed
            raise

    def commit(self, offsets: Mapping[TP, int], group_id: str) -> dict[TP, int]:
        """Flush, add ``offsets`` to the transaction, commit; return last offset + 1."""
        if not self._open:
            raise TransportError("commit outside a transaction", retriable=False)
        try:
            written = _flush(self._client, self._deliveries)
        except TransportError:
            if self._deliveries.purged:
                self._transaction_error()
            raise
        if self._transactional:
            with mapped_errors("commit transaction"):
                if offsets:
                    self._client.send_offsets_to_transaction(
                        to_offsets(offsets), self._group_metadata(group_id), FLUSH_TIMEOUT_S
                    )
                self._client.commit_transaction(FLUSH_TIMEOUT_S)
        self._deliveries.reset()
        self._open = False
        return written

    def _transaction_error(self) -> None:
        """Raise the reason librdkafka failed the open transaction as a whole (a refused
        topic, say) instead of what it shows for that (a purged queue, a send refused in
        state ``_STATE``). In that state ``commit_transaction`` commits nothing and raises
        the transaction's own error."""
        if self._transactional and self._open:
            with mapped_errors("commit transaction"):
                self._client.commit_transaction(FLUSH_TIMEOUT_S)

    def abort(self) -> None:
        """Abort the open transaction (plain mode: records already sent may stay written)."""
        self._deliveries.reset()
        if not self._open:
            return
        self._open = False
        if self._transactional:
            with mapped_errors("abort transaction"):
                self._client.abort_transaction(FLUSH_TIMEOUT_S)

    def settle(self) -> None:
        """Nothing to do: an abort that returned leaves no transaction in doubt."""

    def close(self) -> None:
        """Release the producer; records of an open transaction are dropped, not sent."""
        with mapped_errors("producer close"):
            if self._open:
                self._client.purge()
                self._client.flush(0)
            else:
                self._client.flush(FLUSH_TIMEOUT_S)


class ConfluentProducer:
    """A plain producer for the publisher: send, flush (raising the first failure), close."""

    def __init__(self, settings: ClientSettings) -> None:
        plain = replace(settings, transactional_id=None)
        self._deliveries = _Deliveries()
        with mapped_errors("producer start"):
            self._client = Producer(_producer_options(plain))

    def send(self, record: OutRecord) -> None:
        """Queue ``record``."""
        _send(self._client, record, self._deliveries)

    def flush(self) -> None:
        """Wait until every queued record is written; raise if one failed."""
        try:
            _flush(self._client, self._deliveries)
        finally:
            self._deliveries.reset()

    def close(self) -> None:
        """Flush and release the producer."""
        with mapped_errors("producer close"):
            self._client.flush(FLUSH_TIMEOUT_S)
