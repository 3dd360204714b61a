"""The transport contract: the memory twin, kafka-python and confluent behave the same.

Every test runs once per implementation (the ``transport`` fixture): on the in-memory twin
without a broker, on the two Kafka clients against the session broker (tests/broker.py).
What only a real broker can show (two members of one group, the default settings, refused
credentials) is in tests/integration/test_kafka_transport.py and below, over the two clients.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from processor.errors import BrokerAccessError, ConfigError, TransportError
from processor.transport import (
    TP,
    Admin,
    ClientSettings,
    GroupConsumer,
    InRecord,
    OutRecord,
    PartitionReader,
    TopicSpec,
    TransactionalSink,
    Transport,
)
from processor.transport.memory import MemoryBroker
from tests.apache_kafka import SCRAM_MECHANISM
from tests.broker import SessionBroker, require_exactly_once, sasl_bootstrap, unique_topic
from tests.conftest import TRANSPORTS, make_test_transport
from tests.helpers import Recorder, wait_for

pytestmark = pytest.mark.timeout(120)

#: The memory twin, then each Kafka client (those need the broker).
IMPLEMENTATIONS = [
    pytest.param("memory", id="memory"),
    *(pytest.param(name, id=name, marks=pytest.mark.broker) for name in TRANSPORTS),
]


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation(request: pytest.FixtureRequest) -> str:
    """Each transport implementation in turn."""
    return str(request.param)


@pytest.fixture
def transport(implementation: str, request: pytest.FixtureRequest) -> Transport:
    """A fresh memory broker, or the Kafka client ``implementation`` on the session broker."""
    if implementation == "memory":
        return MemoryBroker()
    settings: ClientSettings = request.getfixturevalue("kafka_settings")
    return make_test_transport(implementation, settings)


@pytest.fixture
def hides_aborted(implementation: str, request: pytest.FixtureRequest) -> bool:
    """Whether read_committed readers skip aborted records (the twin always does)."""
    if implementation == "memory":
        return True
    broker: SessionBroker = request.getfixturevalue("kafka_broker")
    return broker.hides_aborted


@pytest.fixture
def admin(transport: Transport) -> Iterator[Admin]:
    """The implementation's admin client, closed after the test."""
    client = transport.admin()
    yield client
    client.close()


def flush_open(sink: TransactionalSink) -> None:
    """Write the records sent so far to the log while their transaction stays open.

    The memory twin keeps an open transaction's records in the sink: nothing to flush.
    """
    client = getattr(sink, "_client", None)
    if client is not None:
        client.flush()


def make_topic(admin: Admin, partitions: int, prefix: str = "t") -> str:
    """A new topic of ``partitions`` partitions."""
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
        return read_to(reader, ends, f"reading {topic} to its end offsets")
    finally:
        reader.close()


def read_to(reader: PartitionReader, ends: dict[TP, int], what: str) -> list[InRecord]:
    """Poll ``reader`` until every partition's position reaches ``ends``."""
    out: list[InRecord] = []
    wait_for(
        lambda: (
            out.extend(reader.poll(0.2, 500)) is None
            and all(reader.position(tp) >= end for tp, end in ends.items())
        ),
        what,
    )
    return out


def produce(transport: Transport, topic: str, count: int) -> None:
    """``count`` records ``b"0"``, ``b"1"``... through the plain producer."""
    producer = transport.producer()
    try:
        for i in range(count):
            producer.send(OutRecord(topic, None, b"%d" % i))
        producer.flush()
    finally:
        producer.close()


def poll_until(consumer: GroupConsumer, count: int, max_records: int = 100) -> list[InRecord]:
    """Poll until at least ``count`` records have come."""
    got: list[InRecord] = []
    wait_for(
        lambda: got.extend(consumer.poll(0.2, max_records)) is None and len(got) >= count,
        f"{count} records",
    )
    return got


def wait_joined(consumer: GroupConsumer, tps: set[TP]) -> None:
    """Poll an idle member until it holds ``tps``.

    As in the worker, offsets are sent into a transaction once the member has joined: sent
    while its first join is still going on, they carry a generation the broker has just
    left behind (ILLEGAL_GENERATION on librdkafka, whose member joins in the background).
    """
    wait_for(
        lambda: not consumer.poll(0.2, 100) and consumer.assignment() == tps,
        "the member's assignment",
    )


# ------------------------------------------------------------------ topics


