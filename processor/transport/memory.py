"""The in-memory twin of the transport, for unit tests of the worker.

It runs the same contract tests as the Kafka clients (tests/contract/test_transport_contract.py)
and shares their sink state machine and topic logic (``processor.transport.base``).

``MemoryBroker`` keeps topics as lists of partitions of log slots. Like Kafka, a
transaction's records get offsets when written and become readable only when it
commits; each commit or abort also takes one offset per partition written (the
control marker), so "last offset + 1" and the end offset differ as they do on Kafka.
Aborted records are never readable. Committed offsets are kept per group.

One member per consumer group: a second live member of the same group is an error.
A new sink with the same transactional id fences the older one, which then fails
(``TransportError``, not retriable). ``fail_next`` makes the next call of an
operation fail, for fault tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from processor.errors import TransportError
from processor.transport.base import (
    AdminBase,
    GroupMemberBase,
    SinkBase,
    SinkProducer,
    topic_config,
)
from processor.transport.protocols import RebalanceListener, Transport
from processor.transport.records import TP, InRecord, OutRecord, TopicSpec


@dataclass
class _Slot:
    """One offset of a partition log: a readable record, or ``None`` (marker, aborted)."""

    record: InRecord | None


@dataclass
class MemoryBroker:
    """Topics, committed group offsets and transactional-id epochs, all in memory."""

    default_partitions: int = 1
    logs: dict[str, list[list[_Slot]]] = field(default_factory=dict)
    group_offsets: dict[tuple[str, TP], int] = field(default_factory=dict)
    topic_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    _epochs: dict[str, int] = field(default_factory=dict)
    _members: set[str] = field(default_factory=set)
    _failures: dict[str, TransportError] = field(default_factory=dict)
    _clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ------------------------------------------------------------------ test hooks
    def fail_next(self, operation: str, error: TransportError) -> None:
        """Make the next call of ``operation`` raise ``error``.

        Operations: ``poll``, ``send``, ``commit`` (a sink's commit, a producer's flush),
        ``consumer_commit``.
        """
        self._failures[operation] = error

    def _check(self, operation: str) -> None:
        error = self._failures.pop(operation, None)
        if error is not None:
            raise error

    def create_topic(self, name: str, partitions: int) -> None:
        """Create ``name`` if missing."""
        self.logs.setdefault(name, [[] for _ in range(partitions)])

    def records(self, topic: str) -> list[InRecord]:
        """Every readable record of ``topic``, partition by partition."""
        return [
            slot.record
            for log in self.logs.get(topic, [])
            for slot in log
            if slot.record is not None
        ]

    # ------------------------------------------------------------------ internals
    def _log(self, tp: TP) -> list[_Slot]:
        try:
            return self.logs[tp.topic][tp.partition]
        except (KeyError, IndexError):
            raise TransportError(f"unknown partition {tp}", retriable=False) from None

    def _partition_of(self, record: OutRecord) -> TP:
        if record.topic not in self.logs:
            self.create_topic(record.topic, self.default_partitions)
        count = len(self.logs[record.topic])
        if record.partition is not None:
            return TP(record.topic, record.partition)
        # A stable stand-in for Kafka's murmur2 partitioner: same key, same partition.
        key = record.key or b""
        return TP(record.topic, sum(key) % count)

    def _append(self, tp: TP, record: OutRecord, visible: bool) -> int:
        log = self._log(tp)
        offset = len(log)
        stored = InRecord(
            tp.topic,
            tp.partition,
            offset,
            record.key,
            record.value,
            record.headers,
            next(self._clock),
        )
        log.append(_Slot(stored if visible else None))
        return offset

    def _read(self, tp: TP, position: int, limit: int) -> tuple[list[InRecord], int]:
        """Readable records of ``tp`` from ``position``; returns them and the new position."""
        log = self._log(tp)
        out: list[InRecord] = []
        while position < len(log) and len(out) < limit:
            record = log[position].record
            if record is not None:
                out.append(record)
            position += 1
        return out, position

    def end_offset(self, tp: TP) -> int:
        """Offset after the last slot of ``tp`` (open transactions are not in the log)."""
        return len(self._log(tp))

    # ------------------------------------------------------------------ factories
    def group_consumer(
        self, topics: Sequence[str], group_id: str, listener: RebalanceListener
    ) -> MemoryGroupConsumer:
        """The single member of ``group_id``."""
        if group_id in self._members:
            raise TransportError(f"group {group_id} already has a member", retriable=False)
        self._members.add(group_id)
        return MemoryGroupConsumer(self, list(topics), group_id, listener)

    def sink(self, transactional_id: str | None) -> MemorySink:
        """A sink; a transactional id fences any older sink with the same id."""
        epoch = 0
        if transactional_id is not None:
            epoch = self._epochs.get(transactional_id, 0) + 1
            self._epochs[transactional_id] = epoch
        return MemorySink(self, transactional_id, epoch)

    def partition_reader(self) -> MemoryPartitionReader:
        """A group-less reader."""
        return MemoryPartitionReader(self)

    def admin(self) -> MemoryAdmin:
        """Topic administration."""
        return MemoryAdmin(self)

    def producer(self) -> SinkProducer:
        """A plain producer: records are readable at once."""
        return SinkProducer(self.sink(None))


class MemoryGroupConsumer(GroupMemberBase):
    """The only member of its group: gets every partition of its topics on first poll."""

    def __init__(
        self, broker: MemoryBroker, topics: list[str], group_id: str, listener: RebalanceListener
    ) -> None:
        super().__init__(group_id, listener)
        self._broker = broker
        self._topics = topics
        self._positions: dict[TP, int] = {}
        self._paused: set[TP] = set()
        self._closed = False

    def _join(self) -> None:
        tps = [
            TP(topic, p)
            for topic in self._topics
            for p in range(len(self._broker.logs.get(topic, [])))
        ]
        new = sorted(tp for tp in tps if tp not in self._positions)
        if not new:
            return
        for tp in new:
            self._positions[tp] = self.committed(tp) or 0
        self._listener.on_assigned(new)

    def poll(self, timeout_s: float, max_records: int) -> list[InRecord]:
        """Readable records of the assigned partitions, up to ``max_records``."""
        self._broker._check("poll")
        self._join()
        out: list[InRecord] = []
        for tp in sorted(self._positions):
            if tp in self._paused or len(out) >= max_records:
                continue
            records, self._positions[tp] = self._broker._read(
                tp, self._positions[tp], max_records - len(out)
            )
            out.extend(records)
        return out

    def assignment(self) -> set[TP]:
        """Every partition of the subscribed topics once joined."""
        return set(self._positions)

    def seek(self, tp: TP, offset: int) -> None:
        """Read ``tp`` from ``offset`` next."""
        self._positions[tp] = offset

    def position(self, tp: TP) -> int:
        """Offset of the next record to read from ``tp``."""
        return self._positions[tp]

    def committed(self, tp: TP) -> int | None:
        """The group's committed offset."""
        return self._broker.group_offsets.get((self._group_id, tp))

    def commit(self, offsets: Mapping[TP, int]) -> None:
        """Commit offsets for the group."""
        self._broker._check("consumer_commit")
        for tp, offset in offsets.items():
            self._broker.group_offsets[(self._group_id, tp)] = offset

    def pause(self, tps: Iterable[TP]) -> None:
        """Stop returning records of ``tps``."""
        self._paused.update(tps)

    def resume(self, tps: Iterable[TP]) -> None:
        """Return records of ``tps`` again."""
        self._paused.difference_update(tps)

    def lag(self) -> dict[TP, int]:
        """Offsets between the position and the end of each assigned partition."""
        return {
            tp: max(self._broker.end_offset(tp) - position, 0)
            for tp, position in self._positions.items()
        }

    def close(self) -> None:
        """Leave the group (no commit)."""
        if not self._closed:
            self._closed = True
            self._broker._members.discard(self._group_id)


