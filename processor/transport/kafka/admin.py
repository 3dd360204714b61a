"""``Admin`` on kafka-python: create missing topics, check partition counts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import suppress

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import (
    KafkaTimeoutError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)
from kafka.protocol.metadata import MetadataRequest

from processor.errors import ConfigError
from processor.transport import ClientSettings, TopicSpec
from processor.transport.kafka._common import common_options, mapped_errors

# How long a create may take until the new topics have leaders in the metadata.
CREATE_TIMEOUT_MS = 30_000
# Between two looks at the metadata while waiting for leaders: a leader is elected in
# milliseconds on a healthy cluster, so a short pause keeps start-up quick.
LEADER_POLL_S = 0.1


def _new_topic(spec: TopicSpec) -> NewTopic:
    configs = dict(spec.config)
    if spec.compacted:
        configs["cleanup.policy"] = "compact"
    return NewTopic(spec.name, spec.partitions, spec.replication_factor, topic_configs=configs)


class KafkaAdmin:
    """Topic administration through the cluster's controller."""

    def __init__(self, settings: ClientSettings) -> None:
        with mapped_errors("admin start"):
            self._client = KafkaAdminClient(**common_options(settings))

    def _describe(self, topics: Sequence[str]) -> dict[str, list[int] | None]:
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

    def _partition_counts(self, topics: Sequence[str]) -> dict[str, int | None]:
        return {
            name: None if leaders is None else len(leaders)
            for name, leaders in self._describe(topics).items()
        }

    def _wait_for_leaders(self, topics: Sequence[str]) -> dict[str, int | None]:
        """Wait until every partition of ``topics`` has a leader; return partition counts.

        A topic another worker has just created exists before its partitions have leaders,
        and a client that reads or writes it then fails (NOT_LEADER_FOR_PARTITION): so every
        worker waits, not only the one that created it.
        """
        deadline = time.monotonic() + CREATE_TIMEOUT_MS / 1000
        while True:
            described = self._describe(topics)
            if all(
                leaders is not None and leaders and min(leaders) >= 0
                for leaders in described.values()
            ):
                return {name: len(leaders or ()) for name, leaders in described.items()}
            if time.monotonic() > deadline:
                with mapped_errors("wait for topics"):
                    raise KafkaTimeoutError("topics have no leader yet")
            time.sleep(LEADER_POLL_S)

    def partition_count(self, topic: str) -> int | None:
        """Partitions of ``topic``, or ``None`` when it does not exist."""
        return self._partition_counts([topic])[topic]

    def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create the missing topics; raise ``ConfigError`` on a partition-count mismatch.

        Existing topics' configs (e.g. ``cleanup.policy``) are not checked: some
        Kafka-protocol brokers (Tansu) do not describe topic configs.
        """
        names = [spec.name for spec in specs]
        counts = self._partition_counts(names)
        missing = [_new_topic(spec) for spec in specs if counts[spec.name] is None]
        for topic in missing:
            # One at a time: kafka-python raises the first topic error of a request, and
            # another worker may create some of them meanwhile (checked below like the rest).
            with mapped_errors(f"create topic {topic.name}"), suppress(TopicAlreadyExistsError):
                self._client.create_topics([topic], timeout_ms=CREATE_TIMEOUT_MS)
        counts = self._wait_for_leaders(names)
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
