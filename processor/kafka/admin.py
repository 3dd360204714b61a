"""``Admin`` on kafka-python: create missing topics, check partition counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError, for_code

from processor.errors import ConfigError
from processor.kafka._common import common_options, mapped_errors
from processor.transport import ClientSettings, TopicSpec

# How long a create may take until the new topics have leaders in the metadata.
CREATE_TIMEOUT_MS = 30_000


def _topic_options(spec: TopicSpec) -> dict[str, Any]:
    configs = dict(spec.config)
    if spec.compacted:
        configs["cleanup.policy"] = "compact"
    return {
        "num_partitions": spec.partitions,
        "replication_factor": spec.replication_factor,
        "configs": configs,
    }


class KafkaAdmin:
    """Topic administration through the cluster's controller."""

    def __init__(self, settings: ClientSettings) -> None:
        with mapped_errors("admin start"):
            self._client = KafkaAdminClient(**common_options(settings))

    def _partition_counts(self, topics: Sequence[str]) -> dict[str, int | None]:
        with mapped_errors("describe topics"):
            described = self._client.describe_topics(list(topics))
        counts: dict[str, int | None] = dict.fromkeys(topics)
        for topic in described:
            if topic["error_code"] == UnknownTopicOrPartitionError.errno:
                continue
            if topic["error_code"] != 0:
                with mapped_errors("describe topics"):
                    raise for_code(topic["error_code"])()
            counts[topic["name"]] = len(topic["partitions"])
        return counts

    def partition_count(self, topic: str) -> int | None:
        """Partitions of ``topic``, or ``None`` when it does not exist."""
        return self._partition_counts([topic])[topic]

    def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create the missing topics; raise ``ConfigError`` on a partition-count mismatch.

        Existing topics' configs (e.g. ``cleanup.policy``) are not checked: some
        Kafka-protocol brokers (Tansu) do not describe topic configs.
        """
        counts = self._partition_counts([spec.name for spec in specs])
        missing = {spec.name: _topic_options(spec) for spec in specs if counts[spec.name] is None}
        if missing:
            with mapped_errors("create topics"):
                result = self._client.create_topics(
                    missing, timeout_ms=CREATE_TIMEOUT_MS, raise_errors=False
                )
            for topic in result["topics"]:
                code = topic["error_code"]
                # Another worker may have created it meanwhile: checked below like the rest.
                if code not in (0, TopicAlreadyExistsError.errno):
                    with mapped_errors(f"create topic {topic['name']}"):
                        raise for_code(code)(topic.get("error_message"))
            with mapped_errors("wait for topics"):
                self._client.wait_for_topics(list(missing), timeout_ms=CREATE_TIMEOUT_MS)
            counts = self._partition_counts([spec.name for spec in specs])
        for spec in specs:
            if counts[spec.name] != spec.partitions:
                raise ConfigError(
                    f"topic {spec.name} has {counts[spec.name]} partitions,"
                    f" {spec.partitions} configured"
                )

    def close(self) -> None:
        """Release the connections."""
        with mapped_errors("admin close"):
            self._client.close()
