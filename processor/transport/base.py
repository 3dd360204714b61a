"""What every client does the same way, written once; the adapters fill in the client calls.

* Client options in Kafka's own (dotted) names, derived from ``ClientSettings``: each
  adapter only renames them for its client (kafka-python wants ``sasl_plain_username``
  where librdkafka wants ``sasl.username``).
* :class:`GroupMemberBase`: a group member's group and rebalance listener.
* :class:`SinkBase`: the transaction state machine of a sink (begin -> send... -> commit
  or abort), the same for kafka-python, librdkafka and the memory twin.
* :class:`SinkProducer`: the publisher's plain ``Producer`` on top of a plain sink.
* :class:`AdminBase`: ensuring topics (create the missing ones, wait for their leaders,
  adopt or refuse what exists).
* Record conversion: headers and "last offset + 1 per partition" of what was written.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from processor.errors import ConfigError, TransportError
from processor.transport.protocols import RebalanceListener
from processor.transport.records import TP, ClientSettings, OutRecord, TopicSpec

# ------------------------------------------------------------------ client options

#: Our optional settings that become client options of the same value when set.
_OPTIONAL = (
    ("ssl_cafile", "ssl.ca.location"),
    ("ssl_certfile", "ssl.certificate.location"),
    ("ssl_keyfile", "ssl.key.location"),
    ("ssl_password", "ssl.key.password"),
)

#: Batching window of producers: small, since ``commit`` flushes anyway.
LINGER_MS = 5


def client_options(settings: ClientSettings) -> dict[str, Any]:
    """Options of every client (consumers, producers, admin): address, identity, security."""
    options: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.client_id,
        "security.protocol": settings.security_protocol,
        "request.timeout.ms": settings.request_timeout_ms,
    }
    if settings.sasl_mechanism is not None:
        options["sasl.mechanism"] = settings.sasl_mechanism
        options["sasl.username"] = settings.sasl_username
        options["sasl.password"] = settings.sasl_password
    for ours, theirs in _OPTIONAL:
        value = getattr(settings, ours)
        if value is not None:
            options[theirs] = value
    return options


def consumer_options(settings: ClientSettings) -> dict[str, Any]:
    """Options of every consumer: read_committed, manual commits, start at the beginning."""
    return {
        **client_options(settings),
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "max.partition.fetch.bytes": settings.max_partition_fetch_bytes,
        "fetch.max.bytes": settings.fetch_max_bytes,
    }


def group_options(settings: ClientSettings, group_id: str) -> dict[str, Any]:
    """What a group member adds: its group, the eager range assignor, the group timings.

    Range: the worker relies on partition p of both input topics going to the same member.
    """
    return {
        "group.id": group_id,
        "partition.assignment.strategy": "range",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": settings.heartbeat_interval_ms,
        "max.poll.interval.ms": settings.max_poll_interval_ms,
    }


def producer_options(settings: ClientSettings) -> dict[str, Any]:
    """Options of every producer; transactional when ``settings.transactional_id`` is set."""
    options: dict[str, Any] = {
        **client_options(settings),
        # acks=all + idempotence: no loss or duplicates from the producer's own retries.
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": LINGER_MS,
    }
    if settings.transactional_id is not None:
        options["transactional.id"] = settings.transactional_id
        options["transaction.timeout.ms"] = settings.transaction_timeout_ms
    return options


def renamed(options: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """``options`` with the keys ``names`` lists renamed (for a client's own spelling)."""
    return {names.get(key, key): value for key, value in options.items()}


def topic_config(spec: TopicSpec) -> dict[str, str]:
    """The topic configs to create ``spec`` with (``cleanup.policy=compact`` if compacted)."""
    configs = dict(spec.config)
    if spec.compacted:
        configs["cleanup.policy"] = "compact"
    return configs


# ------------------------------------------------------------------ records


def headers_of(raw: Iterable[tuple[str, bytes | None]] | None) -> tuple[tuple[str, bytes], ...]:
    """A client's record headers as ours: a header without a value reads as ``b""``."""
    if not raw:  # the common case: none (kafka-python gives [], librdkafka None)
        return ()
    return tuple((name, bytes(value or b"")) for name, value in raw)


class WrittenEnds:
    """Collects, per partition written, the offset of the last record written plus one."""

    def __init__(self) -> None:
        self.ends: dict[TP, int] = {}

    def add(self, tp: TP, offset: int) -> None:
        """Record that ``offset`` of ``tp`` was written."""
        if offset + 1 > self.ends.get(tp, 0):
            self.ends[tp] = offset + 1


# ------------------------------------------------------------------ group members


class GroupMemberBase:
    """What every group member keeps: its group and the listener told of rebalances."""

    def __init__(self, group_id: str, listener: RebalanceListener) -> None:
        self._group_id = group_id
        self._listener = listener

    def group_id(self) -> str:
        """The consumer group this member belongs to."""
        return self._group_id


# ------------------------------------------------------------------ sinks


class SinkBase(ABC):
    """The transaction state machine of a ``TransactionalSink``; the client calls are hooks.

    Commit order of one exactly-once transaction (the worker relies on it): ``begin`` ->
    ``send``... -> ``commit``: flush every record and learn the offset each got, add the
    consumer offsets to the transaction, commit the transaction. Outputs and input offsets
    become visible together or not at all. Without a transactional id the same calls only
    flush, and the worker commits offsets on the consumer afterwards (at-least-once).
    A failed ``commit`` leaves the transaction open: the caller aborts it.
    """

    def __init__(self, transactional: bool) -> None:
        self._transactional = transactional
        self._open = False

    @property
    def is_open(self) -> bool:
        """Whether a transaction (plain mode: a batch) is open."""
        return self._open

    # -------------------------------------------------------------- hooks
    def _ready(self) -> None:  # noqa: B027  # a hook that most sinks leave empty
        """Called by ``begin``: make sure a client is there (e.g. start a replaced one)."""

    @abstractmethod
    def _reset(self) -> None:
        """Forget the records tracked since ``begin``."""

    @abstractmethod
    def _begin_transaction(self) -> None:
        """The client's begin (transactional mode only)."""

    @abstractmethod
    def _write(self, record: OutRecord) -> None:
        """Queue ``record`` with the client."""

    @abstractmethod
    def _flush(self) -> dict[TP, int]:
        """Wait for every queued record; raise the first failure; last offset + 1 written."""

    @abstractmethod
    def _commit_transaction(self, offsets: Mapping[TP, int], group_id: str) -> None:
        """Add ``offsets`` of ``group_id`` to the transaction and commit it."""

    @abstractmethod
    def _abort_transaction(self) -> None:
        """The client's abort (transactional mode only)."""

    # -------------------------------------------------------------- TransactionalSink
    def begin(self) -> None:
        """Start a transaction (plain mode: start tracking written offsets)."""
        if self._open:
            raise TransportError("begin while a transaction is open", retriable=False)
        self._ready()
        self._reset()
        if self._transactional:
            self._begin_transaction()
        self._open = True

    def send(self, record: OutRecord) -> None:
        """Queue ``record`` in the open transaction."""
        if not self._open:
            raise TransportError("send outside a transaction", retriable=False)
        self._write(record)

    def commit(self, offsets: Mapping[TP, int], group_id: str) -> dict[TP, int]:
        """Flush, add ``offsets`` to the transaction, commit; return last offset + 1."""
        if not self._open:
            raise TransportError("commit outside a transaction", retriable=False)
        written = self._flush()
        if self._transactional:
            self._commit_transaction(offsets, group_id)
        self._reset()
        self._open = False
        return written

    def abort(self) -> None:
        """Abort the open transaction (plain mode: records already sent may stay written)."""
        if not self._open:
            self._reset()
            return
        self._open = False
        try:
            if self._transactional:
                self._abort_transaction()
        finally:
            self._reset()

    def settle(self) -> None:  # noqa: B027  # most clients have nothing in doubt
        """Make the outcome of every earlier transaction final (nothing to do by default:
        an abort that returned leaves no transaction in doubt)."""

    @abstractmethod
    def close(self) -> None:
        """Release the client; records of an open transaction are dropped, not sent."""


class SinkProducer:
    """The publisher's plain ``Producer``: a plain sink whose batch stays open until flushed."""

    def __init__(self, sink: SinkBase) -> None:
        self._sink = sink

    def send(self, record: OutRecord) -> None:
        """Queue ``record``."""
        if not self._sink.is_open:
            self._sink.begin()
        self._sink.send(record)

    def flush(self) -> None:
        """Wait until every queued record is written; raise if one failed (once: the
        records of a failed flush are not reported again)."""
        if not self._sink.is_open:
            return
        try:
            self._sink.commit({}, "")
        except BaseException:
            self._sink.abort()
            raise

    def close(self) -> None:
        """Flush and release the producer."""
        try:
            self.flush()
        finally:
            self._sink.close()


# ------------------------------------------------------------------ topics

#: How long created topics may take to get leaders for every partition.
CREATE_TIMEOUT_S = 30.0
#: Between two looks at the metadata while waiting for leaders: a leader is elected in
#: milliseconds on a healthy cluster, so a short pause keeps start-up quick.
LEADER_POLL_S = 0.1


class AdminBase(ABC):
    """``Admin``: create what is missing, wait for leaders, adopt or refuse what exists."""

    @abstractmethod
    def _leaders(self, topics: Sequence[str]) -> dict[str, list[int] | None]:
        """The leader of each partition of each topic (-1: none yet); ``None``: no such topic."""

    @abstractmethod
    def _create(self, specs: Sequence[TopicSpec]) -> None:
        """Create these topics, tolerating one that another worker has just created."""

    @abstractmethod
    def close(self) -> None:
        """Release the connections."""

    def partition_count(self, topic: str) -> int | None:
        """Partitions of ``topic``, or ``None`` when it does not exist."""
        leaders = self._leaders([topic])[topic]
        return None if leaders is None else len(leaders)

    def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create the missing topics; raise ``ConfigError`` on a partition-count mismatch.

        Existing topics' configs (e.g. ``cleanup.policy``) are not checked: some
        Kafka-protocol brokers (Tansu) do not describe topic configs.
        """
        names = [spec.name for spec in specs]
        described = self._leaders(names)
        missing = [spec for spec in specs if described[spec.name] is None]
        if missing:
            self._create(missing)
        counts = self._wait_for_leaders(names)
        for spec in specs:
            if counts[spec.name] != spec.partitions:
                raise ConfigError(
                    f"topic {spec.name} has {counts[spec.name]} partitions,"
                    f" {spec.partitions} configured"
                )

    def _wait_for_leaders(self, topics: Sequence[str]) -> dict[str, int]:
        """Wait until every partition of ``topics`` has a leader; return partition counts.

        A topic another worker has just created exists before its partitions have leaders,
        and a client that reads or writes it then fails (NOT_LEADER_FOR_PARTITION): so every
        worker waits, not only the one that created it.
        """
        deadline = time.monotonic() + CREATE_TIMEOUT_S
        while True:
            described = self._leaders(topics)
            counts = {
                name: len(leaders)
                for name, leaders in described.items()
                if leaders and min(leaders) >= 0
            }
            if len(counts) == len(described):
                return counts
            if time.monotonic() > deadline:
                raise TransportError("wait for topics failed: no leader yet", retriable=True)
            time.sleep(LEADER_POLL_S)
