"""``ConfluentTransport``: makes the confluent-kafka clients from one ``ClientSettings``."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from confluent_kafka import Consumer  # type: ignore[import-untyped]

from processor.transport.base import SinkProducer
from processor.transport.confluent._common import consumer_options, mapped_errors
from processor.transport.confluent.admin import ConfluentAdmin
from processor.transport.confluent.consumer import ConfluentGroupConsumer
from processor.transport.confluent.reader import ConfluentPartitionReader
from processor.transport.confluent.sink import ConfluentTransactionalSink
from processor.transport.protocols import RebalanceListener, Transport
from processor.transport.records import ClientSettings


class ConfluentTransport:
    """The ``Transport`` of a real Kafka-protocol cluster, on librdkafka.

    It remembers the group consumers it made, so that a sink committing offsets of a
    group sends that member's metadata (generation, member id) into the transaction.
    """

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self._members: weakref.WeakValueDictionary[str, ConfluentGroupConsumer] = (
            weakref.WeakValueDictionary()
        )
        self._detached: dict[str, Any] = {}

    def group_consumer(
        self, topics: Sequence[str], group_id: str, listener: RebalanceListener
    ) -> ConfluentGroupConsumer:
        """A member of ``group_id`` subscribed to ``topics``."""
        consumer = ConfluentGroupConsumer(self.settings, topics, group_id, listener)
        self._members[group_id] = consumer
        return consumer

    def group_metadata(self, group_id: str) -> Any:
        """Metadata of this process's member of ``group_id``; without one, of the group only."""
        member = self._members.get(group_id)
        if member is not None:
            return member.group_metadata()
        if group_id not in self._detached:
            with mapped_errors("group metadata"):
                probe = Consumer(consumer_options(self.settings, group_id))
                try:
                    self._detached[group_id] = probe.consumer_group_metadata()
                finally:
                    probe.close()
        return self._detached[group_id]

    def sink(self, transactional_id: str | None) -> ConfluentTransactionalSink:
        """A transactional sink when ``transactional_id`` is set, else a plain one."""
        settings = replace(self.settings, transactional_id=transactional_id)
        return ConfluentTransactionalSink(settings, self.group_metadata)

    def partition_reader(self) -> ConfluentPartitionReader:
        """A group-less reader."""
        return ConfluentPartitionReader(self.settings)

    def admin(self) -> ConfluentAdmin:
        """A topic administration client."""
        return ConfluentAdmin(self.settings)

    def producer(self) -> SinkProducer:
        """A plain producer."""
        return SinkProducer(self.sink(None))


def _conforms(transport: ConfluentTransport) -> Transport:
    """Never called: makes mypy check that the adapters satisfy every protocol."""
    return transport
