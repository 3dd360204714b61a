"""``KafkaTransport``: makes the kafka-python clients from one ``ClientSettings``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from processor.transport import ClientSettings, RebalanceListener, Transport
from processor.transport.base import SinkProducer
from processor.transport.kafka.admin import KafkaAdmin
from processor.transport.kafka.consumer import KafkaGroupConsumer
from processor.transport.kafka.reader import KafkaPartitionReader
from processor.transport.kafka.sink import KafkaTransactionalSink


class KafkaTransport:
    """The ``Transport`` of a real Kafka-protocol cluster."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings

    def group_consumer(
        self, topics: Sequence[str], group_id: str, listener: RebalanceListener
    ) -> KafkaGroupConsumer:
        """A member of ``group_id`` subscribed to ``topics``."""
        return KafkaGroupConsumer(self.settings, topics, group_id, listener)

    def sink(self, transactional_id: str | None) -> KafkaTransactionalSink:
        """A transactional sink when ``transactional_id`` is set, else a plain one."""
        return KafkaTransactionalSink(replace(self.settings, transactional_id=transactional_id))

    def partition_reader(self) -> KafkaPartitionReader:
        """A group-less reader."""
        return KafkaPartitionReader(self.settings)

    def admin(self) -> KafkaAdmin:
        """A topic administration client."""
        return KafkaAdmin(self.settings)

    def producer(self) -> SinkProducer:
        """A plain producer."""
        return SinkProducer(self.sink(None))


def _conforms(transport: KafkaTransport) -> Transport:
    """Never called: makes mypy check that the adapters satisfy every protocol."""
    return transport
