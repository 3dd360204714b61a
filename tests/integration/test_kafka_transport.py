"""Both Kafka transports (kafka-python, confluent-kafka) against a real Kafka-protocol broker.

Every test runs once per transport (the ``kafka_transport`` fixture of tests/conftest.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from processor.errors import ConfigError, TransportError
from processor.transport import (
    TP,
    Admin,
    GroupConsumer,
    InRecord,
    OutRecord,
    TopicSpec,
    TransactionalSink,
    Transport,
)
from tests.broker import SessionBroker, require_exactly_once, unique_topic
from tests.conftest import make_test_transport
from tests.helpers import Recorder, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]


@pytest.fixture
def admin(kafka_transport: Transport) -> Iterator[Admin]:
    client = kafka_transport.admin()
    yield client
    client.close()


def flush_open(sink: TransactionalSink) -> None:
    """Write the records sent so far to the log while their transaction stays open."""
    sink._client.flush()  # type: ignore[attr-defined]  # both adapters name their client so


def make_topic(admin: Admin, partitions: int, prefix: str = "t") -> str:
    name = unique_topic(prefix)
    admin.ensure_topics([TopicSpec(name, partitions)])
    return name


def read_all(transport: Transport, topic: str) -> list[InRecord]:
    """Every record a read_committed reader returns, reading each partition to its end."""
    reader = transport.partition_reader()
    try:
        tps = reader.partitions_for(topic)
        ends = reader.end_offsets(tps)
        reader.assign(dict.fromkeys(tps))
        out: list[InRecord] = []
        wait_for(
            lambda: (
                out.extend(reader.poll(0.2, 500)) is None
                and all(reader.position(tp) >= ends[tp] for tp in tps)
            ),
            f"reading {topic} to its end offsets",
        )
        return out
    finally:
        reader.close()


def test_admin_creates_compacted_topics_idempotently(admin: Admin) -> None:
    """ensure_topics creates missing topics once and accepts them on a second call."""
    compacted = unique_topic("cfg")
    plain = unique_topic("plain")
    specs = [TopicSpec(compacted, 1, compacted=True), TopicSpec(plain, 3)]
    admin.ensure_topics(specs)
    admin.ensure_topics(specs)
    assert admin.partition_count(compacted) == 1
    assert admin.partition_count(plain) == 3
    assert admin.partition_count(unique_topic("missing")) is None


def test_admin_rejects_partition_count_mismatch(admin: Admin) -> None:
    """An existing topic with another partition count is a configuration error."""
    name = make_topic(admin, 2)
    with pytest.raises(ConfigError, match="2 partitions, 4 configured"):
        admin.ensure_topics([TopicSpec(name, 4)])


def test_committed_transaction_is_visible_and_aborted_is_not(
    admin: Admin, kafka_transport: Transport, kafka_broker: SessionBroker
) -> None:
    """A read_committed reader sees committed records; aborted ones only where the broker
    hides them (Tansu 0.6.0 does not: its fetch lists no aborted transactions)."""
    topic = make_topic(admin, 1)
    sink = kafka_transport.sink(unique_topic("tx"))
    try:
        sink.begin()
        sink.send(OutRecord(topic, b"k", b"committed-1"))
        sink.commit({}, "unused-group")
        sink.begin()
        sink.send(OutRecord(topic, b"k", b"aborted"))
        flush_open(sink)  # the aborted records reach the log, as they do in real life
        sink.abort()
        sink.begin()
        sink.send(OutRecord(topic, b"k", b"committed-2"))
        sink.commit({}, "unused-group")
    finally:
        sink.close()
    require_exactly_once(kafka_broker.hides_aborted)
    values = [r.value for r in read_all(kafka_transport, topic)]
    assert values == [b"committed-1", b"committed-2"]


def test_open_transaction_is_invisible_until_commit(
    admin: Admin, kafka_transport: Transport
) -> None:
    """Records of a transaction that has not committed are not returned to a reader."""
    topic = make_topic(admin, 1)
    sink = kafka_transport.sink(unique_topic("tx"))
    try:
        sink.begin()
        sink.send(OutRecord(topic, b"k", b"before"))
        sink.commit({}, "g")
        sink.begin()
        sink.send(OutRecord(topic, b"k", b"pending"))
        flush_open(sink)  # written to the log, transaction still open
        assert [r.value for r in read_all(kafka_transport, topic)] == [b"before"]
        sink.commit({}, "g")
    finally:
        sink.close()
    assert [r.value for r in read_all(kafka_transport, topic)] == [b"before", b"pending"]


def test_offsets_sent_into_transaction_commit_only_with_it(
    admin: Admin, kafka_transport: Transport
) -> None:
    """Offsets sent into a transaction become the group's offsets on commit, not on abort."""
    source = make_topic(admin, 2, "in")
    out = make_topic(admin, 1, "out")
    group = unique_topic("g")
    consumer = kafka_transport.group_consumer([source], group, Recorder())
    sink = kafka_transport.sink(unique_topic("tx"))
    try:
        tp0, tp1 = TP(source, 0), TP(source, 1)
        sink.begin()
        sink.send(OutRecord(out, None, b"x"))
        sink.commit({tp0: 5, tp1: 7}, group)
        assert (consumer.committed(tp0), consumer.committed(tp1)) == (5, 7)
        sink.begin()
        sink.send(OutRecord(out, None, b"y"))
        flush_open(sink)
        sink.abort()
        assert (consumer.committed(tp0), consumer.committed(tp1)) == (5, 7)
    finally:
        sink.close()
        consumer.close()


