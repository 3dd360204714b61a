"""librdkafka accepts the producer options the confluent transport derives from the settings."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from processor.transport import ClientSettings
from processor.transport.confluent._common import producer_options


@pytest.mark.parametrize("timeout_ms", [1_000, 10_000, 60_000, 900_000])
def test_any_transaction_timeout_gives_a_valid_transactional_producer(timeout_ms: int) -> None:
    """Short transaction timeouts bring the message and socket timeouts down with them."""
    settings = ClientSettings(
        bootstrap_servers="127.0.0.1:9",
        transactional_id="t",
        transaction_timeout_ms=timeout_ms,
    )
    options = producer_options(settings)
    Producer(options)  # raises KafkaException(_INVALID_ARG) on inconsistent timeouts
    assert options["message.timeout.ms"] <= timeout_ms
    assert options["socket.timeout.ms"] <= timeout_ms + 100
