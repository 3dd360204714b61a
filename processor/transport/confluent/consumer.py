"""``GroupConsumer`` on confluent-kafka: a consumer-group member with manual commits.

Rebalance callbacks. librdkafka serves ``on_assign``/``on_revoke`` inside ``consume()``,
on the caller's thread, so the ``RebalanceListener`` is called directly from them
(heartbeats go on in librdkafka's own threads while it runs). The protocol is eager with
the range assignor, like the kafka-python adapter: the runner relies on partition p of
both input topics going to the same member. Consequences for the listener:

* ``on_revoked`` runs before the partitions move on; records of revoked partitions that
  were fetched in the same ``poll`` are dropped (their offsets were never committed).
* ``on_assigned`` may ``seek``: the seeks are collected and the partitions assigned
  from those offsets (the others from the committed offset), so nothing is skipped.
* Lost partitions (the member was evicted) are reported as revoked.
* :meth:`close` leaves the group without calling the listener (as kafka-python does).

An exception raised by the listener is re-raised from :meth:`poll` once librdkafka's
callback has finished its own bookkeeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from typing import Any

from confluent_kafka import (  # type: ignore[import-untyped]
    OFFSET_INVALID,
    Consumer,
    KafkaException,
    TopicPartition,
)

from processor.transport.base import GroupMemberBase, group_options
from processor.transport.confluent._common import (
    consumer_options,
    fetch,
    mapped_errors,
    to_ck_tp,
    to_in_records,
    to_offsets,
    to_tp,
)
from processor.transport.protocols import RebalanceListener
from processor.transport.records import LAG_UNKNOWN, TP, ClientSettings, InRecord

# Longest wait for a broker answer in committed/commit (the request timeout is per try).
ANSWER_TIMEOUT_S = 30.0


class ConfluentGroupConsumer(GroupMemberBase):
    """A subscribed member of ``group_id``: read_committed, manual commits, range assignor."""

    def __init__(
        self,
        settings: ClientSettings,
        topics: Sequence[str],
        group_id: str,
        listener: RebalanceListener,
    ) -> None:
        super().__init__(group_id, listener)
        # Seeks the listener makes while partitions are being assigned (None: not assigning).
        self._assigning: dict[TP, int] | None = None
        self._revoked: set[TP] = set()
        self._failure: BaseException | None = None
        self._closing = False
        options: dict[str, Any] = {
            **consumer_options(settings, group_id),
            **group_options(settings, group_id),
        }
        with mapped_errors("consumer start"):
            self._consumer = Consumer(options)
            self._consumer.subscribe(
                list(topics),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )

    # ------------------------------------------------------------ librdkafka callbacks

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = sorted(to_tp(tp) for tp in partitions)
        self._assigning = {}
        try:
            self._listener.on_assigned(tps)
        except BaseException as exc:  # re-raised from poll, after the assignment is made
            self._failure = self._failure or exc
        finally:
            sought, self._assigning = self._assigning, None
            self._revoked.difference_update(tps)
            consumer.assign([to_ck_tp(tp, sought.get(tp, OFFSET_INVALID)) for tp in tps])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = sorted(to_tp(tp) for tp in partitions)
        self._revoked.update(tps)
        try:
            if tps and not self._closing:  # like kafka-python: no callback from close()
                self._listener.on_revoked(tps)
        except BaseException as exc:  # re-raised from poll
            self._failure = self._failure or exc
        finally:
            # A pause ends with the partition: librdkafka would keep it across a revoke and
            # the next assignment, and a partition given back would never be fetched again.
            with suppress(KafkaException):
                consumer.resume(partitions)
            consumer.unassign()

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    # ------------------------------------------------------------ GroupConsumer

    def poll(self, timeout_s: float, max_records: int) -> list[InRecord]:
        """Fetch up to ``max_records`` records; rebalance callbacks run inside."""
        self._revoked.clear()
        with mapped_errors("poll"):
            messages = fetch(self._consumer, max_records, timeout_s)
        self._raise_failure()
        records = to_in_records("poll", messages)
        if self._revoked:
            records = [r for r in records if r.tp not in self._revoked]
        return records

    def assignment(self) -> set[TP]:
        """Partitions this member holds now."""
        with mapped_errors("assignment"):
            return {to_tp(tp) for tp in self._consumer.assignment()}

    def seek(self, tp: TP, offset: int) -> None:
        """Read ``tp`` from ``offset`` on the next poll."""
        if self._assigning is not None:
            self._assigning[tp] = offset
            return
        with mapped_errors("seek"):
            self._consumer.seek(to_ck_tp(tp, offset))

    def position(self, tp: TP) -> int:
        """Offset of the next record to be returned from ``tp``."""
        with mapped_errors("position"):
            (current,) = self._consumer.position([to_ck_tp(tp)])
        if current.offset >= 0:
            return int(current.offset)
        committed = self.committed(tp)
        if committed is not None:
            return committed
        with mapped_errors("watermarks"):
            low, _ = self._consumer.get_watermark_offsets(to_ck_tp(tp), ANSWER_TIMEOUT_S)
        return int(low)

    def committed(self, tp: TP) -> int | None:
        """The group's committed offset of ``tp``, asked from the broker."""
        with mapped_errors("committed"):
            (answer,) = self._consumer.committed([to_ck_tp(tp)], ANSWER_TIMEOUT_S)
        return None if answer.offset < 0 else int(answer.offset)

    def commit(self, offsets: Mapping[TP, int]) -> None:
        """Commit ``offsets`` for the group, synchronously."""
        if not offsets:
            return
        with mapped_errors("commit offsets"):
            self._consumer.commit(offsets=to_offsets(offsets), asynchronous=False)

    def lag(self) -> dict[TP, int]:
        """Records behind the high watermark per assigned partition, from the last fetch."""
        lags: dict[TP, int] = {}
        with mapped_errors("lag"):
            assigned = self._consumer.assignment()
            positions = self._consumer.position(assigned) if assigned else []
            for current in positions:
                marks = self._consumer.get_watermark_offsets(current, cached=True)
                high = -1 if marks is None else marks[1]
                if high < 0 or current.offset < 0:
                    lags[to_tp(current)] = LAG_UNKNOWN  # no fetch has answered yet
                else:
                    lags[to_tp(current)] = max(high - current.offset, 0)
        return lags

    def pause(self, tps: Iterable[TP]) -> None:
        """Stop fetching from ``tps`` (the member keeps them)."""
        with mapped_errors("pause"):
            self._consumer.pause([to_ck_tp(tp) for tp in tps])

    def resume(self, tps: Iterable[TP]) -> None:
        """Fetch from ``tps`` again."""
        with mapped_errors("resume"):
            self._consumer.resume([to_ck_tp(tp) for tp in tps])

    def group_metadata(self) -> Any:
        """The member's group metadata, for ``send_offsets_to_transaction``."""
        with mapped_errors("group metadata"):
            return self._consumer.consumer_group_metadata()

    def close(self) -> None:
        """Leave the group and release the connections (no commit, no listener call)."""
        self._closing = True
        with mapped_errors("consumer close"):
            self._consumer.close()
        self._raise_failure()
