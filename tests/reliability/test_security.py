"""Security: SASL settings reach the client, refused handshakes fail clearly, no secret leaks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from processor.config import load_settings
from processor.embedded import EmbeddedBroker
from processor.kafka._common import common_options

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


@pytest.mark.broker
@pytest.mark.slow
def test_wrong_credentials_fail_at_start_clearly_without_the_secret(tmp_path: Path) -> None:
    """`run` on an authenticating Tansu with unknown credentials exits 2: one line, no secret."""
    with EmbeddedBroker(["--authentication"]) as broker:
        env = {
            **os.environ,
            "NCD_BOOTSTRAP_SERVERS": broker.bootstrap,
            "NCD_STATE_DIR": str(tmp_path / "state"),
            "NCD_HTTP_PORT": "0",
            "NCD_LOG_FORMAT": "json",
            "NCD_LOG_LEVEL": "debug",
            **{f"NCD_{k.upper()}": v for k, v in _sasl().items()},
        }
        done = subprocess.run(
            [sys.executable, "-m", "processor.cli", "run"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            timeout=180,
            check=False,
        )
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert done.returncode == 2, output[-2000:]
    assert "Traceback" not in output
    assert SENTINEL not in output
    last = done.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("ncd-processor: "), last
    # kafka-python reports a refused SASL handshake only as a time-out: the line says what
    # to check instead of leaving the operator with the exception class.
    assert "NCD_SASL_" in last and "NCD_SECURITY_PROTOCOL" in last, last
