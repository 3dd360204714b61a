"""``GroupConsumer`` on kafka-python: a consumer-group member with manual commits.

Rebalance callbacks. kafka-python 3.0 runs rebalance listeners on its own IO thread,
where a call to a blocking API of the same consumer raises ``RuntimeError`` and a slow
callback stalls the heartbeats. So the IO-thread listener here only queues the events,
and :meth:`KafkaGroupConsumer.poll` hands them to the ``RebalanceListener`` on the
caller's thread, in order, before it returns. Consequences for the listener:

* ``on_revoked`` arrives after the group has already moved the partitions on: the
  listener must drop (abort) uncommitted work of those partitions, not commit it.
  Committing before each ``poll`` keeps that work small.
* ``on_assigned`` may ``seek``: records fetched in the same ``poll`` for partitions
  assigned during it are discarded and their positions rewound to the first of them,
  so nothing is skipped and the listener's seek wins.
* Lost partitions (the member was evicted) are reported as revoked.
"""

from __future__ import annotations

import queue
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from kafka import KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import TopicPartition

from processor.transport.base import GroupMemberBase, group_options
from processor.transport.kafka._common import (
    consumer_options,
    mapped_errors,
    to_in_records,
    to_kafka_python,
    to_kafka_tp,
    to_offsets,
    to_tp,
)
from processor.transport.kafka.stable_offsets import stable_committed
from processor.transport.protocols import RebalanceListener
from processor.transport.records import LAG_UNKNOWN, TP, ClientSettings, InRecord, put_back

_Event = tuple[Literal["assigned", "revoked"], list[TP]]

#: The longest wait for the group's committed offset of one partition.
COMMITTED_TIMEOUT_MS = 30_000


