"""The consumer fetch sizes are settings that reach both transports' consumers."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer

from processor.config import load_settings
from processor.errors import ConfigError
from processor.transport.confluent._common import consumer_options as confluent_consumer_options
from processor.transport.kafka._common import consumer_options as kafka_consumer_options


def test_fetch_size_settings_reach_both_consumers() -> None:
    """NCD_MAX_PARTITION_FETCH_BYTES and NCD_FETCH_MAX_BYTES become each client's options."""
    client = load_settings(
        bootstrap_servers="127.0.0.1:9",
        max_partition_fetch_bytes=2_000_000,
        fetch_max_bytes=8_000_000,
    ).client()
    kafka = kafka_consumer_options(client)
    assert (kafka["max_partition_fetch_bytes"], kafka["fetch_max_bytes"]) == (2_000_000, 8_000_000)
    options = confluent_consumer_options(client, "g")
    assert (options["max.partition.fetch.bytes"], options["fetch.max.bytes"]) == (
        2_000_000,
        8_000_000,
    )


def test_default_fetch_sizes_are_accepted_by_librdkafka() -> None:
    """The defaults (2 MiB per partition, 50 MiB in all) make a valid librdkafka consumer."""
    client = load_settings(bootstrap_servers="127.0.0.1:9").client()
    assert client.max_partition_fetch_bytes == 2 * 1024 * 1024
    assert client.fetch_max_bytes == 50 * 1024 * 1024
    Consumer(confluent_consumer_options(client, "g")).close()  # raises on invalid options


def test_total_fetch_below_partition_fetch_is_refused() -> None:
    """A total fetch size below the per-partition one is a configuration error."""
    with pytest.raises(ConfigError, match="NCD_FETCH_MAX_BYTES"):
        load_settings(
            bootstrap_servers="127.0.0.1:9",
            max_partition_fetch_bytes=4_000_000,
            fetch_max_bytes=2_000_000,
        )