class MemorySink(SinkBase):
    """Transactional when it has an id: records are readable only after ``commit``."""

    def __init__(self, broker: MemoryBroker, transactional_id: str | None, epoch: int) -> None:
        super().__init__(transactional_id is not None)
        self._broker = broker
        self._id = transactional_id
        self._epoch = epoch
        self._pending: list[tuple[TP, OutRecord]] = []
        self._written: dict[TP, int] = {}  # last offset + 1 per partition

    def _check_fenced(self) -> None:
        if self._id is not None and self._broker._epochs[self._id] != self._epoch:
            raise TransportError("producer fenced by a newer instance", retriable=False)

    def _ready(self) -> None:
        self._check_fenced()

    def _reset(self) -> None:
        self._pending = []
        self._written = {}

    def _begin_transaction(self) -> None:
        """Nothing to tell: the records wait in the sink until the commit."""

    def _write(self, record: OutRecord) -> None:
        """Queue ``record``; a plain sink writes it at once."""
        self._check_fenced()
        self._broker._check("send")
        tp = self._broker._partition_of(record)
        self._broker._log(tp)
        if self._transactional:
            self._pending.append((tp, record))
        else:
            self._written[tp] = self._broker._append(tp, record, visible=True) + 1

    def _flush(self) -> dict[TP, int]:
        """Write the transaction's records (readable once its marker follows)."""
        self._check_fenced()
        self._broker._check("commit")
        for tp, record in self._pending:
            self._written[tp] = self._broker._append(tp, record, visible=True) + 1
        self._pending = []
        return dict(self._written)

    def _commit_transaction(self, offsets: Mapping[TP, int], group_id: str) -> None:
        """The commit markers and the group's offsets, at once."""
        for tp in self._written:
            self._broker._log(tp).append(_Slot(None))
        for tp, offset in offsets.items():
            self._broker.group_offsets[(group_id, tp)] = offset

    def _abort_transaction(self) -> None:
        """Use up the offsets of the records and mark them never readable."""
        self._check_fenced()
        touched = {tp for tp, _ in self._pending}
        for tp, record in self._pending:
            self._broker._append(tp, record, visible=False)
        for tp in touched:
            self._broker._log(tp).append(_Slot(None))  # the abort marker

    def close(self) -> None:
        """Drop an open transaction."""
        self._reset()
        self._open = False