class _QueueingListener(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base
    """Runs on kafka-python's IO thread: only records what happened."""

    def __init__(self, events: queue.SimpleQueue[_Event]) -> None:
        self._events = events

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        if revoked:
            self._events.put(("revoked", sorted(to_tp(tp) for tp in revoked)))

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._events.put(("assigned", sorted(to_tp(tp) for tp in assigned)))

    def on_partitions_lost(self, lost: Iterable[TopicPartition]) -> None:
        self.on_partitions_revoked(lost)


def group_request_timeout_ms(settings: ClientSettings) -> int:
    """The group member's request timeout: kafka-python refuses one not longer than the
    session timeout (a JoinGroup may be held that long), so it is raised past it."""
    return max(settings.request_timeout_ms, settings.session_timeout_ms + GROUP_REQUEST_MARGIN_MS)


#: How much longer than the session timeout a group member's requests may take.
GROUP_REQUEST_MARGIN_MS = 5_000


class KafkaGroupConsumer(GroupMemberBase):
    """A subscribed member of ``group_id``: read_committed, manual commits, range assignor."""

    def __init__(
        self,
        settings: ClientSettings,
        topics: Sequence[str],
        group_id: str,
        listener: RebalanceListener,
    ) -> None:
        super().__init__(group_id, listener)
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        # Partitions the listener sought during the current delivery of events.
        self._sought: set[TP] = set()
        # Paused partitions (emulated: see ``pause``).
        self._paused: set[TP] = set()
        options: dict[str, Any] = {
            **consumer_options(settings),
            **to_kafka_python(group_options(settings, group_id)),
            "request_timeout_ms": group_request_timeout_ms(settings),
        }
        with mapped_errors("consumer start"):
            self._consumer = KafkaConsumer(**options)
            self._consumer.subscribe(list(topics), listener=_QueueingListener(self._events))

    def poll(self, timeout_s: float, max_records: int) -> list[InRecord]:
        """Fetch up to ``max_records`` records; deliver rebalance events first."""
        with mapped_errors("poll"):
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        records = to_in_records(batches)
        if self._paused:
            records = self._put_back_paused(records)
        newly_assigned = self._deliver_events()
        if not newly_assigned:
            return records
        held = self.assignment() - self._sought
        put_back(self.seek, [r for r in records if r.tp in newly_assigned and r.tp in held])
        return [record for record in records if record.tp not in newly_assigned]

    def _put_back_paused(self, records: list[InRecord]) -> list[InRecord]:
        """Drop the records of paused partitions and seek back to the first of them."""
        paused = [record for record in records if record.tp in self._paused]
        with mapped_errors("seek"):
            put_back(lambda tp, offset: self._consumer.seek(to_kafka_tp(tp), offset), paused)
        return [record for record in records if record.tp not in self._paused]

    def _deliver_events(self) -> set[TP]:
        """Hand queued rebalance events to the listener; return the partitions assigned."""
        assigned: set[TP] = set()
        self._sought.clear()
        while True:
            try:
                kind, tps = self._events.get_nowait()
            except queue.Empty:
                return assigned
            if kind == "revoked":
                assigned.difference_update(tps)
                self._paused.difference_update(tps)
                self._listener.on_revoked(tps)
            else:
                assigned.update(tps)
                self._start_from_stable(tps)
                self._listener.on_assigned(tps)

    def _start_from_stable(self, tps: list[TP]) -> None:
        """Move newly assigned partitions to the group's stable committed offsets.

        kafka-python positions them from an offset fetch that may still answer the offsets
        from before the previous owner's last transaction (see ``stable_offsets``): that
        member would process a committed batch again. The listener's own seeks come after.
        """
        for tp, offset in self._stable_committed(tps).items():
            self.seek(tp, offset)

    def _stable_committed(self, tps: Iterable[TP]) -> dict[TP, int]:
        """The group's stable committed offsets of ``tps`` (those without one left out)."""
        with mapped_errors("committed"):
            offsets = stable_committed(
                self._consumer,
                self._group_id,
                [to_kafka_tp(tp) for tp in tps],
                COMMITTED_TIMEOUT_MS / 1000,
            )
        return {to_tp(ktp): offset for ktp, offset in offsets.items()}

    def assignment(self) -> set[TP]:
        """Partitions this member holds now."""
        return {to_tp(tp) for tp in self._consumer.assignment()}

    def seek(self, tp: TP, offset: int) -> None:
        """Read ``tp`` from ``offset`` on the next poll."""
        with mapped_errors("seek"):
            self._consumer.seek(to_kafka_tp(tp), offset)
        self._sought.add(tp)

    def position(self, tp: TP) -> int:
        """Offset of the next record to be returned from ``tp``."""
        with mapped_errors("position"):
            return int(self._consumer.position(to_kafka_tp(tp)))

    def committed(self, tp: TP) -> int | None:
        """The group's committed offset of ``tp``, asked from the broker once stable.

        Like librdkafka's read_committed members (``require_stable``): never an offset from
        before a transaction that has committed (see ``stable_offsets``). Bounded: a broker
        that stays frozen gives a retriable ``TransportError``.
        """
        return self._stable_committed([tp]).get(tp)

    def commit(self, offsets: Mapping[TP, int]) -> None:
        """Commit ``offsets`` for the group, synchronously."""
        if not offsets:
            return
        with mapped_errors("commit offsets"):
            self._consumer.commit(offsets=to_offsets(offsets))

    def pause(self, tps: Iterable[TP]) -> None:
        """Return no records of ``tps`` until resumed (the member keeps them).

        Emulated: kafka-python 3.0's own ``pause``/``resume`` left a resumed partition
        without fetches for good (seen on Tansu: position stays, high watermark grows, no
        records). Records of a paused partition are dropped after each fetch and the
        partition is sought back to the first of them, so they are read again on resume.
        """
        self._paused.update(tps)

    def resume(self, tps: Iterable[TP]) -> None:
        """Return records of ``tps`` again, from where they were paused."""
        self._paused.difference_update(tps)

    def lag(self) -> dict[TP, int]:
        """High watermark of the last fetch minus position, per assigned partition."""
        out: dict[TP, int] = {}
        with mapped_errors("lag"):
            for ktp in self._consumer.assignment():
                highwater = self._consumer.highwater(ktp)
                # A known high watermark means a fetch happened, so the position is known
                # too and ``timeout_ms=0`` never waits on the coordinator.
                position = None if highwater is None else self._consumer.position(ktp, 0)
                if position is None:
                    out[to_tp(ktp)] = LAG_UNKNOWN
                else:
                    out[to_tp(ktp)] = max(int(highwater) - int(position), 0)
        return out

    def close(self) -> None:
        """Leave the group and release the connections (no commit)."""
        with mapped_errors("consumer close"):
            self._consumer.close(autocommit=False)
