"""Secrets: password files, an owner-only env file, no SASL PLAIN in clear, flags that warn."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.cli import main
from processor.config import load_settings
from processor.errors import ConfigError
from processor.transport.confluent._common import common_options as confluent_options
from processor.transport.kafka._common import common_options as kafka_options

SENTINEL = "pw-SENTINEL-9c1e"


def secret_file(tmp_path: Path, text: str, name: str = "password") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_the_sasl_password_can_come_from_a_file(tmp_path: Path) -> None:
    """NCD_SASL_PASSWORD_FILE's content (without its final newline) reaches both clients."""
    path = secret_file(tmp_path, SENTINEL + "\n")
    settings = load_settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="worker",
        sasl_password_file=str(path),
    )
    assert kafka_options(settings.client())["sasl_plain_password"] == SENTINEL
    assert confluent_options(settings.client())["sasl.password"] == SENTINEL
    assert SENTINEL not in repr(settings) and SENTINEL not in repr(settings.client())


def test_the_tls_key_password_has_a_setting_and_a_file(tmp_path: Path) -> None:
    """NCD_SSL_PASSWORD(_FILE) reaches kafka-python's ssl_password and ssl.key.password."""
    from_value = load_settings(security_protocol="SSL", ssl_password=SENTINEL)
    from_file = load_settings(
        security_protocol="SSL", ssl_password_file=str(secret_file(tmp_path, SENTINEL))
    )
    for settings in (from_value, from_file):
        assert kafka_options(settings.client())["ssl_password"] == SENTINEL
        assert confluent_options(settings.client())["ssl.key.password"] == SENTINEL
        assert SENTINEL not in repr(settings.client())


def test_a_password_and_its_file_together_are_refused(tmp_path: Path) -> None:
    """Given both, the worker does not guess which one is meant."""
    with pytest.raises(ConfigError, match="NCD_SASL_PASSWORD and NCD_SASL_PASSWORD_FILE"):
        load_settings(sasl_password="x", sasl_password_file=str(secret_file(tmp_path, "y")))


def test_an_unreadable_password_file_names_the_setting(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming NCD_SSL_PASSWORD_FILE and why."""
    with pytest.raises(ConfigError, match=r"NCD_SSL_PASSWORD_FILE: cannot read .*No such file"):
        load_settings(ssl_password_file=str(tmp_path / "missing"))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_an_env_file_others_may_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    """NCD_ENV_FILE readable by group or others is refused, saying why and how to fix it."""
    path = secret_file(tmp_path, f"NCD_SASL_PASSWORD={SENTINEL}\n", "env")
    path.chmod(mode)
    monkeypatch.setenv("NCD_ENV_FILE", str(path))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert f"mode {mode:04o}" in str(caught.value) and "chmod 600" in str(caught.value)
    assert SENTINEL not in str(caught.value)


def test_an_owner_only_env_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0600 env file is accepted and its settings apply."""
    path = secret_file(tmp_path, "NCD_GROUP_ID=from-env-file\n", "env")
    monkeypatch.setenv("NCD_ENV_FILE", str(path))
    assert load_settings().group_id == "from-env-file"


def test_sasl_plain_without_tls_is_refused_unless_allowed() -> None:
    """SASL_PLAINTEXT with PLAIN needs NCD_ALLOW_PLAINTEXT_SASL; SCRAM or SASL_SSL do not."""
    plain = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}
    with pytest.raises(ConfigError, match=r"in clear.*NCD_ALLOW_PLAINTEXT_SASL"):
        load_settings(**plain)
    assert load_settings(**plain, allow_plaintext_sasl="true").allow_plaintext_sasl
    load_settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512")
    load_settings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN")


@pytest.mark.parametrize("flag", ["--sasl-password", "--ssl-password"])
def test_a_password_flag_warns_that_it_shows_in_process_listings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    """The flag still works, but says once on stderr to use the _FILE setting instead."""
    missing = tmp_path / "missing.json"
    assert main(["publish", "--source", str(missing), flag, SENTINEL]) == 2
    err = capsys.readouterr().err
    assert f"{flag} shows in process listings" in err and "_PASSWORD_FILE" in err
    assert SENTINEL not in err
