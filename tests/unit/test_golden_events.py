"""Golden event output: the bytes and ids ``diff`` and ``replay`` write for a fixed set of
awkward accounts, pinned so that no change to how events are built alters them unnoticed.

``tests/unit/golden/`` holds the inputs (a source, a catalog with and without owners, two
snapshots with non-ASCII text in NFC and NFD, integers beyond 64 bits, floats, booleans next
to 0 and 1, ``null`` values, lists of group names in several spellings, identities with
managers, creations, deletions, and two provisioning records) and the events that
the code before events were built as plain data wrote for them, case-sensitive and
case-insensitive. When an intended change alters the output, write the expected files anew
with the same ``diff`` and ``replay`` runs as these tests, and say why in the commit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from processor.cli import main

GOLDEN = Path(__file__).parent / "golden"


def _source(tmp_path: Path, case_insensitive: bool) -> Path:
    """The golden source, case-sensitive or not."""
    source = json.loads((GOLDEN / "source.json").read_text(encoding="utf-8"))
    source["caseInsensitive"] = case_insensitive
    path = tmp_path / "source.json"
    path.write_text(json.dumps(source), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("case_insensitive", "expected"),
    [(False, "diff-events.jsonl"), (True, "diff-events-case-insensitive.jsonl")],
)
def test_diff_writes_the_golden_events_byte_for_byte(
    tmp_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
    case_insensitive: bool,
    expected: str,
) -> None:
    """``diff`` of the golden snapshots writes exactly the golden events (bytes and ids)."""
    args = [
        "diff",
        "--source",
        str(_source(tmp_path, case_insensitive)),
        "--entitlements",
        str(GOLDEN / "catalog.jsonl"),
        "--provisioning",
        str(GOLDEN / "provisioning.jsonl"),
        str(GOLDEN / "previous.jsonl"),
        str(GOLDEN / "current.jsonl"),
    ]
    assert main(args) == 0
    assert capsysbinary.readouterr().out == (GOLDEN / expected).read_bytes()


@pytest.mark.parametrize(
    ("case_insensitive", "expected"),
    [(False, "replay-events.jsonl"), (True, "replay-events-case-insensitive.jsonl")],
)
def test_replay_writes_the_golden_events_byte_for_byte(
    tmp_path: Path, case_insensitive: bool, expected: str
) -> None:
    """``replay`` of the golden snapshots (the worker's path: the first is the baseline, the
    provisioning records fall between them) writes exactly the golden events."""
    directory = tmp_path / "in"
    (directory / "aggregations").mkdir(parents=True)
    shutil.copy(_source(tmp_path, case_insensitive), directory / "source.json")
    for name in ("catalog.jsonl", "provisioning.jsonl"):
        shutil.copy(GOLDEN / name, directory / name)
    aggregations = directory / "aggregations"
    shutil.copy(GOLDEN / "previous.jsonl", aggregations / "20261120T120000Z-previous.jsonl")
    shutil.copy(GOLDEN / "current.jsonl", aggregations / "20261122T120000Z-current.jsonl")
    out = tmp_path / "events.jsonl"
    assert main(["replay", str(directory), "--output", str(out), "--quiet"]) == 0
    assert out.read_bytes() == (GOLDEN / expected).read_bytes()
