"""``TransactionalSink`` on confluent-kafka.

The transaction state machine and the commit order are ``processor.transport.base.SinkBase``'s;
here only the client calls: ``commit`` flushes (delivery reports give each record's offset
and surface failures), then ``send_offsets_to_transaction`` with the consumer's group
metadata and ``commit_transaction``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, Message, Producer  # type: ignore[import-untyped]

from processor.errors import TransportError
from processor.transport.base import SinkBase, WrittenEnds
from processor.transport.confluent._common import (
    error_of,
    mapped_errors,
    producer_options,
    to_offsets,
    transport_error,
)
from processor.transport.records import TP, ClientSettings, OutRecord

# Longest wait for outstanding records in flush/close and for a transaction call;
# beyond it the broker is considered unreachable and the error is retriable.
FLUSH_TIMEOUT_S = 60.0
# Wait for room in librdkafka's local queue when it is full.
QUEUE_FULL_WAIT_S = 0.05
_PURGES = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})


class _Deliveries(WrittenEnds):
    """Collects delivery reports: last offset + 1 per partition, and the first failure."""

    def __init__(self) -> None:
        super().__init__()
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
        self.add(TP(msg.topic(), msg.partition()), msg.offset())

    def reset(self) -> None:
        self.ends = {}
        self.failure = None


class ConfluentTransactionalSink(SinkBase):
    """One producer: transactional when ``settings.transactional_id`` is set.

    ``group_metadata(group_id)`` gives what ``send_offsets_to_transaction`` needs: the
    metadata of this process's consumer of that group (generation and member id, so a
    zombie member is fenced), supplied by the transport.
    """

    def __init__(self, settings: ClientSettings, group_metadata: Callable[[str], Any]) -> None:
        super().__init__(settings.transactional_id is not None)
        self._group_metadata = group_metadata
        self._deliveries = _Deliveries()
        with mapped_errors("producer start"):
            self._client = Producer(producer_options(settings))
            if self._transactional:
                self._client.init_transactions(FLUSH_TIMEOUT_S)

    def _reset(self) -> None:
        self._deliveries.reset()

    def _begin_transaction(self) -> None:
        with mapped_errors("begin transaction"):
            self._client.begin_transaction()

    def _write(self, record: OutRecord) -> None:
        options: dict[str, Any] = {
            "key": record.key,
            "value": record.value,
            "on_delivery": self._deliveries,
        }
        if record.partition is not None:
            options["partition"] = record.partition
        if record.headers:
            options["headers"] = list(record.headers)
        try:
            with mapped_errors("send"):
                while True:
                    try:
                        self._client.produce(record.topic, **options)
                        return
                    except BufferError:  # the local queue is full: serve reports, retry
                        self._client.poll(QUEUE_FULL_WAIT_S)
        except TransportError as exc:
            cause = error_of(exc.__cause__) if exc.__cause__ is not None else None
            if cause is not None and cause.code() == KafkaError._STATE:
                self._transaction_error()  # refused in an open one: the transaction failed
            raise

    def _flush(self) -> dict[TP, int]:
        try:
            with mapped_errors("flush"):
                left = self._client.flush(FLUSH_TIMEOUT_S)
            if left:
                raise TransportError(f"flush failed: {left} records not delivered", retriable=True)
            if self._deliveries.failure is not None:
                raise transport_error("send", self._deliveries.failure)
        except TransportError:
            if self._deliveries.purged:
                self._transaction_error()
            raise
        return dict(self._deliveries.ends)

    def _commit_transaction(self, offsets: Mapping[TP, int], group_id: str) -> None:
        with mapped_errors("commit transaction"):
            if offsets:
                self._client.send_offsets_to_transaction(
                    to_offsets(offsets), self._group_metadata(group_id), FLUSH_TIMEOUT_S
                )
            self._client.commit_transaction(FLUSH_TIMEOUT_S)

    def _transaction_error(self) -> None:
        """Raise the reason librdkafka failed the open transaction as a whole (a refused
        topic, say) instead of what it shows for that (a purged queue, a send refused in
        state ``_STATE``). In that state ``commit_transaction`` commits nothing and raises
        the transaction's own error."""
        if self._transactional and self._open:
            with mapped_errors("commit transaction"):
                self._client.commit_transaction(FLUSH_TIMEOUT_S)

    def _abort_transaction(self) -> None:
        with mapped_errors("abort transaction"):
            self._client.abort_transaction(FLUSH_TIMEOUT_S)

    def close(self) -> None:
        """Release the producer; records of an open transaction are dropped, not sent."""
        with mapped_errors("producer close"):
            if self._open:
                self._client.purge()
                self._client.flush(0)
            else:
                self._client.flush(FLUSH_TIMEOUT_S)
