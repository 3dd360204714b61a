"""The `ncd-processor diff` command: output, ordering, determinism and bad input."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from processor.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _args(d: Path, provisioning: bool = True) -> list[str]:
    args = [
        "diff",
        "--source",
        str(d / "source.json"),
        str(d / "previous.jsonl"),
        str(d / "current.jsonl"),
        "--entitlements",
        str(d / "catalog.jsonl"),
    ]
    return [*args, "--provisioning", str(d / "provisioning.jsonl")] if provisioning else args


def _copy_examples(tmp_path: Path) -> Path:
    target = tmp_path / "ex"
    shutil.copytree(EXAMPLES, target)
    return target


def test_diff_prints_sorted_events_and_exits_0(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """The example gives five events sorted by nativeIdentity then eventType, exit 0."""
    assert main(_args(EXAMPLES)) == 0
    out = capsysbinary.readouterr().out
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 5
    keys = [(e["account"]["nativeIdentity"], e["eventType"]) for e in events]
    assert keys == sorted(keys)


def test_diff_output_is_byte_identical_when_lines_are_permuted(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Shuffling the lines of every input file leaves the output byte-identical."""
    assert main(_args(EXAMPLES)) == 0
    reference = capsysbinary.readouterr().out
    rng = random.Random(5)
    for _ in range(3):
        d = _copy_examples(tmp_path / str(rng.random()))
        for name in ("previous.jsonl", "current.jsonl", "catalog.jsonl", "provisioning.jsonl"):
            lines = (d / name).read_text().splitlines()
            rng.shuffle(lines)
            (d / name).write_text("\n".join(lines) + "\n")
        assert main(_args(d)) == 0
        assert capsysbinary.readouterr().out == reference


def test_diff_without_events_exits_0_with_empty_output(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    """Identical snapshots give no output and exit 0."""
    prev = str(EXAMPLES / "previous.jsonl")
    assert main(["diff", "--source", str(EXAMPLES / "source.json"), prev, prev]) == 0
    assert capsysbinary.readouterr().out == b""


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "invalid JSON"),
        ('{"attributes": {}}', "nativeIdentity"),
        ('{"nativeIdentity": "x", "attributes": {"a": {"nested": 1}}}', "attributes.a"),
        ('{"nativeIdentity": "", "attributes": {}}', "nativeIdentity"),
        ("[1, 2]", "not a valid account record"),
    ],
)
def test_bad_line_exits_2_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, reason: str
) -> None:
    """A bad record exits 2 with FILE:LINE: reason on stderr and writes no events."""
    d = _copy_examples(tmp_path)
    lines = (d / "current.jsonl").read_text().splitlines()
    lines.insert(2, line)
    (d / "current.jsonl").write_text("\n".join(lines) + "\n")
    assert main(_args(d)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.startswith(f"{d / 'current.jsonl'}:3: ")
    assert reason in err
    assert len(err.splitlines()) == 1


def test_reason_never_quotes_attribute_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rejected record's value does not appear in the error message (personal data)."""
    d = _copy_examples(tmp_path)
    sentinel = "SENTINEL-Pii-4711"
    (d / "previous.jsonl").write_text(
        json.dumps({"nativeIdentity": "x", "attributes": {"title": {"secret": sentinel}}}) + "\n"
    )
    assert main(_args(d)) == 2
    assert sentinel not in capsys.readouterr().err


def test_duplicate_account_names_the_second_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A nativeIdentity repeated within a snapshot is bad input at the repeating line."""
    d = _copy_examples(tmp_path)
    lines = (d / "previous.jsonl").read_text().splitlines()
    (d / "previous.jsonl").write_text("\n".join([*lines, lines[0]]) + "\n")
    assert main(_args(d)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{d / 'previous.jsonl'}:{len(lines) + 1}: duplicate")


def test_unreadable_file_and_bad_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file and an invalid source descriptor both exit 2 with FILE:LINE."""
    d = _copy_examples(tmp_path)
    (d / "catalog.jsonl").unlink()
    assert main(_args(d)) == 2
    assert capsys.readouterr().err.startswith(f"{d / 'catalog.jsonl'}:1: cannot read file")
    d2 = _copy_examples(tmp_path / "two")
    (d2 / "source.json").write_text('{"id": "s",\n "name": 5}')
    assert main(_args(d2)) == 2
    assert capsys.readouterr().err.startswith(f"{d2 / 'source.json'}:1: not a valid source")


def test_console_script_runs_as_a_process() -> None:
    """`python -m processor.cli diff` works as a process, with no traceback on bad input."""
    ok = subprocess.run(
        [sys.executable, "-m", "processor.cli", *_args(EXAMPLES)], capture_output=True, cwd=ROOT
    )
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == 5
    bad = subprocess.run(
        [sys.executable, "-m", "processor.cli", "diff", "--source", "/nonexistent.json", "a", "b"],
        capture_output=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2
    assert b"Traceback" not in bad.stderr


# ------------------------------------------------- what real directories send (issue 12)


def test_diff_warns_in_one_line_when_the_delete_guard_holds_deletions_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the threshold at 10 % the example's deletion is held back: exit 0, one stderr
    line naming the source, the deletions, the previous count and the threshold."""
    d = _copy_examples(tmp_path)
    source = json.loads((d / "source.json").read_text())
    source["deleteThreshold"] = 10
    (d / "source.json").write_text(json.dumps(source))
    assert main(_args(d)) == 0
    captured = capsys.readouterr()
    assert "ACCOUNT_DELETED" not in captured.out
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ncd-processor: warning: delete guard: ")
    for part in (source["id"], source["name"], "1 deletions", "10%", "6 previous accounts"):
        assert part in lines[0]


def test_diff_says_nothing_on_stderr_when_deletions_pass(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Under the threshold the deletion is reported and standard error stays empty."""
    assert main(_args(EXAMPLES)) == 0
    captured = capsys.readouterr()
    assert "ACCOUNT_DELETED" in captured.out
    assert captured.err == ""


@pytest.mark.parametrize("order", ["as written", "reversed"])
def test_duplicate_catalog_entries_exit_2_at_the_second_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], order: str
) -> None:
    """Two entries for one (attribute, value), in either order, are bad input at the second
    line (naming the first), never resolved by line order; no events are written."""
    d = _copy_examples(tmp_path)
    lines = (d / "catalog.jsonl").read_text().splitlines()
    twin = {**json.loads(lines[0]), "id": "another", "name": "Another name"}
    entries = [lines[0], "", json.dumps(twin), *lines[1:]]
    if order == "reversed":
        entries[0], entries[2] = entries[2], entries[0]
    (d / "catalog.jsonl").write_text("\n".join(entries) + "\n")
    assert main(_args(d)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"{d / 'catalog.jsonl'}:3: duplicate catalog entry: same attribute and value as line 1"
        " (R13)\n"
    )