def test_admin_creates_missing_topics_idempotently(admin: Admin) -> None:
    """ensure_topics creates missing topics once and accepts them on a second call."""
    compacted, plain = unique_topic("cfg"), unique_topic("plain")
    specs = [TopicSpec(compacted, 1, compacted=True), TopicSpec(plain, 3)]
    admin.ensure_topics(specs)
    admin.ensure_topics(specs)
    assert admin.partition_count(compacted) == 1
    assert admin.partition_count(plain) == 3
    assert admin.partition_count(unique_topic("missing")) is None


def test_an_existing_topic_is_adopted_with_its_count_or_refused(
    admin: Admin, transport: Transport
) -> None:
    """Another client reads an existing topic's partition count and ensuring it with that
    count succeeds; another count is a configuration error saying both numbers."""
    name = make_topic(admin, 4)
    other = transport.admin()
    try:
        assert other.partition_count(name) == 4
        other.ensure_topics([TopicSpec(name, 4)])
        with pytest.raises(ConfigError, match="4 partitions, 6 configured"):
            other.ensure_topics([TopicSpec(name, 6)])
    finally:
        other.close()
    assert admin.partition_count(name) == 4


# ------------------------------------------------------------------ transactions


def test_committed_transaction_is_visible_and_aborted_is_not(
    admin: Admin, transport: Transport, hides_aborted: bool
) -> None:
    """A read_committed reader sees committed records and never aborted ones."""
    topic = make_topic(admin, 1)
    sink = transport.sink(unique_topic("tx"))
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
    require_exactly_once(hides_aborted)
    assert [r.value for r in read_all(transport, topic)] == [b"committed-1", b"committed-2"]


def test_open_transaction_is_invisible_until_commit(admin: Admin, transport: Transport) -> None:
    """Records of a transaction that has not committed are not returned to a reader."""
    topic = make_topic(admin, 1)
    sink = transport.sink(unique_topic("tx"))
    try:
        sink.begin()
        sink.send(OutRecord(topic, b"k", b"before"))
        sink.commit({}, "g")
        sink.begin()
        sink.send(OutRecord(topic, b"k", b"pending"))
        flush_open(sink)  # written to the log, transaction still open
        assert [r.value for r in read_all(transport, topic)] == [b"before"]
        sink.commit({}, "g")
    finally:
        sink.close()
    assert [r.value for r in read_all(transport, topic)] == [b"before", b"pending"]


def test_offsets_sent_into_transaction_commit_only_with_it(
    admin: Admin, transport: Transport
) -> None:
    """Offsets sent into a transaction become the group's offsets on commit, not on abort."""
    source, out = make_topic(admin, 2, "in"), make_topic(admin, 1, "out")
    group = unique_topic("g")
    consumer = transport.group_consumer([source], group, Recorder())
    sink = transport.sink(unique_topic("tx"))
    try:
        tp0, tp1 = TP(source, 0), TP(source, 1)
        wait_joined(consumer, {tp0, tp1})
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


def test_committed_offsets_read_right_after_a_commit_are_that_commits(
    admin: Admin, transport: Transport
) -> None:
    """A member asking right after a transaction's commit gets that transaction's offsets,
    never the ones from before it (the broker writes the commit's markers a moment later:
    a member starting from older offsets would process a committed batch again)."""
    source, out = make_topic(admin, 2, "in"), make_topic(admin, 1, "out")
    group = unique_topic("g")
    consumer = transport.group_consumer([source], group, Recorder())
    sink = transport.sink(unique_topic("tx"))
    tp0, tp1 = TP(source, 0), TP(source, 1)
    try:
        wait_joined(consumer, {tp0, tp1})
        read = []
        for i in range(1, 41):
            sink.begin()
            sink.send(OutRecord(out, None, b"x"))
            sink.commit({tp0: i, tp1: 100 + i}, group)
            read.append((consumer.committed(tp0), consumer.committed(tp1)))
    finally:
        sink.close()
        consumer.close()
    assert read == [(i, 100 + i) for i in range(1, 41)]


def test_sink_returns_last_offset_plus_one_per_partition(
    admin: Admin, transport: Transport
) -> None:
    """commit returns, per partition written, the offset of its last record plus one."""
    topic = make_topic(admin, 3)
    sink = transport.sink(unique_topic("tx"))
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
    records = {(r.partition, r.value): r.offset for r in read_all(transport, topic)}
    # The commit marker of the first transaction takes an offset of its own.
    assert second == {TP(topic, 0): records[(0, b"c")] + 1}
    assert records[(0, b"c")] >= 4