def test_sink_returns_last_offset_plus_one_per_partition(
    admin: Admin, kafka_transport: Transport
) -> None:
    """commit returns, per partition written, the offset of its last record plus one."""
    topic = make_topic(admin, 3)
    sink = kafka_transport.sink(unique_topic("tx"))
    try:
        sink.begin()
        for i in range(3):
            sink.send(OutRecord(topic, None, b"a%d" % i, partition=0))
        sink.send(OutRecord(topic, None, b"b", partition=2))
        first = sink.commit({}, "g")
        sink.begin()
        sink.send(OutRecord(topic, None, b"c", partition=0))
        second = sink.commit({}, "g")
    finally:
        sink.close()
    assert first == {TP(topic, 0): 3, TP(topic, 2): 1}
    records = {(r.partition, r.value): r.offset for r in read_all(kafka_transport, topic)}
    # The commit marker of the first transaction takes an offset of its own.
    assert second == {TP(topic, 0): records[(0, b"c")] + 1}
    assert records[(0, b"c")] >= 4


def test_plain_sink_and_producer_write_without_transactions(
    admin: Admin, kafka_transport: Transport
) -> None:
    """Without a transactional id the sink flushes and reports offsets; headers and
    tombstones round-trip through the plain producer."""
    topic = make_topic(admin, 1)
    sink = kafka_transport.sink(None)
    producer = kafka_transport.producer()
    try:
        sink.begin()
        sink.send(OutRecord(topic, b"k1", b"v1"))
        assert sink.commit({TP(topic, 0): 1}, "g") == {TP(topic, 0): 1}
        producer.send(OutRecord(topic, b"k2", None, headers=(("ce_id", b"abc"),)))
        producer.flush()
    finally:
        sink.close()
        producer.close()
    records = read_all(kafka_transport, topic)
    assert [(r.key, r.value, r.headers) for r in records] == [
        (b"k1", b"v1", ()),
        (b"k2", None, (("ce_id", b"abc"),)),
    ]


def test_partition_reader_reads_to_end_offset_from_a_position(
    admin: Admin, kafka_transport: Transport
) -> None:
    """The reader returns a transactionally written partition in full to its end offset,
    or from a given offset.

    Written in two transactions like a changelog: Tansu 0.6.0 reports as end offset the
    base offset of the last record batch plus one, which is right only when that batch
    is a single record (a transaction marker), wrong after a plain multi-record batch.
    """
    topic = make_topic(admin, 2)
    sink = kafka_transport.sink(unique_topic("tx"))
    try:
        for chunk in (range(0, 15), range(15, 25)):
            sink.begin()
            for i in chunk:
                sink.send(OutRecord(topic, None, b"%d" % i, partition=i % 2))
            sink.commit({}, "g")
    finally:
        sink.close()
    records = read_all(kafka_transport, topic)
    assert sorted(int(r.value or b"") for r in records) == list(range(25))
    reader = kafka_transport.partition_reader()
    try:
        assert reader.partitions_for(unique_topic("missing")) == []
        tp = TP(topic, 1)
        # 7 + 5 records and two commit markers.
        assert reader.end_offsets([tp]) == {tp: 14}
        reader.assign({tp: 10})
        got: list[InRecord] = []
        wait_for(lambda: got.extend(reader.poll(0.2, 100)) is None and len(got) >= 3, "tail")
        assert [(r.offset, r.value) for r in got] == [(10, b"19"), (11, b"21"), (12, b"23")]
    finally:
        reader.close()


