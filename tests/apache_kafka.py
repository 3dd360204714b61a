"""Apache Kafka from Maven Central as a single KRaft node on loopback: the test broker.

``kafka_classpath()`` assembles the broker's jars with Maven from ``tests/kafka/pom.xml``
into ``.cache/kafka/<version>/libs`` (git-ignored; later runs reuse it, and Maven's own
repository makes a fresh clone's assembly take seconds). ``start_kafka()`` formats a
storage directory (``kafka.tools.StorageTool format``, with the SCRAM users of
:data:`SCRAM_USERS`) and starts ``kafka.Kafka`` with a small heap. It listens on:

* ``PLAINTEXT`` (``bootstrap``): no authentication; its principal ``ANONYMOUS`` is a super
  user, so the tests that are not about security need no ACLs;
* ``SASL_PLAINTEXT`` (``sasl_bootstrap``): SASL/SCRAM-SHA-512 for the users below, with
  Kafka's standard authorizer: a user other than ``ncd-admin`` may do only what ACLs allow;
* ``SASL_SSL`` (``ssl_bootstrap``): the same over TLS, with a certificate signed by a CA
  made for this broker (``ca_file``); only where openssl is on the PATH.

The broker runs in its own session (a pytest-xdist worker may start it and exit before
the others are done); a small shell watchdog stops it when ``owner_pid`` (the test
session's main process) is gone, so a killed test run leaves no broker behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.helpers import free_port

#: Keep in step with ``kafka.version`` in tests/kafka/pom.xml.
KAFKA_VERSION = "4.1.1"
ROOT = Path(__file__).resolve().parents[1]
POM = ROOT / "tests" / "kafka" / "pom.xml"
LOG4J_CONFIG = ROOT / "tests" / "kafka" / "log4j2.properties"
CACHE = Path(os.environ.get("NCD_KAFKA_CACHE", ROOT / ".cache" / "kafka")) / KAFKA_VERSION

#: SCRAM-SHA-512 users created when the storage is formatted (test credentials only).
SCRAM_USERS = {
    "ncd-admin": "admin-secret",
    "ncd-worker": "worker-secret",
    "ncd-upstream": "upstream-secret",
    "ncd-platform": "platform-secret",
}
SCRAM_MECHANISM = "SCRAM-SHA-512"

#: The whole suite shares one broker on a 2-core machine: a small heap is plenty.
HEAP_OPTS = ("-Xms128m", "-Xmx768m")
#: A cold JVM formats and starts in a few seconds; this only guards a loaded machine.
READY_TIMEOUT_S = 120.0
#: Maven needs a few seconds with a warm local repository, a minute or two without.
ASSEMBLE_TIMEOUT_S = 900.0
#: SIGTERM lets the broker close its logs cleanly; it takes a few seconds at most.
STOP_TIMEOUT_S = 30.0


class KafkaUnavailableError(RuntimeError):
    """The machine cannot run Apache Kafka here (no JDK, or Maven could not assemble it)."""


def java_available() -> bool:
    """Whether a JDK is on the PATH (Maven is needed too unless the jars are cached)."""
    return shutil.which("java") is not None and (
        shutil.which("mvn") is not None or (CACHE / "libs" / ".complete").exists()
    )


def kafka_classpath() -> str:
    """The broker's class path, assembling the jars with Maven on first use."""
    libs = CACHE / "libs"
    done = libs / ".complete"
    if not done.exists():
        if shutil.which("mvn") is None:
            raise KafkaUnavailableError("Maven (mvn) is not on the PATH")
        staging = CACHE / f"libs.{uuid.uuid4().hex[:8]}"
        result = subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            timeout=ASSEMBLE_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
            raise KafkaUnavailableError("mvn could not assemble Apache Kafka:\n" + "\n".join(tail))
        (staging / ".complete").touch()
        try:
            staging.rename(libs)  # atomic: a concurrent assembly keeps the first one
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return str(libs / "*")


