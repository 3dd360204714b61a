"""The plain values that cross the broker boundary: partitions, records, topics, settings.

Offsets follow Kafka: the offset of a partition is the offset of the *next* record
to read, so "committed offset N" means records ``< N`` are done. Tombstones are
records with ``value=None``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, NamedTuple

import msgspec

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class TP(NamedTuple):
    """A topic partition."""

    topic: str
    partition: int


#: ``GroupConsumer.lag()`` of a partition whose high watermark no fetch has told yet.
LAG_UNKNOWN = -1


#: Said when a client cannot start or authenticate: what to check (no value is quoted).
START_HINT = (
    "no broker answered: check NCD_BOOTSTRAP_SERVERS, and NCD_SECURITY_PROTOCOL with the "
    "NCD_SASL_* / NCD_SSL_* settings: a refused TLS or SASL handshake looks the same"
)
AUTH_HINT = (
    "the broker refused the credentials: check NCD_SASL_USERNAME, NCD_SASL_PASSWORD and "
    "NCD_SASL_MECHANISM"
)


class InRecord(msgspec.Struct, frozen=True, gc=False):
    """A record read from the broker.

    A msgspec struct, not a frozen dataclass: one is made per record fetched, and a frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__`` (0.75 us a
    record, 0.06 us as a struct). It holds no other object that could refer back to it, so
    the garbage collector need not track it (``gc=False``).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    @property
    def tp(self) -> TP:
        """The partition this record came from."""
        return TP(self.topic, self.partition)


def put_back(seek: Callable[[TP, int], None], records: Iterable[InRecord]) -> dict[TP, int]:
    """Seek every partition of ``records`` back to the lowest of their offsets, so that the
    next fetch returns them again; returns where each partition was sought to.

    The one way records polled but not used are given back: held back for provisioning,
    an aborted batch, a batch emptied by a rebalance, a paused partition.
    """
    firsts: dict[TP, int] = {}
    for record in records:
        if record.offset < firsts.get(record.tp, record.offset + 1):
            firsts[record.tp] = record.offset
    for tp, offset in firsts.items():
        seek(tp, offset)
    return firsts


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to write; ``partition=None`` lets the default partitioner pick by key."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None


_NO_CONFIG: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class TopicSpec:
    """A topic the worker needs; ``compacted`` sets ``cleanup.policy=compact``.

    ``replication_factor=-1`` takes the broker's default (``default.replication.factor``).
    """

    name: str
    partitions: int
    compacted: bool = False
    config: Mapping[str, str] = field(default_factory=lambda: _NO_CONFIG)
    replication_factor: int = -1


#: Consumer fetch sizes for ~3 KB account records: 2 MiB per partition (~600 records), the
#: clients' 50 MiB in all (docs/decisions.md, "Fetch sizes": 16 MiB per partition measured
#: slower on both clients).
DEFAULT_MAX_PARTITION_FETCH_BYTES = 2 * 1024 * 1024
DEFAULT_FETCH_MAX_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class ClientSettings:
    """How to reach the broker; built by config code, turned into client options by adapters.

    Timeouts are in milliseconds as in Kafka's own settings. The SASL password and the
    client key's password are kept out of ``repr`` so that logging the settings never
    prints them.
    """

    bootstrap_servers: str
    client_id: str = "ncd-processor"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = field(default=None, repr=False)
    # Kafka's default session timeout is 45 s; a group join waits up to about half of
    # it on some brokers (Tansu), so tests lower it to 6 s with a 1 s heartbeat.
    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 3_000
    request_timeout_ms: int = 30_000
    # Longest gap between two polls before the member is thrown out of the group.
    max_poll_interval_ms: int = 300_000
    transactional_id: str | None = None
    #: The worker's consumer group: librdkafka's partition readers carry it as their
    #: ``group.id`` (they never join it, but look up its coordinator, which the broker
    #: authorizes against the group), so the worker needs no ACL on another group.
    group_id: str | None = None
    # How long commit/abort/init of a transaction may take before it counts as failed.
    transaction_timeout_ms: int = 60_000
    # How much one fetch may bring per partition and in all (consumers only; docs/decisions.md,
    # "Fetch sizes").
    max_partition_fetch_bytes: int = DEFAULT_MAX_PARTITION_FETCH_BYTES
    fetch_max_bytes: int = DEFAULT_FETCH_MAX_BYTES
