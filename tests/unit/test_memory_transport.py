"""What only the in-memory twin does; the behaviour it shares with the Kafka clients is
the contract suite (tests/contract/test_transport_contract.py)."""

from __future__ import annotations

import pytest

from processor.errors import TransportError
from processor.transport import TP, OutRecord, TopicSpec
from processor.transport.memory import MemoryBroker
from tests.helpers import Recorder


def make_broker() -> MemoryBroker:
    broker = MemoryBroker()
    broker.admin().ensure_topics([TopicSpec("in", 2), TopicSpec("out", 2)])
    return broker


def test_the_single_member_gets_every_partition_on_its_first_poll() -> None:
    """The twin's only member is assigned every partition at once, each from its committed
    offset (a Kafka group first has to be joined)."""
    broker = make_broker()
    producer = broker.producer()
    for i in range(4):
        producer.send(OutRecord("in", None, b"%d" % i, partition=i % 2))
    broker.group_offsets[("g", TP("in", 0))] = 1
    listener = Recorder()
    consumer = broker.group_consumer(["in"], "g", listener)
    records = consumer.poll(0, 10)
    assert listener.events == [("assigned", [TP("in", 0), TP("in", 1)])]
    assert [(r.partition, r.value) for r in records] == [(0, b"2"), (1, b"1"), (1, b"3")]


def test_second_member_of_a_group_is_refused_until_the_first_closes() -> None:
    """Only one live member per group is supported."""
    broker = make_broker()
    first = broker.group_consumer(["in"], "g", Recorder())
    with pytest.raises(TransportError):
        broker.group_consumer(["in"], "g", Recorder())
    first.close()
    broker.group_consumer(["in"], "g", Recorder()).close()


def test_plain_sink_writes_at_once_and_reports_offsets() -> None:
    """Without a transactional id records are readable on send; commit returns offsets."""
    broker = make_broker()
    sink = broker.sink(None)
    sink.begin()
    sink.send(OutRecord("out", None, b"x", partition=1))
    assert [r.value for r in broker.records("out")] == [b"x"]
    assert sink.commit({TP("in", 0): 9}, "g") == {TP("out", 1): 1}
    assert broker.group_offsets == {}


def test_admin_records_the_configs_of_the_topics_it_creates() -> None:
    """Compacted topics get cleanup.policy=compact, readable back from the twin (Kafka
    brokers such as Tansu do not describe topic configs)."""
    broker = make_broker()
    broker.admin().ensure_topics([TopicSpec("cfg", 1, compacted=True, config={"a": "b"})])
    assert broker.topic_configs["cfg"] == {"a": "b", "cleanup.policy": "compact"}
    assert broker.topic_configs["in"] == {}


def test_fail_next_raises_once() -> None:
    """An injected failure hits the next call of that operation only."""
    broker = make_broker()
    sink = broker.sink("tx")
    broker.fail_next("commit", TransportError("boom", retriable=True))
    sink.begin()
    with pytest.raises(TransportError, match="boom"):
        sink.commit({}, "g")
    assert sink.commit({}, "g") == {}
