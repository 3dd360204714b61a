"""How kafka-python's exceptions become ``TransportError`` (retriable or not, and what it says)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from kafka.errors import (
    InvalidProducerEpochError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFencedError,
    TopicAuthorizationFailedError,
)

from processor.errors import TransportError
from processor.transport import START_HINT
from processor.transport.kafka._common import mapped_errors


def _mapped(exc: Exception, operation: str = "send") -> TransportError:
    with pytest.raises(TransportError) as info, mapped_errors(operation):
        raise exc
    return info.value


def test_the_bare_base_class_is_retriable() -> None:
    """A flushed send failed by an unreachable broker (bare KafkaError) is retried, not fatal."""
    assert _mapped(KafkaError("boom")).retriable


def test_an_epoch_bumped_by_the_coordinator_is_retriable() -> None:
    """A transaction the coordinator aborted for its timeout (epoch bumped) is retried."""
    assert _mapped(InvalidProducerEpochError()).retriable


@pytest.mark.parametrize("exc", [ProducerFencedError(), TopicAuthorizationFailedError()])
def test_fencing_and_authorization_stay_fatal(exc: Exception) -> None:
    """Errors that another attempt cannot fix stop the worker."""
    assert not _mapped(exc).retriable


@pytest.mark.parametrize("exc", [KafkaTimeoutError(), KafkaConnectionError()])
def test_a_client_that_cannot_start_says_what_to_check(exc: Exception) -> None:
    """A start-up time-out names the settings to check, since a refused handshake looks alike."""
    error = _mapped(exc, "admin start")
    assert START_HINT in str(error)
    assert START_HINT not in str(_mapped(exc, "send"))


def test_messages_never_quote_the_cause_text() -> None:
    """Only the operation and the error class are said: client messages can quote requests."""
    error = _mapped(KafkaError("SENTINEL-payload"))
    assert "SENTINEL" not in str(error)


def test_group_member_request_timeout_outlasts_the_session_with_default_settings() -> None:
    """With the default settings (45 s session, 30 s requests) the group member's request
    timeout is longer than its session timeout, which kafka-python requires."""
    from processor.config import load_settings
    from processor.transport.kafka.consumer import group_request_timeout_ms

    client = load_settings().client()
    assert client.request_timeout_ms <= client.session_timeout_ms  # the case that broke
    timeout = group_request_timeout_ms(client)
    assert timeout > client.session_timeout_ms


def test_a_producer_that_cannot_probe_the_broker_version_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kafka-python asserts the broker version when a transactional producer starts; with no
    answer to its probe (a frozen broker) that is a retriable start failure, not a crash."""
    from processor.config import load_settings
    from processor.transport.kafka import sink

    def no_version(**_options: object) -> None:
        raise AssertionError("Transactional/Idempotent producer requires >= Kafka 0.11 Brokers")

    monkeypatch.setattr(sink, "_ClientProducer", no_version)
    client = load_settings().client()
    with pytest.raises(TransportError) as info:
        sink.KafkaTransactionalSink(replace(client, transactional_id="t"))
    assert info.value.retriable