def test_sink_refuses_calls_outside_a_transaction(transport: Transport, admin: Admin) -> None:
    """send and commit without begin, and begin twice, are errors that are not retriable."""
    topic = make_topic(admin, 1)
    sink = transport.sink(unique_topic("tx"))
    try:
        for call in (
            lambda: sink.send(OutRecord(topic, None, b"x")),
            lambda: sink.commit({}, "g"),
        ):
            with pytest.raises(TransportError) as outside:
                call()
            assert outside.value.retriable is False
        sink.begin()
        with pytest.raises(TransportError, match="begin while a transaction is open"):
            sink.begin()
        sink.abort()
        sink.abort()  # nothing open: no error
    finally:
        sink.close()


def test_reused_transactional_id_fences_the_older_sink(admin: Admin, transport: Transport) -> None:
    """A new sink with the same transactional id makes the older one's transaction fail;
    what the older one wrote is never visible, and the new one commits."""
    topic = make_topic(admin, 1)
    transactional_id = unique_topic("tx")
    old = transport.sink(transactional_id)
    new = transport.sink(transactional_id)
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
    assert [r.value for r in read_all(transport, topic)] == [b"fresh"]


def test_plain_sink_and_producer_write_without_transactions(
    admin: Admin, transport: Transport
) -> None:
    """Without a transactional id the sink flushes, reports offsets and commits no group
    offsets; headers and tombstones round-trip through the plain producer."""
    topic = make_topic(admin, 1)
    group = unique_topic("g")
    sink = transport.sink(None)
    producer = transport.producer()
    try:
        sink.begin()
        sink.send(OutRecord(topic, b"k1", b"v1"))
        assert sink.commit({TP(topic, 0): 1}, group) == {TP(topic, 0): 1}
        producer.send(OutRecord(topic, b"k2", None, headers=(("ce_id", b"abc"),)))
        producer.flush()
    finally:
        sink.close()
        producer.close()
    records = read_all(transport, topic)
    assert [(r.key, r.value, r.headers) for r in records] == [
        (b"k1", b"v1", ()),
        (b"k2", None, (("ce_id", b"abc"),)),
    ]
    consumer = transport.group_consumer([topic], group, Recorder())
    try:
        assert consumer.committed(TP(topic, 0)) is None
    finally:
        consumer.close()


# ------------------------------------------------------------------ partition reader


def test_partition_reader_reads_to_end_offset_from_a_position(
    admin: Admin, transport: Transport
) -> None:
    """The reader returns a transactionally written partition in full to its end offset,
    or from a given offset; a missing topic has no partitions."""
    topic = make_topic(admin, 2)
    sink = transport.sink(unique_topic("tx"))
    try:
        for chunk in (range(0, 15), range(15, 25)):
            sink.begin()
            for i in chunk:
                sink.send(OutRecord(topic, None, b"%d" % i, partition=i % 2))
            sink.commit({}, "g")
    finally:
        sink.close()
    records = read_all(transport, topic)
    assert sorted(int(r.value or b"") for r in records) == list(range(25))
    reader = transport.partition_reader()
    try:
        assert reader.partitions_for(unique_topic("missing")) == []
        assert reader.partitions_for(topic) == [TP(topic, 0), TP(topic, 1)]
        tp = TP(topic, 1)
        # 7 + 5 records and two commit markers.
        assert reader.end_offsets([tp]) == {tp: 14}
        reader.assign({tp: 10})
        got = read_to(reader, {tp: 14}, "the tail")
        assert [(r.offset, r.value) for r in got] == [(10, b"19"), (11, b"21"), (12, b"23")]
    finally:
        reader.close()


def test_reading_to_the_written_ends_waits_for_an_open_transaction(
    admin: Admin, transport: Transport
) -> None:
    """written_ends (the high watermark) equals end_offsets when nothing is open, is never
    below it while a transaction is open, and reading to it after that transaction ends
    returns the transaction's records."""
    topic = make_topic(admin, 1)
    tp = TP(topic, 0)
    sink = transport.sink(unique_topic("tx"))
    reader = transport.partition_reader()
    try:
        sink.begin()
        sink.send(OutRecord(topic, None, b"first", partition=0))
        sink.commit({}, "g")
        # Apache Kafka's coordinator writes the commit marker (offset 1) after it has answered
        # the commit: the partition's ends reach 2 a moment later, not at once.
        wait_for(lambda: reader.written_ends([tp]) == {tp: 2}, "the commit marker")
        assert reader.written_ends([tp]) == reader.end_offsets([tp]) == {tp: 2}
        sink.begin()
        sink.send(OutRecord(topic, None, b"open", partition=0))
        flush_open(sink)
        open_ends = reader.written_ends([tp])
        assert reader.end_offsets([tp]) == {tp: 2}  # the open transaction is not readable
        assert open_ends[tp] >= 2
        sink.commit({}, "g")
        reader.assign({tp: None})
        got = read_to(reader, open_ends, "the written ends")
        assert [r.value for r in got] == [b"first", b"open"]
    finally:
        reader.close()
        sink.close()