def test_duplicate_catalog_entries_in_nfd_and_nfc_are_one_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A catalog naming one value in NFC and again in NFD names it twice."""
    d = _copy_examples(tmp_path)
    entry = {"attribute": "memberOf", "value": "CN=Zo\u00eb", "id": "1"}
    twin = {"attribute": "memberOf", "value": "CN=Zoe\u0308", "id": "2"}
    (d / "catalog.jsonl").write_text(json.dumps(entry) + "\n" + json.dumps(twin) + "\n")
    assert main(_args(d)) == 2
    assert capsys.readouterr().err.startswith(f"{d / 'catalog.jsonl'}:2: duplicate catalog")


def test_duplicate_account_names_the_line_of_the_first_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With blank lines before it, the error names both lines, not record positions."""
    d = _copy_examples(tmp_path)
    lines = (d / "current.jsonl").read_text().splitlines()
    (d / "current.jsonl").write_text("\n\n" + "\n".join([*lines, lines[1]]) + "\n")
    assert main(_args(d)) == 2
    err = capsys.readouterr().err
    assert err == (
        f"{d / 'current.jsonl'}:{len(lines) + 3}: duplicate uuid in the current "
        "snapshot (first at line 4)\n"
    )


def test_duplicate_guid_in_another_spelling_is_a_duplicate_account(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two accounts whose uuids are one GUID spelled differently are the same account."""
    d = _copy_examples(tmp_path)
    lines = (d / "current.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    twin = {**first, "nativeIdentity": "CN=Twin", "uuid": first["uuid"].upper().strip("{}")}
    (d / "current.jsonl").write_text("\n".join([*lines, json.dumps(twin)]) + "\n")
    assert main(_args(d)) == 2
    assert "duplicate uuid in the current snapshot (first at line 1)" in capsys.readouterr().err


def test_naive_completed_at_is_bad_input_for_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A completedAt without an offset exits 2 at its line, as the worker dead-letters it."""
    d = _copy_examples(tmp_path)
    record = json.loads((d / "provisioning.jsonl").read_text().splitlines()[0])
    record["completedAt"] = "2026-11-22T08:00:00"
    (d / "provisioning.jsonl").write_text(json.dumps(record) + "\n")
    assert main(_args(d)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{d / 'provisioning.jsonl'}:1: not a valid provisioning record: ")
    assert "completedAt" in err and "timezone" in err