@dataclass(frozen=True)
class KafkaServer:
    """A running broker: where it listens, its process and its working directory."""

    bootstrap: str
    sasl_bootstrap: str
    pid: int
    workdir: str
    #: SASL_SSL (SCRAM over TLS) and the CA that signed the broker's certificate, when
    #: openssl was there to make them.
    ssl_bootstrap: str | None = None
    ca_file: str | None = None

    @property
    def log_file(self) -> Path:
        return Path(self.workdir) / "server.log"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> KafkaServer:
        return cls(**json.loads(text))

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing answers."""
        _signal_group(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a frozen broker go on (SIGCONT)."""
        _signal_group(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and delete its working directory.

        The broker's log is kept beside that directory (``kafka-server.log``) for the
        test's post-mortem; the data is not.
        """
        _signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self.alive() and time.monotonic() < deadline:
            _reap(self.pid)
            time.sleep(0.1)
        if self.alive():
            _signal_group(self.pid, signal.SIGKILL)
        _reap(self.pid)
        with suppress(OSError):
            shutil.move(self.log_file, Path(self.workdir).parent / "kafka-server.log")
        shutil.rmtree(self.workdir, ignore_errors=True)


def _signal_group(pid: int, sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _reap(pid: int) -> None:
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def make_test_ca(workdir: Path) -> Path | None:
    """A CA and a broker certificate for 127.0.0.1 signed by it, made with openssl.

    Writes ``ca.pem`` (what clients trust) and ``keystore.pem`` (the broker's PKCS#8 key and
    certificate, the PEM key store Kafka reads); returns the key store, or None without
    openssl. Test material only: made anew for every broker, valid for two days.
    """
    if shutil.which("openssl") is None:
        return None
    tls = workdir / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    (tls / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    new_key = ("-newkey", "rsa:2048", "-nodes")
    steps = [
        ["req", "-x509", *new_key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
        ["req", *new_key, "-keyout", "broker.key", "-out", "broker.csr"],
        ["x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key"],
        ["pkcs8", "-topk8", "-nocrypt", "-in", "broker.key", "-out", "broker.pk8"],
    ]
    steps[0] += ["-subj", "/CN=ncd-processor test CA"]
    steps[1] += ["-subj", "/CN=127.0.0.1"]
    steps[2] += ["-CAcreateserial", "-out", "broker.pem", "-days", "2", "-extfile", "san.cnf"]
    for step in steps:
        subprocess.run(["openssl", *step], cwd=tls, capture_output=True, check=True, timeout=60)
    keystore = tls / "keystore.pem"
    keystore.write_text((tls / "broker.pk8").read_text() + (tls / "broker.pem").read_text())
    return keystore


def _properties(workdir: Path, ports: dict[str, int], keystore: Path | None) -> str:
    sasl = f"listener.name.sasl_plaintext.{SCRAM_MECHANISM.lower()}"
    advertised = [f"{name}://127.0.0.1:{port}" for name, port in ports.items()]
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{ports['CONTROLLER']}",
        "listeners": ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items()),
        "advertised.listeners": ",".join(a for a in advertised if "CONTROLLER" not in a),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,"
            "CONTROLLER:PLAINTEXT"
        ),
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        f"{sasl}.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        **(
            {}
            if keystore is None
            else {
                f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                ),
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(keystore),
            }
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS;User:ncd-admin",
        "log.dirs": str(workdir / "data"),
        # The worker creates its topics (with the partition counts it needs); a topic
        # created as a side effect of a metadata request would have the wrong count.
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        # Input records up to 16 MiB reach the worker (the hostile-input tests send 10 MiB;
        # the worker's own NCD_MAX_RECORD_BYTES guard is what they check, not the broker's).
        "message.max.bytes": str(16 * 1024 * 1024),
        # One node: internal topics with one replica, and fewer partitions start faster.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "6",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Tests join groups many times: no initial delay.
        "group.initial.rebalance.delay.ms": "0",
        # A SIGKILLed worker's open transaction holds read_committed readers back until the
        # broker aborts it; look for timed-out transactions every second, not every 10 s.
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def start_kafka(workdir: Path, owner_pid: int | None = None) -> KafkaServer:
    """Format storage in ``workdir`` and start a broker; return once it answers requests."""
    classpath = kafka_classpath()
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {"PLAINTEXT": free_port(), "SASL_PLAINTEXT": free_port(), "CONTROLLER": free_port()}
    keystore = make_test_ca(workdir)
    if keystore is not None:
        ports["SASL_SSL"] = free_port()
    config = workdir / "server.properties"
    config.write_text(_properties(workdir, ports, keystore))
    java = ["java", *HEAP_OPTS, f"-Dkafka.log.file={workdir / 'server.log'}"]
    java.append(f"-Dlog4j2.configurationFile={LOG4J_CONFIG}")
    scram = [
        arg
        for user, password in SCRAM_USERS.items()
        for arg in ("--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]")
    ]
    cluster_id = _cluster_id()
    formatted = subprocess.run(
        [
            *java,
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            # One argument: a random id may start with "-", which would read as an option.
            f"--cluster-id={cluster_id}",
            *("-c", str(config)),
            *scram,
        ],
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT_S,
        check=False,
    )
    if formatted.returncode != 0:
        raise KafkaUnavailableError(f"kafka storage format failed: {formatted.stderr[-2000:]}")
    command = [*java, "-cp", classpath, "kafka.Kafka", str(config)]
    owner = owner_pid if owner_pid is not None else os.getpid()
    # The watchdog: stop the broker when the owner is gone (a killed test run).
    script = (
        '"$@" & broker=$!; '
        'trap "kill $broker 2>/dev/null; wait $broker; exit" TERM INT; '
        f"while kill -0 {owner} 2>/dev/null && kill -0 $broker 2>/dev/null; do sleep 1; done; "
        "kill $broker 2>/dev/null; wait $broker"
    )
    out = (workdir / "stdout.log").open("ab")
    proc = subprocess.Popen(
        ["bash", "-c", script, "kafka", *command],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    out.close()
    server = KafkaServer(
        bootstrap=f"127.0.0.1:{ports['PLAINTEXT']}",
        sasl_bootstrap=f"127.0.0.1:{ports['SASL_PLAINTEXT']}",
        pid=proc.pid,
        workdir=str(workdir),
        ssl_bootstrap=None if keystore is None else f"127.0.0.1:{ports['SASL_SSL']}",
        ca_file=None if keystore is None else str(keystore.parent / "ca.pem"),
    )
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def metadata_error(bootstrap: str) -> Exception | None:
    """None when ``bootstrap`` answers a metadata request, else why not.

    A consumer's request: kafka-python's admin client cannot parse Tansu's topic metadata
    (authorized operations) at the versions it asks for, and tests/broker.py asks Tansu too.
    """
    from kafka import KafkaConsumer

    try:
        client = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            client.topics()
        finally:
            client.close()
    except Exception as exc:  # any failure means "not yet"; the caller reports the last one
        return exc
    return None


def _wait_ready(server: KafkaServer) -> None:
    """Until the broker answers metadata requests (or its process has exited)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not server.alive():
            raise KafkaUnavailableError(f"the broker exited: {_tail(server)}")
        last = metadata_error(server.bootstrap)
        if last is None:
            return
        time.sleep(0.3)
    raise KafkaUnavailableError(
        f"broker not ready after {READY_TIMEOUT_S}s: {last!r}; {_tail(server)}"
    )


def _tail(server: KafkaServer) -> str:
    for name in ("stdout.log", "server.log"):
        path = Path(server.workdir) / name
        if path.exists() and path.stat().st_size:
            return path.read_text(errors="replace")[-2000:]
    return "(no broker output)"


if __name__ == "__main__":  # python -m tests.apache_kafka [--assemble]: start, print, wait
    import sys
    import tempfile

    started = time.monotonic()
    kafka_classpath()
    print(f"Apache Kafka {KAFKA_VERSION} in {CACHE} ({time.monotonic() - started:.1f} s)")
    if "--assemble" in sys.argv[1:]:
        sys.exit(0)
    server = start_kafka(Path(tempfile.mkdtemp(prefix="ncd-kafka-")))
    print("PLAINTEXT", server.bootstrap, "SASL_PLAINTEXT", server.sasl_bootstrap)
    print("log:", server.log_file, "- Ctrl-C stops it")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
