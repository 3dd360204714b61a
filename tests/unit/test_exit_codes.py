"""Exit codes: 2 for bad configuration or input, 3 for broker or state failures."""

from __future__ import annotations

import pytest

from processor import cli
from processor.errors import (
    BrokerAccessError,
    ConfigError,
    InputError,
    ProcessorError,
    StateCorruptError,
    StateError,
    TransportError,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("NCD_PARTITIONS: bad"), 2),
        (InputError("bad record"), 2),
        (BrokerAccessError("admin start failed: the broker refused", retriable=False), 2),
        (TransportError("commit failed: KafkaError", retriable=True), 3),
        (TransportError("send failed: ProducerFenced", retriable=False), 3),
        (StateError("store failed"), 3),
        (StateCorruptError("store corrupt"), 3),
    ],
)
def test_each_error_exits_with_its_documented_code(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: ProcessorError,
    code: int,
) -> None:
    """A command ending with ``error`` exits with ``code`` and one line naming it."""

    def failing(_args: object) -> int:
        raise error

    monkeypatch.setattr(cli, "_cmd_demo", failing)
    assert cli.main(["demo"]) == code
    assert capsys.readouterr().err == f"ncd-processor: {error}\n"
