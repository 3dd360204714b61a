"""The in-memory twin of the transport protocols."""

from __future__ import annotations

import pytest

from processor.errors import ConfigError, TransportError
from processor.transport import TP, OutRecord, TopicSpec
from processor.transport.memory import MemoryBroker
from tests.helpers import Recorder


def make_broker() -> MemoryBroker:
    broker = MemoryBroker()
    broker.admin().ensure_topics([TopicSpec("in", 2), TopicSpec("out", 2)])
    return broker


def test_transaction_is_visible_only_after_commit() -> None:
    """Records of an open or aborted transaction are never read; committed ones are."""
    broker = make_broker()
    sink = broker.sink("tx")
    reader = broker.partition_reader()
    reader.assign({TP("out", 0): None})
    sink.begin()
    sink.send(OutRecord("out", None, b"a", partition=0))
    assert reader.poll(0, 10) == []
    sink.abort()
    sink.begin()
    sink.send(OutRecord("out", None, b"b", partition=0))
    assert sink.commit({}, "g") == {TP("out", 0): 3}
    assert [(r.offset, r.value) for r in reader.poll(0, 10)] == [(2, b"b")]
    # abort marker at 1, commit marker at 3
    assert reader.end_offsets([TP("out", 0)]) == {TP("out", 0): 4}
    assert reader.position(TP("out", 0)) == 4


def test_offsets_commit_with_the_transaction_only() -> None:
    """Offsets sent with a committed transaction become the group's; aborted ones do not."""
    broker = make_broker()
    consumer = broker.group_consumer(["in"], "g", Recorder())
    sink = broker.sink("tx")
    sink.begin()
    sink.commit({TP("in", 0): 5}, "g")
    sink.begin()
    sink.send(OutRecord("out", b"k", b"v"))
    sink.abort()
    assert consumer.committed(TP("in", 0)) == 5
    assert consumer.committed(TP("in", 1)) is None


def test_group_consumer_starts_at_committed_offset_and_reports_assignment() -> None:
    """The single member gets every partition on first poll, from the committed offset."""
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
    consumer.pause([TP("in", 1)])
    consumer.seek(TP("in", 1), 0)
    consumer.seek(TP("in", 0), 0)
    assert [r.value for r in consumer.poll(0, 10)] == [b"0", b"2"]
    consumer.commit({TP("in", 0): 2})
    assert consumer.committed(TP("in", 0)) == 2


def test_second_member_of_a_group_is_refused_until_the_first_closes() -> None:
    """Only one live member per group is supported."""
    broker = make_broker()
    first = broker.group_consumer(["in"], "g", Recorder())
    with pytest.raises(TransportError):
        broker.group_consumer(["in"], "g", Recorder())
    first.close()
    broker.group_consumer(["in"], "g", Recorder()).close()


def test_new_sink_with_same_transactional_id_fences_the_old_one() -> None:
    """A reused transactional id makes the older sink fail, not retriable."""
    broker = make_broker()
    old = broker.sink("tx")
    broker.sink("tx")
    with pytest.raises(TransportError) as info:
        old.begin()
    assert info.value.retriable is False


def test_plain_sink_writes_at_once_and_reports_offsets() -> None:
    """Without a transactional id records are readable on send; commit returns offsets."""
    broker = make_broker()
    sink = broker.sink(None)
    sink.begin()
    sink.send(OutRecord("out", None, b"x", partition=1))
    assert [r.value for r in broker.records("out")] == [b"x"]
    assert sink.commit({TP("in", 0): 9}, "g") == {TP("out", 1): 1}
    assert broker.group_offsets == {}


def test_admin_checks_partition_counts_and_records_compaction() -> None:
    """ensure_topics is idempotent, rejects a count mismatch and marks compacted topics."""
    broker = make_broker()
    admin = broker.admin()
    admin.ensure_topics([TopicSpec("cfg", 1, compacted=True), TopicSpec("in", 2)])
    assert broker.topic_configs["cfg"] == {"cleanup.policy": "compact"}
    assert admin.partition_count("cfg") == 1
    assert admin.partition_count("nope") is None
    with pytest.raises(ConfigError):
        admin.ensure_topics([TopicSpec("in", 3)])


def test_fail_next_raises_once() -> None:
    """An injected failure hits the next call of that operation only."""
    broker = make_broker()
    sink = broker.sink("tx")
    broker.fail_next("commit", TransportError("boom", retriable=True))
    sink.begin()
    with pytest.raises(TransportError, match="boom"):
        sink.commit({}, "g")
    assert sink.commit({}, "g") == {}


def test_reader_lists_partitions_and_tombstones_round_trip() -> None:
    """partitions_for lists a topic's partitions ([] if missing); tombstones keep value None."""
    broker = make_broker()
    reader = broker.partition_reader()
    assert reader.partitions_for("in") == [TP("in", 0), TP("in", 1)]
    assert reader.partitions_for("missing") == []
    broker.producer().send(OutRecord("in", b"k", None, partition=0))
    reader.assign({TP("in", 0): None})
    [record] = reader.poll(0, 10)
    assert (record.key, record.value) == (b"k", None)
