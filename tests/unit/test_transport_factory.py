"""Choosing the Kafka transport by ``NCD_TRANSPORT``, and librdkafka error mapping."""

from __future__ import annotations

import sys

import pytest
from confluent_kafka import KafkaError, KafkaException

from processor.config import load_settings
from processor.errors import ConfigError, TransportError
from processor.transport.confluent import ConfluentTransport
from processor.transport.confluent._common import mapped_errors
from processor.transport.factory import make_transport
from processor.transport.kafka import KafkaTransport


def test_kafka_python_is_the_default_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NCD_TRANSPORT the worker runs on kafka-python."""
    monkeypatch.delenv("NCD_TRANSPORT", raising=False)
    assert isinstance(make_transport(load_settings()), KafkaTransport)


def test_confluent_transport_is_chosen_by_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """NCD_TRANSPORT=confluent gives the confluent-kafka transport with the same settings."""
    monkeypatch.setenv("NCD_TRANSPORT", "confluent")
    settings = load_settings(bootstrap_servers="broker:9093")
    transport = make_transport(settings)
    assert isinstance(transport, ConfluentTransport)
    assert transport.settings == settings.client()


def test_unknown_transport_is_a_config_error_naming_the_setting() -> None:
    """A transport name other than the two known ones is rejected, naming NCD_TRANSPORT."""
    with pytest.raises(ConfigError, match="NCD_TRANSPORT"):
        load_settings(transport="librdkafka")


def test_missing_confluent_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Choosing confluent without confluent-kafka installed names NCD_TRANSPORT and the extra."""
    prefixes = ("confluent_kafka.", "processor.transport.confluent")
    for name in list(sys.modules):
        if name == "confluent_kafka" or name.startswith(prefixes):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # makes the import fail
    with pytest.raises(ConfigError, match=r"NCD_TRANSPORT.*ncd-processor\[confluent\]"):
        make_transport(load_settings(transport="confluent"))


@pytest.mark.parametrize(
    ("error", "retriable"),
    [
        (KafkaError(KafkaError._TRANSPORT), True),
        (KafkaError(KafkaError.INVALID_TXN_STATE, txn_requires_abort=True), True),
        (KafkaError(KafkaError.NOT_COORDINATOR, retriable=True), True),
        (KafkaError(KafkaError._FENCED, fatal=True), False),
        (KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), False),
    ],
)
def test_librdkafka_errors_map_to_transport_errors(error: KafkaError, retriable: bool) -> None:
    """librdkafka errors become TransportError; fatal ones never retriable, abortable ones are."""
    with pytest.raises(TransportError) as info, mapped_errors("commit transaction"):
        raise KafkaException(error)
    assert info.value.retriable is retriable
    assert str(info.value) == f"commit transaction failed: {error.name()}"
    assert isinstance(info.value.__cause__, KafkaException)
