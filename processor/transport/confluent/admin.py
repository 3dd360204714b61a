"""``Admin`` on confluent-kafka: the metadata and create calls of ``base.AdminBase``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException  # type: ignore[import-untyped]
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[import-untyped]

from processor.errors import TransportError
from processor.transport.base import CREATE_TIMEOUT_S, AdminBase, topic_config
from processor.transport.confluent._common import AuthWatch, common_options, error_of, mapped_errors
from processor.transport.records import ClientSettings, TopicSpec

# Longest wait for a metadata answer.
ANSWER_TIMEOUT_S = 30.0
# One metadata request's wait: short, so that refused credentials are noticed quickly.
METADATA_STEP_S = 2.0


class ConfluentAdmin(AdminBase):
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

    def _leaders(self, topics: Sequence[str]) -> dict[str, list[int] | None]:
        """The leader of each partition of each topic (-1: none yet); None: no such topic."""
        metadata = self._metadata()
        leaders: dict[str, list[int] | None] = dict.fromkeys(topics)
        for name in topics:
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None or not topic.partitions:
                continue
            leaders[name] = [topic.partitions[p].leader for p in sorted(topic.partitions)]
        return leaders

    def _create(self, specs: Sequence[TopicSpec]) -> None:
        topics = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                config=topic_config(spec),
            )
            for spec in specs
        ]
        with mapped_errors("create topics"):
            futures = self._client.create_topics(topics, operation_timeout=CREATE_TIMEOUT_S)
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                error = error_of(exc)
                # Another worker may have created it meanwhile: checked like the rest.
                if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    with mapped_errors(f"create topic {name}"):
                        raise

    def close(self) -> None:
        """Release the connections (the admin client holds no other state)."""
        del self._client