class PollingThread(threading.Thread):
    """Polls one group member until stopped, as a separate worker process would."""

    def __init__(self, consumer: GroupConsumer) -> None:
        super().__init__(daemon=True)
        self.consumer = consumer
        self.stopped = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopped.is_set():
                self.consumer.poll(0.1, 10)
        except BaseException as exc:  # reported by the test thread
            self.error = exc


def test_two_group_consumers_split_four_partitions(
    admin: Admin, kafka_transport: Transport
) -> None:
    """A second member triggers a rebalance that splits 4 partitions 2 + 2 (range)."""
    topic = make_topic(admin, 4)
    group = unique_topic("g")
    everything = {TP(topic, p) for p in range(4)}
    first_events, second_events = Recorder(), Recorder()
    first = kafka_transport.group_consumer([topic], group, first_events)
    threads = [PollingThread(first)]
    second: GroupConsumer | None = None
    try:
        threads[0].start()
        wait_for(lambda: first.assignment() == everything, "the first member to join")
        # Made only now: librdkafka joins the group as soon as a consumer subscribes.
        second = kafka_transport.group_consumer([topic], group, second_events)
        threads.append(PollingThread(second))
        threads[1].start()

        def split() -> bool:
            assert second is not None
            a, b = first.assignment(), second.assignment()
            return len(a) == 2 and len(b) == 2 and a | b == everything

        wait_for(split, "the rebalance to split the partitions")
        wait_for(lambda: bool(second_events.events), "the second member's callback")
        first_share, second_share = sorted(first.assignment()), sorted(second.assignment())
    finally:
        for thread in threads:
            thread.stopped.set()
            thread.join()
        if second is not None:
            second.close()
        first.close()
    assert [t.error for t in threads] == [None, None]
    assert first_events.events[0] == ("assigned", sorted(everything))
    assert ("revoked", sorted(everything)) in first_events.events
    assert first_events.events[-1] == ("assigned", first_share)
    assert second_events.events[-1] == ("assigned", second_share)


def test_consumer_commit_and_poll_round_trip(admin: Admin, kafka_transport: Transport) -> None:
    """A member reads from the committed offset and its own commits are read back."""
    topic = make_topic(admin, 1)
    producer = kafka_transport.producer()
    for i in range(5):
        producer.send(OutRecord(topic, None, b"%d" % i))
    producer.close()
    group = unique_topic("g")
    tp = TP(topic, 0)
    consumer = kafka_transport.group_consumer([topic], group, Recorder())
    try:
        got: list[InRecord] = []
        wait_for(lambda: got.extend(consumer.poll(0.2, 100)) is None and len(got) >= 5, "5")
        assert [r.offset for r in got] == [0, 1, 2, 3, 4]
        consumer.commit({tp: 3})
        assert consumer.committed(tp) == 3
        consumer.seek(tp, 3)
        again: list[InRecord] = []
        wait_for(lambda: again.extend(consumer.poll(0.2, 100)) is None and len(again) >= 2, "2")
        assert [r.value for r in again] == [b"3", b"4"]
    finally:
        consumer.close()


def test_reused_transactional_id_fences_the_older_sink(
    admin: Admin, kafka_transport: Transport
) -> None:
    """A new sink with the same transactional id makes the older one's transaction fail;
    what the older one wrote is never visible, and the new one commits.

    librdkafka reports the fencing as fatal. kafka-python 2.3 on Kafka 4 sees only an
    invalid producer epoch, which is also what a transaction the coordinator aborted for
    its timeout gives (a frozen broker): retriable there, so the worker aborts, replaces its
    producer and carries on (RELIABILITY.md, a reused NCD_INSTANCE_ID).
    """
    topic = make_topic(admin, 1)
    transactional_id = unique_topic("tx")
    old = kafka_transport.sink(transactional_id)
    new = kafka_transport.sink(transactional_id)
    try:
        with pytest.raises(TransportError):
            old.begin()
            old.send(OutRecord(topic, None, b"zombie"))
            old.commit({}, "g")
        new.begin()
        new.send(OutRecord(topic, None, b"fresh"))
        new.commit({}, "g")
    finally:
        new.close()
        old.close()
    assert [r.value for r in read_all(kafka_transport, topic)] == [b"fresh"]