# ------------------------------------------------------------------ group consumer


def test_consumer_commit_and_poll_round_trip(admin: Admin, transport: Transport) -> None:
    """A member reads from the committed offset and its own commits are read back."""
    topic = make_topic(admin, 1)
    produce(transport, topic, 5)
    tp = TP(topic, 0)
    consumer = transport.group_consumer([topic], unique_topic("g"), Recorder())
    try:
        assert [r.offset for r in poll_until(consumer, 5)] == [0, 1, 2, 3, 4]
        consumer.commit({tp: 3})
        assert consumer.committed(tp) == 3
        consumer.seek(tp, 3)
        assert consumer.position(tp) == 3
        assert [r.value for r in poll_until(consumer, 2)] == [b"3", b"4"]
    finally:
        consumer.close()


def test_a_new_member_starts_at_the_committed_offset(admin: Admin, transport: Transport) -> None:
    """A member of a group with a committed offset reads from it, not from the beginning."""
    topic = make_topic(admin, 1)
    produce(transport, topic, 4)
    group = unique_topic("g")
    first = transport.group_consumer([topic], group, Recorder())
    try:
        poll_until(first, 4)
        first.commit({TP(topic, 0): 3})
    finally:
        first.close()
    second = transport.group_consumer([topic], group, Recorder())
    try:
        assert [r.value for r in poll_until(second, 1)] == [b"3"]
    finally:
        second.close()


def test_lag_counts_records_behind_the_high_watermark(admin: Admin, transport: Transport) -> None:
    """After reading 2 of 5 records, lag reports the 3 left behind the high watermark."""
    topic = make_topic(admin, 1)
    produce(transport, topic, 5)
    consumer = transport.group_consumer([topic], unique_topic("g"), Recorder())
    try:
        assert [r.offset for r in poll_until(consumer, 2, max_records=2)] == [0, 1]
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


def test_rebalance_callbacks_tell_the_assignment_and_a_seek_in_them_wins(
    admin: Admin, transport: Transport
) -> None:
    """on_assigned names the member's partitions before their records come, a seek made in
    it decides the first record, and closing the member calls no callback."""
    topic = make_topic(admin, 1)
    produce(transport, topic, 6)
    listener = SeekingListener(4)
    consumer = transport.group_consumer([topic], unique_topic("g"), listener)
    listener.consumer = consumer
    try:
        assert [r.value for r in poll_until(consumer, 2)] == [b"4", b"5"]
        assert consumer.assignment() == {TP(topic, 0)}
    finally:
        consumer.close()
    assert listener.events == [("assigned", [TP(topic, 0)])]


def test_a_sought_back_and_paused_partition_reads_again_after_resume(
    admin: Admin, transport: Transport
) -> None:
    """seek + pause + resume (how the worker holds records back): no records of the paused
    partition while paused, then the same records again from the sought offset."""
    topic, other = make_topic(admin, 1), make_topic(admin, 1)
    produce(transport, topic, 300)
    consumer = transport.group_consumer([topic, other], unique_topic("g"), Recorder())
    tp = TP(topic, 0)
    try:
        got = poll_until(consumer, 1)
        consumer.seek(tp, got[0].offset)
        consumer.pause([tp])
        for _ in range(3):
            assert [r for r in consumer.poll(0.3, 100) if r.tp == tp] == []
        consumer.resume([tp])
        assert [r.offset for r in poll_until(consumer, 300)] == list(range(300))
    finally:
        consumer.close()


# ------------------------------------------------------------------ refused credentials


@pytest.mark.broker
@pytest.mark.parametrize("name", TRANSPORTS)
def test_refused_credentials_are_a_broker_access_error_that_is_not_retried(
    name: str, kafka_broker: SessionBroker, kafka_settings: ClientSettings
) -> None:
    """A wrong SCRAM password fails the admin client with a BrokerAccessError that is not
    retriable, names the settings to check and never quotes the password."""
    password = "wrong-Pa55-sentinel"
    settings = ClientSettings(
        bootstrap_servers=sasl_bootstrap(kafka_broker),
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=SCRAM_MECHANISM,
        sasl_username="ncd-worker",
        sasl_password=password,
        request_timeout_ms=kafka_settings.request_timeout_ms,
    )
    with pytest.raises(BrokerAccessError) as refused:
        admin = make_test_transport(name, settings).admin()
        try:
            admin.partition_count(unique_topic("any"))
        finally:
            admin.close()
    assert refused.value.retriable is False
    assert "NCD_SASL_" in str(refused.value)
    assert password not in str(refused.value)
