"""``TransactionalSink`` and ``Producer`` on kafka-python.

The transaction state machine and the commit order are ``processor.transport.base.SinkBase``'s;
here only the client calls. ``commit`` flushes, reads back the offset each record got from
its future, then ``send_offsets_to_transaction`` and ``commit_transaction``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from kafka import KafkaProducer as _ClientProducer
from kafka.producer.future import FutureRecordMetadata

from processor.errors import TransportError
from processor.transport.base import SinkBase, WrittenEnds
from processor.transport.kafka._common import mapped_errors, producer_options, to_offsets
from processor.transport.records import TP, ClientSettings, OutRecord

# Longest wait for outstanding records in flush/close; beyond it the broker is
# considered unreachable and the error is retriable.
FLUSH_TIMEOUT_S = 60.0


def _written_offsets(futures: list[FutureRecordMetadata]) -> dict[TP, int]:
    """Last offset + 1 per partition; raises the first failure of a flushed send."""
    written = WrittenEnds()
    for future in futures:
        if future.failed():
            with mapped_errors("send"):
                raise future.exception
        meta = future.value
        written.add(TP(meta.topic, meta.partition), meta.offset)
    return written.ends


class KafkaTransactionalSink(SinkBase):
    """One producer: transactional when ``settings.transactional_id`` is set.

    Creating a transactional sink calls ``init_transactions``, which fences any older
    producer with the same transactional id (its next call fails, not retriable).
    """

    def __init__(self, settings: ClientSettings) -> None:
        super().__init__(settings.transactional_id is not None)
        self._settings = settings
        self._futures: list[FutureRecordMetadata] = []
        self._client: Any = None
        self._start()

    def _start(self) -> None:
        with mapped_errors("producer start"):
            try:
                client = _ClientProducer(**producer_options(self._settings))
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

    def _ready(self) -> None:
        if self._client is None:
            self._start()

    def _reset(self) -> None:
        self._futures = []

    def _begin_transaction(self) -> None:
        with mapped_errors("begin transaction"):
            self._client.begin_transaction()

    def _write(self, record: OutRecord) -> None:
        with mapped_errors("send"):
            future = self._client.send(
                record.topic,
                key=record.key,
                value=record.value,
                headers=list(record.headers),
                partition=record.partition,
            )
        self._futures.append(future)

    def _flush(self) -> dict[TP, int]:
        with mapped_errors("flush"):
            self._client.flush(timeout=FLUSH_TIMEOUT_S)
        return _written_offsets(self._futures)

    def _commit_transaction(self, offsets: Mapping[TP, int], group_id: str) -> None:
        with mapped_errors("commit transaction"):
            if offsets:
                self._client.send_offsets_to_transaction(to_offsets(offsets), group_id)
            self._client.commit_transaction()

    def _abort_transaction(self) -> None:
        try:
            with mapped_errors("abort transaction"):
                self._client.abort_transaction()
        except TransportError as exc:
            self._replace()
            raise TransportError(f"{exc} (producer replaced)", retriable=True) from exc

    def settle(self) -> None:
        """Start the producer replaced after a failed abort (``init_transactions`` completes
        whatever the old one left open or half committed)."""
        self._ready()

    def close(self) -> None:
        """Release the producer without waiting for the records of an open transaction."""
        if self._client is None:
            return
        with mapped_errors("producer close"):
            self._client.close(timeout=0 if self._open else FLUSH_TIMEOUT_S)