def _produce(transport: Transport, topic: str, count: int) -> None:
    producer = transport.producer()
    try:
        for i in range(count):
            producer.send(OutRecord(topic, None, b"%d" % i))
        producer.flush()
    finally:
        producer.close()


def test_lag_counts_records_behind_the_high_watermark(
    admin: Admin, kafka_transport: Transport
) -> None:
    """After reading 2 of 5 records, lag reports the 3 left behind the high watermark."""
    topic = make_topic(admin, 1)
    _produce(kafka_transport, topic, 5)
    consumer = kafka_transport.group_consumer([topic], unique_topic("g"), Recorder())
    try:
        got: list[InRecord] = []
        wait_for(lambda: got.extend(consumer.poll(0.2, 2)) is None and len(got) >= 2, "2")
        assert [r.offset for r in got] == [0, 1]
        assert consumer.lag() == {TP(topic, 0): 3}
    finally:
        consumer.close()


class SeekingListener(Recorder):
    """Seeks every partition it is given to a fixed offset, as a restoring worker may."""

    def __init__(self, offset: int) -> None:
        super().__init__()
        self.offset = offset
        self.consumer: GroupConsumer | None = None

    def on_assigned(self, tps: list[TP]) -> None:
        super().on_assigned(tps)
        assert self.consumer is not None
        for tp in tps:
            self.consumer.seek(tp, self.offset)


def test_seek_in_on_assigned_sets_where_reading_starts(
    admin: Admin, kafka_transport: Transport
) -> None:
    """A seek made by the listener while partitions are assigned decides the first record."""
    topic = make_topic(admin, 1)
    _produce(kafka_transport, topic, 6)
    listener = SeekingListener(4)
    consumer = kafka_transport.group_consumer([topic], unique_topic("g"), listener)
    listener.consumer = consumer
    try:
        got: list[InRecord] = []
        wait_for(lambda: got.extend(consumer.poll(0.2, 100)) is None and len(got) >= 2, "2")
        assert [r.value for r in got] == [b"4", b"5"]
        assert listener.events == [("assigned", [TP(topic, 0)])]
    finally:
        consumer.close()


def test_a_sought_back_and_paused_partition_reads_again_after_resume(
    admin: Admin, kafka_transport: Transport
) -> None:
    """seek + pause + resume (how the runner holds aggregation records): no records while
    paused, then the same records again from the sought offset (kafka-python's own
    pause/resume stopped fetching the partition for good; the adapter emulates it)."""
    topic, other = make_topic(admin, 1), make_topic(admin, 1)
    _produce(kafka_transport, topic, 300)
    consumer = kafka_transport.group_consumer([topic, other], unique_topic("g"), Recorder())
    tp = TP(topic, 0)
    try:
        got: list[InRecord] = []
        wait_for(lambda: got.extend(consumer.poll(0.5, 100)) is None and len(got) >= 1, "1")
        consumer.seek(tp, got[0].offset)
        consumer.pause([tp])
        for _ in range(3):
            assert [r for r in consumer.poll(0.3, 100) if r.tp == tp] == []
        consumer.resume([tp])
        again: list[InRecord] = []
        wait_for(lambda: again.extend(consumer.poll(0.3, 100)) is None and len(again) >= 300, "all")
        assert [r.offset for r in again] == list(range(300))
    finally:
        consumer.close()


def test_a_group_member_with_the_default_settings_starts(
    admin: Admin, kafka_bootstrap: str, transport_name: str
) -> None:
    """A group consumer built from the default settings (45 s session, 30 s requests) is
    accepted by the client and joins (kafka-python 2.3 refused it before the fix)."""
    from processor.config import load_settings

    topic = make_topic(admin, 1)
    settings = load_settings(bootstrap_servers=kafka_bootstrap).client()
    consumer = make_test_transport(transport_name, settings).group_consumer(
        [topic], unique_topic("g"), Recorder()
    )
    try:
        wait_for(lambda: consumer.poll(0.2, 1) == [] and bool(consumer.assignment()), "a join")
    finally:
        consumer.close()
