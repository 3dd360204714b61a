"""`ncd-processor revert`: remediation commands for a file of events, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from processor.cli import main
from processor.core import EntitlementCatalog, decide_event
from tests.helpers import event_model
from tests.unit.conftest import make_account, make_policy, make_source

SENTINEL = "SENTINEL-secret-value-42"


def _events(tmp_path: Path) -> Path:
    """Two UPDATED events (Bob's and Ann's), written Bob first."""
    policy = make_policy()
    lines = []
    for name, old, new in (("CN=Bob", "x", "y"), ("CN=Ann", "a", "b")):
        event = decide_event(
            policy,
            make_account(name, {"title": old, "memberOf": ["g1"]}),
            make_account(name, {"title": new, "memberOf": ["g1", "g2"]}),
            EntitlementCatalog(),
        )
        assert event is not None
        lines.append(json.dumps(event_model(event).model_dump(mode="json")))
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_revert_writes_one_sorted_command_per_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each event gives its command, sorted by nativeIdentity, reverting every change type."""
    assert main(["revert", str(_events(tmp_path))]) == 0
    commands = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [c["input"]["key"]["simple"]["id"] for c in commands] == ["CN=Ann", "CN=Bob"]
    assert commands[0]["input"]["changes"] == [
        {"op": "Remove", "attribute": "memberOf", "value": "g2"},
        {"op": "Set", "attribute": "title", "value": "a"},
    ]


def test_revert_follows_the_source_remediation_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --source, only the change types of its remediation.revert are reverted."""
    source = make_source(remediation={"mode": "propose", "revert": ["ATTRIBUTES_CHANGED"]})
    path = tmp_path / "source.json"
    path.write_text(source.model_dump_json())
    assert main(["revert", str(_events(tmp_path)), "--source", str(path)]) == 0
    commands = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [[c["op"] for c in cmd["input"]["changes"]] for cmd in commands] == [["Set"], ["Set"]]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (f'{{"eventType": "{SENTINEL}"}}', "eventType must be"),
        (f'["{SENTINEL}"]', "must be a JSON object"),
        (f'{{"eventType": "ACCOUNT_UPDATED", "id": "{SENTINEL}"}}', "event"),
        (f'{{"eventType": "{SENTINEL}"', "invalid JSON"),
    ],
)
def test_bad_input_exits_2_with_file_and_line_and_no_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, reason: str
) -> None:
    """A bad line exits 2 naming FILE:LINE and the problem, never quoting the value."""
    path = tmp_path / "events.jsonl"
    path.write_text("\n" + line + "\n")
    assert main(["revert", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"{path}:2: ")
    assert reason in captured.err
    assert SENTINEL not in captured.err
