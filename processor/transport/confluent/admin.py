"""``Admin`` on confluent-kafka: create missing topics, check partition counts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException  # type: ignore[import-untyped]
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[import-untyped]

from processor.errors import ConfigError, TransportError
from processor.transport import ClientSettings, TopicSpec
from processor.transport.confluent._common import AuthWatch, common_options, error_of, mapped_errors

# How long a create may take until the new topics have leaders in the metadata.
CREATE_TIMEOUT_S = 30.0
# Longest wait for a metadata answer.
ANSWER_TIMEOUT_S = 30.0
# One metadata request's wait: short, so that refused credentials are noticed quickly.
METADATA_STEP_S = 2.0
# Pause between two metadata looks while waiting for created topics.
WAIT_STEP_S = 0.1


def _new_topic(spec: TopicSpec) -> NewTopic:
    configs = dict(spec.config)
    if spec.compacted:
        configs["cleanup.policy"] = "compact"
    return NewTopic(
        spec.name,
        num_partitions=spec.partitions,
        replication_factor=spec.replication_factor,
        config=configs,
    )


class ConfluentAdmin:
    """Topic administration through the cluster's controller."""

    def __init__(self, settings: ClientSettings) -> None:
        self._auth = AuthWatch()
        with mapped_errors("admin start"):
            self._client = AdminClient(
                {**common_options(settings), "error_cb": self._auth.on_error}
            )

    def _metadata(self) -> Any:
        """The cluster's metadata; fails at once (not retriable) on refused credentials."""
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while True:
            try:
                with mapped_errors("describe topics"):
                    return self._client.list_topics(timeout=METADATA_STEP_S)
            except TransportError:
                self._client.poll(0)  # serves error_cb: was it the credentials?
                self._auth.check("describe topics")
                if time.monotonic() > deadline:
                    raise

    def _partition_counts(self, topics: Sequence[str]) -> dict[str, int | None]:
        """Partitions of each topic that exists and has a leader for every partition."""
        metadata = self._metadata()
        counts: dict[str, int | None] = dict.fromkeys(topics)
        for name in topics:
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None or not topic.partitions:
                continue
            if all(p.leader >= 0 for p in topic.partitions.values()):
                counts[name] = len(topic.partitions)
        return counts

    def partition_count(self, topic: str) -> int | None:
        """Partitions of ``topic``, or ``None`` when it does not exist."""
        return self._partition_counts([topic])[topic]

    def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create the missing topics; raise ``ConfigError`` on a partition-count mismatch.

        Existing topics' configs are not checked: some Kafka-protocol brokers (Tansu) do
        not describe topic configs.
        """
        names = [spec.name for spec in specs]
        counts = self._partition_counts(names)
        missing = [spec for spec in specs if counts[spec.name] is None]
        if missing:
            with mapped_errors("create topics"):
                futures = self._client.create_topics(
                    [_new_topic(spec) for spec in missing], operation_timeout=CREATE_TIMEOUT_S
                )
            for name, future in futures.items():
                try:
                    future.result()
                except KafkaException as exc:
                    error = error_of(exc)
                    # Another worker may have created it meanwhile: checked below like the rest.
                    if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        with mapped_errors(f"create topic {name}"):
                            raise
            deadline = time.monotonic() + CREATE_TIMEOUT_S
            counts = self._partition_counts(names)
            while any(count is None for count in counts.values()):
                if time.monotonic() > deadline:
                    with mapped_errors("wait for topics"):
                        raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
                time.sleep(WAIT_STEP_S)
                counts = self._partition_counts(names)
        for spec in specs:
            if counts[spec.name] != spec.partitions:
                raise ConfigError(
                    f"topic {spec.name} has {counts[spec.name]} partitions,"
                    f" {spec.partitions} configured"
                )

    def close(self) -> None:
        """Release the connections (the admin client holds no other state)."""
        del self._client
