"""The broker boundary as small protocols; no Kafka import.

The worker codes against these protocols only. Every method may raise
``processor.errors.TransportError`` (``retriable`` says whether retrying can help);
nothing else leaks from an adapter. See ``processor.transport`` for the implementations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from processor.transport.records import TP, InRecord, OutRecord, TopicSpec


class RebalanceListener(Protocol):
    """Told when the group hands partitions to this member or takes them away."""

    def on_assigned(self, tps: list[TP]) -> None: ...

    def on_revoked(self, tps: list[TP]) -> None: ...


class GroupConsumer(Protocol):
    """A member of a consumer group: read_committed, manual commits, range assignor.

    Rebalance callbacks run inside :meth:`poll`, on the caller's thread.
    """

    def poll(self, timeout_s: float, max_records: int) -> list[InRecord]: ...

    def assignment(self) -> set[TP]: ...

    def seek(self, tp: TP, offset: int) -> None: ...

    def position(self, tp: TP) -> int: ...

    def committed(self, tp: TP) -> int | None: ...

    def commit(self, offsets: Mapping[TP, int]) -> None:
        """Commit offsets of the group directly (at-least-once mode)."""
        ...

    def pause(self, tps: Iterable[TP]) -> None:
        """Fetch nothing from ``tps`` until resumed or revoked (a pause ends with the
        partition: assigned again, it is fetched)."""
        ...

    def resume(self, tps: Iterable[TP]) -> None: ...

    def group_id(self) -> str: ...

    def lag(self) -> dict[TP, int]:
        """Records behind the high watermark of every assigned partition.

        Known from the consumer's last fetch, so cheap to call after every poll;
        ``LAG_UNKNOWN`` (``processor.transport.records``) for a partition no fetch has
        answered for yet.
        """
        ...

    def close(self) -> None: ...


class TransactionalSink(Protocol):
    """One producer: transactional in exactly-once mode, plain otherwise."""

    def begin(self) -> None: ...

    def send(self, record: OutRecord) -> None: ...

    def commit(self, offsets: Mapping[TP, int], group_id: str) -> dict[TP, int]:
        """Flush, add ``offsets`` of ``group_id`` to the transaction, commit.

        Returns, for every partition written since :meth:`begin`, the offset of the
        last record written plus one. In plain (at-least-once) mode it only flushes
        and returns the same map; the caller then commits on the consumer.
        """
        ...

    def abort(self) -> None: ...

    def settle(self) -> None:
        """Make the outcome of every earlier transaction final before reading what it wrote.

        A producer replaced after a failed abort is started again here: its
        ``init_transactions`` completes (commits or aborts) what the old one left.
        """
        ...

    def close(self) -> None: ...


class PartitionReader(Protocol):
    """Manual assignment, no group: restores changelogs, reads compacted topics in full."""

    def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        """The last stable offset of each partition: the end of what read_committed reads."""
        ...

    def written_ends(self, tps: Iterable[TP]) -> dict[TP, int]:
        """The high watermark: the end of everything written, committed or not yet.

        Reading with read_committed until ``position >= written_ends()`` waits until every
        transaction open (or still writing its commit markers) at the call has ended.
        """
        ...

    def partitions_for(self, topic: str) -> list[TP]:
        """Partitions of ``topic`` in order; ``[]`` when the topic does not exist."""
        ...

    def assign(self, positions: Mapping[TP, int | None]) -> None:
        """Read exactly these partitions, each from its offset (``None``: the beginning)."""
        ...

    def poll(self, timeout_s: float, max_records: int) -> list[InRecord]: ...

    def position(self, tp: TP) -> int: ...

    def close(self) -> None: ...


class Admin(Protocol):
    """Topic administration."""

    def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create missing topics (tolerating a concurrent create), check partition counts.

        Raises ``ConfigError`` when an existing topic has another partition count.
        """
        ...

    def partition_count(self, topic: str) -> int | None: ...

    def close(self) -> None: ...


class Producer(Protocol):
    """A plain producer (the publisher CLI)."""

    def send(self, record: OutRecord) -> None: ...

    def flush(self) -> None:
        """Wait until every record sent so far is written; raise if one failed."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    """Makes the clients above; the composition root picks Kafka or memory."""

    def group_consumer(
        self, topics: Sequence[str], group_id: str, listener: RebalanceListener
    ) -> GroupConsumer: ...

    def sink(self, transactional_id: str | None) -> TransactionalSink:
        """A transactional sink when ``transactional_id`` is set, else a plain one."""
        ...

    def partition_reader(self) -> PartitionReader: ...

    def admin(self) -> Admin: ...

    def producer(self) -> Producer: ...
