"""Fixtures shared by all tests: the session's Kafka-protocol broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from processor.transport import ClientSettings, Transport
from tests.broker import SessionBroker, start_session_broker

# Short group timings: a join on Tansu takes about half the session timeout.
TEST_SESSION_TIMEOUT_MS = 6_000
TEST_HEARTBEAT_INTERVAL_MS = 1_000
TEST_REQUEST_TIMEOUT_MS = 10_000

#: Values of ``NCD_TRANSPORT``: broker tests that ask for ``transport_name`` run on each.
TRANSPORTS = ("kafka-python", "confluent")


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[SessionBroker]:
    """The session broker; fails the requesting test loudly if none can be started."""
    try:
        broker = start_session_broker()
    except Exception as exc:
        pytest.fail(f"no Kafka-protocol broker could be started: {exc!r}", pytrace=False)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: SessionBroker) -> str:
    """``host:port`` of the session broker."""
    return kafka_broker.bootstrap


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> ClientSettings:
    """Client settings for the session broker with short, test-sized group timings."""
    return ClientSettings(
        bootstrap_servers=kafka_bootstrap,
        client_id="ncd-test",
        session_timeout_ms=TEST_SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=TEST_HEARTBEAT_INTERVAL_MS,
        request_timeout_ms=TEST_REQUEST_TIMEOUT_MS,
    )


def make_test_transport(name: str, settings: ClientSettings) -> Transport:
    """The transport ``name`` (a value of ``NCD_TRANSPORT``) on ``settings``."""
    if name == "confluent":
        from processor.confluent import ConfluentTransport

        return ConfluentTransport(settings)
    from processor.kafka import KafkaTransport

    return KafkaTransport(settings)


@pytest.fixture(params=TRANSPORTS)
def transport_name(request: pytest.FixtureRequest) -> str:
    """Each Kafka transport in turn: the tests using it run once per transport."""
    return str(request.param)


@pytest.fixture
def kafka_transport(transport_name: str, kafka_settings: ClientSettings) -> Transport:
    """The transport ``transport_name`` on the session broker."""
    return make_test_transport(transport_name, kafka_settings)
