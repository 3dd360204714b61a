"""Fixtures shared by all tests: the session's Kafka-protocol broker."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.transport import ClientSettings, Transport
from tests.apache_kafka import KafkaServer
from tests.broker import SessionBroker, start_session_broker

# Short group timings: a join on Tansu takes about half the session timeout.
TEST_SESSION_TIMEOUT_MS = 6_000
TEST_HEARTBEAT_INTERVAL_MS = 1_000
TEST_REQUEST_TIMEOUT_MS = 10_000

#: Values of ``NCD_TRANSPORT``: broker tests that ask for ``transport_name`` run on each.
TRANSPORTS = ("kafka-python", "confluent")


#: Set by the session's main process for its pytest-xdist workers: a directory they share
#: (the broker's address and storage) and the process whose end stops the broker.
SHARED_DIR_ENV = "NCD_TEST_SHARED_DIR"
OWNER_PID_ENV = "NCD_TEST_OWNER_PID"


def pytest_configure(config: pytest.Config) -> None:
    """In the main process: a directory the workers share, before they start."""
    if hasattr(config, "workerinput") or SHARED_DIR_ENV in os.environ:
        return
    os.environ[SHARED_DIR_ENV] = tempfile.mkdtemp(prefix="ncd-tests-")
    os.environ[OWNER_PID_ENV] = str(os.getpid())
    config.stash[_OWNS_SHARED] = True


def pytest_unconfigure(config: pytest.Config) -> None:
    """In the main process: stop the shared broker, if a worker started one."""
    if not config.stash.get(_OWNS_SHARED, False):
        return
    shared = Path(os.environ.pop(SHARED_DIR_ENV))
    os.environ.pop(OWNER_PID_ENV, None)
    info = shared / "broker.json"
    if info.exists():
        KafkaServer.from_json(info.read_text()).stop()
    shutil.rmtree(shared, ignore_errors=True)


_OWNS_SHARED = pytest.StashKey[bool]()


def _shared_broker() -> SessionBroker:
    """One Apache Kafka for the whole run: the first worker that needs it starts it.

    Other brokers (external, container, Tansu) are per process as before; only the one
    from Maven is shared, since a JVM per worker would not fit the machine.
    """
    shared = Path(os.environ[SHARED_DIR_ENV])
    with (shared / "broker.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = shared / "broker.json"
        if info.exists():
            server = KafkaServer.from_json(info.read_text())
            if not server.alive():
                raise RuntimeError(f"the shared Apache Kafka has died; see {server.log_file}")
            return _shared(server)
        broker = start_session_broker(shared / "kafka", int(os.environ[OWNER_PID_ENV]))
        if broker.server is None:
            return broker
        # Started from Maven here: record it for the others; the main process stops it.
        info.write_text(broker.server.to_json())
        return _shared(broker.server)


def _shared(server: KafkaServer) -> SessionBroker:
    """The shared broker as a worker sees it: the main process stops it, not the worker."""
    return SessionBroker(
        server.bootstrap,
        "kafka",
        lambda: None,
        server.sasl_bootstrap,
        ssl_bootstrap=server.ssl_bootstrap,
        ca_file=server.ca_file,
    )


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[SessionBroker]:
    """The session broker; fails the requesting test loudly if none can be started."""
    try:
        broker = _shared_broker()
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
        from processor.transport.confluent import ConfluentTransport

        return ConfluentTransport(settings)
    from processor.transport.kafka import KafkaTransport

    return KafkaTransport(settings)


@pytest.fixture(params=TRANSPORTS)
def transport_name(request: pytest.FixtureRequest) -> str:
    """Each Kafka transport in turn: the tests using it run once per transport."""
    return str(request.param)


@pytest.fixture
def kafka_transport(transport_name: str, kafka_settings: ClientSettings) -> Transport:
    """The transport ``transport_name`` on the session broker."""
    return make_test_transport(transport_name, kafka_settings)
