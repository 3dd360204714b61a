"""What only a real broker shows, on both Kafka clients (kafka-python, confluent-kafka).

The behaviour every transport shares, the memory twin included, is the contract suite
(tests/contract/test_transport_contract.py); here are the two-member rebalance and the
default settings, once per client (the ``kafka_transport`` fixture of tests/conftest.py).
"""

from __future__ import annotations

import threading

import pytest

from processor.transport import TP, GroupConsumer, Transport
from tests.broker import unique_topic
from tests.conftest import make_test_transport
from tests.contract.test_transport_contract import make_topic, poll_until, produce
from tests.helpers import Recorder, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]


def new_topic(transport: Transport, partitions: int) -> str:
    """A new topic of ``partitions`` partitions, made with the transport's admin client."""
    admin = transport.admin()
    try:
        return make_topic(admin, partitions)
    finally:
        admin.close()


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
    kafka_transport: Transport,
) -> None:
    """A second member triggers a rebalance that splits 4 partitions 2 + 2 (range)."""
    topic = new_topic(kafka_transport, 4)
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


def test_a_group_member_with_the_default_settings_starts(
    kafka_transport: Transport, kafka_bootstrap: str, transport_name: str
) -> None:
    """A group consumer built from the default settings (45 s session, 30 s requests) is
    accepted by the client and joins (kafka-python 2.3 refused it before the fix)."""
    from processor.config import load_settings

    topic = new_topic(kafka_transport, 1)
    settings = load_settings(bootstrap_servers=kafka_bootstrap).client()
    consumer = make_test_transport(transport_name, settings).group_consumer(
        [topic], unique_topic("g"), Recorder()
    )
    try:
        wait_for(lambda: consumer.poll(0.2, 1) == [] and bool(consumer.assignment()), "a join")
    finally:
        consumer.close()


def test_a_paused_partition_comes_back_unpaused_after_a_rebalance(
    kafka_transport: Transport,
) -> None:
    """A pause ends with the partition's revocation: assigned again, the member fetches it
    (librdkafka kept the pause across the rebalance, and the member never read it again)."""
    topic = new_topic(kafka_transport, 1)
    tp, group, events = TP(topic, 0), unique_topic("g"), Recorder()
    first = kafka_transport.group_consumer([topic], group, events)
    second: GroupConsumer | None = None
    try:
        wait_for(lambda: not first.poll(0.2, 10) and first.assignment() == {tp}, "a join")
        first.pause([tp])
        second = kafka_transport.group_consumer([topic], group, Recorder())
        thread = PollingThread(second)
        thread.start()
        wait_for(
            lambda: not first.poll(0.2, 10) and ("revoked", [tp]) in events.events,
            "the rebalance the second member starts",
        )
        thread.stopped.set()
        thread.join()
        second.close()
        second = None
        wait_for(
            lambda: (
                not first.poll(0.2, 10)
                and first.assignment() == {tp}
                and events.events[-1] == ("assigned", [tp])
            ),
            "the partition back with the first member",
        )
        produce(kafka_transport, topic, 3)
        assert len(poll_until(first, 3)) == 3
    finally:
        if second is not None:
            second.close()
        first.close()
