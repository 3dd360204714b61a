"""Putting records back and pausing partitions for reasons: the loop's two small helpers."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from processor.errors import TransportError
from processor.transport import TP, InRecord, OutRecord, put_back
from processor.transport.memory import MemoryBroker
from processor.worker.partitions import Pauses

A, B = TP("a", 0), TP("b", 1)


def record(tp: TP, offset: int) -> InRecord:
    return InRecord(tp.topic, tp.partition, offset, None, b"{}", (), 0)


def test_put_back_seeks_each_partition_to_its_lowest_offset() -> None:
    """Each partition of the records is sought once, to the lowest offset among them."""
    sought: list[tuple[TP, int]] = []
    records = [record(A, 7), record(B, 3), record(A, 5), record(B, 4)]
    assert put_back(lambda tp, offset: sought.append((tp, offset)), records) == {A: 5, B: 3}
    assert sorted(sought) == [(A, 5), (B, 3)]


class Consumer:
    """Records pause and resume calls; ``fail_resume`` makes the next resume raise."""

    def __init__(self) -> None:
        self.paused: set[TP] = set()
        self.fail_resume = False

    def pause(self, tps: Iterable[TP]) -> None:
        self.paused.update(tps)

    def resume(self, tps: Iterable[TP]) -> None:
        if self.fail_resume:
            self.fail_resume = False
            raise TransportError("resume failed", retriable=True)
        self.paused.difference_update(tps)


def test_a_partition_paused_for_two_reasons_resumes_when_both_are_gone() -> None:
    """Released for one reason a partition stays paused; released for the last it resumes."""
    consumer, pauses = Consumer(), Pauses()
    pauses.pause(consumer, [A, B], "restoring")
    pauses.pause(consumer, [A], "provisioning")
    pauses.release(consumer, [A, B], "restoring")
    assert consumer.paused == {A}
    pauses.release(consumer, [A], "provisioning")
    assert consumer.paused == set()


def test_a_failed_resume_keeps_the_reason_so_it_is_tried_again() -> None:
    """A resume the consumer refused leaves the partition noted as paused: a later release
    resumes it."""
    consumer, pauses = Consumer(), Pauses()
    pauses.pause(consumer, [A], "restoring")
    consumer.fail_resume = True
    with pytest.raises(TransportError):
        pauses.release(consumer, [A], "restoring")
    pauses.release(consumer, [A], "restoring")
    assert consumer.paused == set()


class NoListener:
    def on_assigned(self, tps: list[TP]) -> None:
        """Nothing to do."""

    def on_revoked(self, tps: list[TP]) -> None:
        """Nothing to do."""


def test_put_back_on_the_memory_consumer_reads_the_records_again() -> None:
    """Records put back on a consumer are returned again by its next poll."""
    broker = MemoryBroker()
    broker.create_topic("a", 1)
    producer = broker.producer()
    for i in range(3):
        producer.send(OutRecord("a", b"k", b"%d" % i))
    consumer = broker.group_consumer(["a"], "g", NoListener())
    first = consumer.poll(0, 10)
    put_back(consumer.seek, first[1:])
    assert consumer.poll(0, 10) == first[1:]
