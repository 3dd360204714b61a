"""``TransactionalSink`` and ``Producer`` on kafka-python.

Commit order of one exactly-once transaction (the runner relies on it):
``begin`` -> ``send``... -> ``commit``: flush every record, read back the offset each
got, add the consumer offsets to the transaction (``send_offsets_to_transaction``),
then ``commit_transaction``. Outputs and input offsets become visible together or
not at all. Without a transactional id the same calls only flush, and the runner
commits offsets on the consumer afterwards (at-least-once).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from kafka import KafkaProducer as _ClientProducer
from kafka.producer.future import FutureRecordMetadata

from processor.errors import TransportError
from processor.transport import TP, ClientSettings, OutRecord
from processor.transport.kafka._common import common_options, mapped_errors, to_offsets

# Longest wait for outstanding records in flush/close; beyond it the broker is
# considered unreachable and the error is retriable.
FLUSH_TIMEOUT_S = 60.0


def _producer_options(settings: ClientSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        **common_options(settings),
        # acks=all + idempotence: no loss or duplicates from the producer's own retries.
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,  # small batching window; commit() flushes anyway
    }
    if settings.transactional_id is not None:
        options["transactional_id"] = settings.transactional_id
        options["transaction_timeout_ms"] = settings.transaction_timeout_ms
    return options


def _send(client: Any, record: OutRecord) -> FutureRecordMetadata:
    return client.send(
        record.topic,
        key=record.key,
        value=record.value,
        headers=list(record.headers),
        partition=record.partition,
    )


def _written_offsets(futures: list[FutureRecordMetadata]) -> dict[TP, int]:
    """Last offset + 1 per partition; raises the first failure of a flushed send."""
    written: dict[TP, int] = {}
    for future in futures:
        if future.failed():
            with mapped_errors("send"):
                raise future.exception
        meta = future.value
        tp = TP(meta.topic, meta.partition)
        written[tp] = max(written.get(tp, 0), meta.offset + 1)
    return written


class KafkaTransactionalSink:
    """One producer: transactional when ``settings.transactional_id`` is set.

    Creating a transactional sink calls ``init_transactions``, which fences any older
    producer with the same transactional id (its next call fails, not retriable).
    """

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        self._transactional = settings.transactional_id is not None
        self._futures: list[FutureRecordMetadata] = []
        self._open = False
        self._client: Any = None
        self._start()

    def _start(self) -> None:
        with mapped_errors("producer start"):
            try:
                client = _ClientProducer(**_producer_options(self._settings))
            except AssertionError as exc:
                # kafka-python asserts a transactional-capable broker version; with no answer
                # to its version probe (a broker still frozen or restarting) the assertion
                # fails: the same as a broker that did not answer, so retried like one.
                raise TransportError(
                    "producer start failed: no broker answered its version probe", retriable=True
                ) from exc
            try:
                if self._transactional:
                    client.init_transactions()
            except BaseException:
                client.close(timeout=0)
                raise
        self._client = client

    def _replace(self) -> None:
        """Drop a producer whose transaction state is unknown; the next ``begin`` starts a
        new one, whose ``init_transactions`` fences the old epoch and aborts what it left
        open (kafka-python cannot use a producer again after a failed abort)."""
        client, self._client = self._client, None
        # It is being thrown away and the failure that got it here was already reported.
        with contextlib.suppress(Exception):
            client.close(timeout=0)

    def begin(self) -> None:
        """Start a transaction (plain mode: start tracking written offsets)."""
        if self._open:
            raise TransportError("begin while a transaction is open", retriable=False)
        if self._client is None:
            self._start()
        self._futures = []
        if self._transactional:
            with mapped_errors("begin transaction"):
                self._client.begin_transaction()
        self._open = True

    def send(self, record: OutRecord) -> None:
        """Queue ``record`` in the open transaction."""
        if not self._open:
            raise TransportError("send outside a transaction", retriable=False)
        with mapped_errors("send"):
            self._futures.append(_send(self._client, record))

    def commit(self, offsets: Mapping[TP, int], group_id: str) -> dict[TP, int]:
        """Flush, add ``offsets`` to the transaction, commit; return last offset + 1."""
        if not self._open:
            raise TransportError("commit outside a transaction", retriable=False)
        with mapped_errors("flush"):
            self._client.flush(timeout=FLUSH_TIMEOUT_S)
        written = _written_offsets(self._futures)
        if self._transactional:
            with mapped_errors("commit transaction"):
                if offsets:
                    self._client.send_offsets_to_transaction(to_offsets(offsets), group_id)
                self._client.commit_transaction()
        self._futures = []
        self._open = False
        return written

    def abort(self) -> None:
        """Abort the open transaction (plain mode: records already sent may stay written)."""
        self._futures = []
        if not self._open:
            return
        self._open = False
        if self._transactional:
            try:
                with mapped_errors("abort transaction"):
                    self._client.abort_transaction()
            except TransportError as exc:
                self._replace()
                raise TransportError(f"{exc} (producer replaced)", retriable=True) from exc

    def settle(self) -> None:
        """Start the producer replaced after a failed abort (``init_transactions`` completes
        whatever the old one left open or half committed)."""
        if self._client is None:
            self._start()

    def close(self) -> None:
        """Release the producer without waiting for queued records."""
        if self._client is None:
            return
        with mapped_errors("producer close"):
            self._client.close(timeout=0 if self._open else FLUSH_TIMEOUT_S)


class KafkaProducer:
    """A plain producer for the publisher: send, flush (raising the first failure), close."""

    def __init__(self, settings: ClientSettings) -> None:
        plain = replace(settings, transactional_id=None)
        self._futures: list[FutureRecordMetadata] = []
        with mapped_errors("producer start"):
            self._client = _ClientProducer(**_producer_options(plain))

    def send(self, record: OutRecord) -> None:
        """Queue ``record``."""
        with mapped_errors("send"):
            self._futures.append(_send(self._client, record))

    def flush(self) -> None:
        """Wait until every queued record is written; raise if one failed."""
        with mapped_errors("flush"):
            self._client.flush(timeout=FLUSH_TIMEOUT_S)
        futures, self._futures = self._futures, []
        _written_offsets(futures)

    def close(self) -> None:
        """Flush and release the producer."""
        with mapped_errors("producer close"):
            self._client.close(timeout=FLUSH_TIMEOUT_S)
