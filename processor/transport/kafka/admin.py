"""``Admin`` on kafka-python: the metadata and create calls of ``base.AdminBase``."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError, for_code
from kafka.protocol.metadata import MetadataRequest

from processor.transport.base import CREATE_TIMEOUT_S, AdminBase, topic_config
from processor.transport.kafka._common import common_options, mapped_errors
from processor.transport.records import ClientSettings, TopicSpec


class KafkaAdmin(AdminBase):
    """Topic administration through the cluster's controller."""

    def __init__(self, settings: ClientSettings) -> None:
        with mapped_errors("admin start"):
            self._client = KafkaAdminClient(**common_options(settings))

    def _leaders(self, topics: Sequence[str]) -> dict[str, list[int] | None]:
        """The leader of each partition of each topic (-1: none yet); None: no such topic."""
        # Metadata v7: the last version without authorized operations, which kafka-python
        # 2.3 cannot parse from every broker (Tansu's fail with "not a valid ACLOperation").
        request = MetadataRequest[7](topics=list(topics), allow_auto_topic_creation=False)
        with mapped_errors("describe topics"):
            described = self._client.send_request(request).to_object()["topics"]
        leaders: dict[str, list[int] | None] = dict.fromkeys(topics)
        for topic in described:
            if topic["error_code"] == UnknownTopicOrPartitionError.errno:
                continue
            if topic["error_code"] != 0:
                with mapped_errors("describe topics"):
                    raise for_code(topic["error_code"])()
            partitions = sorted(topic["partitions"], key=lambda p: int(p["partition"]))
            leaders[topic["topic"]] = [
                int(p["leader"]) if p["error_code"] == 0 else -1 for p in partitions
            ]
        return leaders

    def _create(self, specs: Sequence[TopicSpec]) -> None:
        for spec in specs:
            topic = NewTopic(
                spec.name,
                spec.partitions,
                spec.replication_factor,
                topic_configs=topic_config(spec),
            )
            # One at a time: kafka-python raises the first topic error of a request, and
            # another worker may create some of them meanwhile (checked like the rest).
            with mapped_errors(f"create topic {spec.name}"), suppress(TopicAlreadyExistsError):
                self._client.create_topics([topic], timeout_ms=int(CREATE_TIMEOUT_S * 1000))

    def close(self) -> None:
        """Release the connections."""
        with mapped_errors("admin close"):
            self._client.close()