class MemoryPartitionReader:
    """Reads chosen partitions from chosen offsets."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._positions: dict[TP, int] = {}

    def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        """Offset after the last slot of each partition."""
        return {tp: self._broker.end_offset(tp) for tp in tps}

    def written_ends(self, tps: Iterable[TP]) -> dict[TP, int]:
        """The same as ``end_offsets``: a transaction's records are appended at its end."""
        return self.end_offsets(tps)

    def partitions_for(self, topic: str) -> list[TP]:
        """Partitions of ``topic``; ``[]`` when it does not exist."""
        return [TP(topic, p) for p in range(len(self._broker.logs.get(topic, [])))]

    def assign(self, positions: Mapping[TP, int | None]) -> None:
        """Read exactly these partitions from these offsets (``None``: the beginning)."""
        for tp in positions:
            self._broker._log(tp)
        self._positions = {tp: offset or 0 for tp, offset in positions.items()}

    def poll(self, timeout_s: float, max_records: int) -> list[InRecord]:
        """Readable records of the assigned partitions, up to ``max_records``."""
        self._broker._check("poll")
        out: list[InRecord] = []
        for tp in sorted(self._positions):
            records, self._positions[tp] = self._broker._read(
                tp, self._positions[tp], max_records - len(out)
            )
            out.extend(records)
        return out

    def position(self, tp: TP) -> int:
        """Offset of the next slot to read from ``tp``."""
        return self._positions[tp]

    def close(self) -> None:
        """Nothing to release."""


class MemoryAdmin(AdminBase):
    """Topic administration on the memory broker: every partition has a leader at once."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker

    def _leaders(self, topics: Sequence[str]) -> dict[str, list[int] | None]:
        logs = self._broker.logs
        return {name: None if name not in logs else [0] * len(logs[name]) for name in topics}

    def _create(self, specs: Sequence[TopicSpec]) -> None:
        for spec in specs:
            self._broker.create_topic(spec.name, spec.partitions)
            self._broker.topic_configs[spec.name] = topic_config(spec)

    def close(self) -> None:
        """Nothing to release."""


def _conforms(broker: MemoryBroker) -> Transport:
    """Never called: makes mypy check that the twin satisfies every protocol."""
    return broker
