"""Security: SASL settings reach the client, refused handshakes fail clearly, no secret leaks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from processor.config import load_settings
from processor.transport.kafka._common import common_options
from tests.apache_kafka import SCRAM_MECHANISM, SCRAM_USERS
from tests.broker import SessionBroker, sasl_bootstrap
from tests.conftest import TRANSPORTS
from tests.integration.harness import WorkerEnv
from tests.reliability.common import Chain, chain, check_exact, session_env

SENTINEL = "sentinel-Pa55-7f1e"
ROOT = Path(__file__).resolve().parents[2]


def _sasl(**extra: str) -> dict[str, str]:
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_username": "alice",
        "sasl_password": SENTINEL,
        **extra,
    }


def test_sasl_settings_reach_the_kafka_client() -> None:
    """Protocol, mechanism, user and password from the settings are the client's options."""
    options = common_options(load_settings(**_sasl()).client())
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_username"] == "alice"
    assert options["sasl_plain_password"] == SENTINEL


def test_settings_never_print_the_password() -> None:
    """repr, str and a JSON dump of the settings, and the client settings, mask the password."""
    settings = load_settings(**_sasl())
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert SENTINEL not in text
    assert SENTINEL not in repr(settings.client())


def _scram_env(bootstrap: str, user: str, password: str) -> dict[str, str]:
    return {
        "NCD_BOOTSTRAP_SERVERS": bootstrap,
        "NCD_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "NCD_SASL_MECHANISM": SCRAM_MECHANISM,
        "NCD_SASL_USERNAME": user,
        "NCD_SASL_PASSWORD": password,
    }


def _two_aggregations_exactly(env: WorkerEnv, steps: Chain, tmp_path: Path) -> None:
    """Run a worker through a baseline and one aggregation; its events must be exactly
    ``diff``'s, and it must stop cleanly."""
    try:
        worker = env.start()
        steps.publish(env, 0)
        steps.publish(env, 1)
        env.wait_drained()
        check_exact(env, steps.expected(1, tmp_path / "expected"))
        assert env.stop(worker) == 0
    finally:
        env.stop_all()


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_worker_with_scram_credentials_processes_an_aggregation(
    kafka_broker: SessionBroker, tmp_path: Path, transport: str
) -> None:
    """On Apache Kafka's SCRAM-SHA-512 listener the worker authenticates and emits exactly
    the events ``diff`` gives, on both transports."""
    env = session_env(kafka_broker, tmp_path)
    env.transport = transport
    env.extra_env.update(
        _scram_env(sasl_bootstrap(kafka_broker), "ncd-admin", SCRAM_USERS["ncd-admin"])
    )
    _two_aggregations_exactly(env, chain(90, 2, 73), tmp_path)
    assert SCRAM_USERS["ncd-admin"] not in env.log_text()


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_worker_with_scram_over_tls_processes_an_aggregation(
    kafka_broker: SessionBroker, tmp_path: Path, transport: str
) -> None:
    """SASL_SSL: SCRAM over TLS, the broker's certificate checked against the CA the test
    made (NCD_SSL_CAFILE); the worker emits exactly the events ``diff`` gives."""
    if kafka_broker.ssl_bootstrap is None or kafka_broker.ca_file is None:
        if kafka_broker.kind == "tansu":
            pytest.skip("no TLS listener on the Tansu fallback (no JDK): TLS is not checked")
        pytest.fail("no SASL_SSL listener: the suite's Apache Kafka makes one with openssl")
    env = session_env(kafka_broker, tmp_path)
    env.transport = transport
    env.extra_env.update(
        _scram_env(kafka_broker.ssl_bootstrap, "ncd-admin", SCRAM_USERS["ncd-admin"])
    )
    env.extra_env["NCD_SECURITY_PROTOCOL"] = "SASL_SSL"
    env.extra_env["NCD_SSL_CAFILE"] = kafka_broker.ca_file
    _two_aggregations_exactly(env, chain(60, 2, 79), tmp_path)


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_password_fails_at_start_clearly_without_the_secret(
    kafka_broker: SessionBroker, tmp_path: Path, transport: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong SCRAM password: `run` exits 2 with one line naming the settings to check,
    no traceback, and the password nowhere in its output (both transports)."""
    env = {
        **os.environ,
        **_scram_env(sasl_bootstrap(kafka_broker), "ncd-worker", SENTINEL),
        "NCD_TRANSPORT": transport,
        "NCD_STATE_DIR": str(tmp_path / "state"),
        "NCD_HTTP_PORT": "0",
        "NCD_LOG_FORMAT": "json",
        "NCD_LOG_LEVEL": "debug",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "processor.cli", "run"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=180,
        check=False,
    )
    took = time.monotonic() - started
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert done.returncode == 2, output[-2000:]
    assert "Traceback" not in output
    assert SENTINEL not in output
    last = done.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("ncd-processor: "), last
    assert "NCD_SASL_" in last, last
    with capsys.disabled():
        print(f"\n[security] wrong SCRAM password on {transport}: exit 2 after {took:.1f} s")
