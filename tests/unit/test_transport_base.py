"""What processor.transport.base does once for every client: options, producer, topics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from kafka.coordinator.assignors.range import RangePartitionAssignor

from processor.errors import ConfigError, TransportError
from processor.transport import TP, ClientSettings, OutRecord, TopicSpec
from processor.transport.base import AdminBase, SinkBase, SinkProducer, group_options
from processor.transport.confluent import _common as confluent
from processor.transport.kafka import _common as kafka_python

SETTINGS = ClientSettings(
    bootstrap_servers="a:1,b:2",
    client_id="c",
    request_timeout_ms=7_000,
    session_timeout_ms=8_000,
    heartbeat_interval_ms=900,
    max_poll_interval_ms=90_000,
    transactional_id="tx",
    transaction_timeout_ms=20_000,
)


def test_both_clients_get_the_same_values_in_their_own_names() -> None:
    """One ClientSettings gives kafka-python and librdkafka the same producer and group
    values, each spelled as its client wants."""
    kp = kafka_python.producer_options(SETTINGS)
    rd = confluent.producer_options(SETTINGS)
    assert kp["bootstrap_servers"] == ["a:1", "b:2"] and rd["bootstrap.servers"] == "a:1,b:2"
    assert (kp["transactional_id"], kp["transaction_timeout_ms"]) == ("tx", 20_000)
    assert (rd["transactional.id"], rd["transaction.timeout.ms"]) == ("tx", 20_000)
    assert (kp["acks"], kp["enable_idempotence"]) == (rd["acks"], rd["enable.idempotence"])
    assert kp["request_timeout_ms"] == rd["socket.timeout.ms"] == 7_000
    group = group_options(SETTINGS, "g")
    kp_group = kafka_python.to_kafka_python(group)
    assert kp_group["partition_assignment_strategy"] == (RangePartitionAssignor,)
    assert (kp_group["session_timeout_ms"], kp_group["heartbeat_interval_ms"]) == (8_000, 900)
    assert confluent.to_librdkafka(group)["partition.assignment.strategy"] == "range"


class RememberingSink(SinkBase):
    """A plain sink that, like the Kafka clients, remembers a failed send until reset."""

    def __init__(self) -> None:
        super().__init__(transactional=False)
        self.failure: TransportError | None = None
        self.closed = False

    def _reset(self) -> None:
        self.failure = None

    def _begin_transaction(self) -> None:
        raise AssertionError("a plain sink begins no transaction")

    def _write(self, record: OutRecord) -> None:
        if record.value == b"refused":
            self.failure = TransportError("send failed: refused", retriable=False)

    def _flush(self) -> dict[TP, int]:
        if self.failure is not None:
            raise self.failure
        return {}

    def _commit_transaction(self, offsets: Mapping[TP, int], group_id: str) -> None:
        raise AssertionError("a plain sink commits no transaction")

    def _abort_transaction(self) -> None:
        raise AssertionError("a plain sink aborts no transaction")

    def close(self) -> None:
        self.closed = True


def test_a_failed_producer_flush_is_reported_once() -> None:
    """The plain producer raises a failed send at flush once, then takes new records."""
    sink = RememberingSink()
    producer = SinkProducer(sink)
    producer.send(OutRecord("t", None, b"refused"))
    with pytest.raises(TransportError, match="refused"):
        producer.flush()
    producer.flush()  # nothing left to report
    producer.send(OutRecord("t", None, b"fine"))
    producer.close()
    assert sink.closed and not sink.is_open


class SlowLeaders(AdminBase):
    """An admin whose created topics get their leaders only after a few looks."""

    def __init__(self, looks_without_leader: int, partitions: int) -> None:
        self.looks = looks_without_leader
        self.partitions = partitions
        self.created: list[str] = []

    def _leaders(self, topics: Sequence[str]) -> dict[str, list[int] | None]:
        if not self.created:
            return dict.fromkeys(topics)
        self.looks -= 1
        leader = -1 if self.looks >= 0 else 1
        return {name: [leader] * self.partitions for name in topics}

    def _create(self, specs: Sequence[TopicSpec]) -> None:
        self.created.extend(spec.name for spec in specs)

    def close(self) -> None:
        """Nothing to release."""


def test_ensure_topics_waits_for_leaders_then_checks_the_count() -> None:
    """A created topic is only accepted once every partition has a leader, and its count is
    then compared with the one asked for."""
    admin = SlowLeaders(looks_without_leader=2, partitions=3)
    admin.ensure_topics([TopicSpec("t", 3)])
    assert admin.created == ["t"] and admin.looks < 0
    with pytest.raises(ConfigError, match="t has 3 partitions, 2 configured"):
        SlowLeaders(looks_without_leader=0, partitions=3).ensure_topics([TopicSpec("t", 2)])
