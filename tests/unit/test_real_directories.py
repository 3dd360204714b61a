"""What real directories send, at the edges: the codec, the files, the worker's keys and logs.

The value rules themselves (big integers, dates, NFC, JSON types, GUIDs, uniqueId) are
checked on both paths in ``test_parity``; here are the parts only one side has.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from processor import codec
from processor.cli import main
from processor.core import uuid_key
from processor.models import Account
from processor.publisher import record_key
from processor.state.overlay import BatchOverlay
from processor.worker.partition import Verdict
from processor.worker.state import StoredAccount, digest, k_account, k_index
from tests.unit.conftest import SOURCE_ID, make_source
from tests.unit.memory_worker import MemoryWorker
from tests.unit.test_parity import WorkerPath

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _examples(tmp_path: Path) -> Path:
    target = tmp_path / "ex"
    shutil.copytree(EXAMPLES, target)
    return target


def _diff_args(d: Path) -> list[str]:
    return [
        "diff",
        "--source",
        str(d / "source.json"),
        str(d / "previous.jsonl"),
        str(d / "current.jsonl"),
        "--entitlements",
        str(d / "catalog.jsonl"),
        "--provisioning",
        str(d / "provisioning.jsonl"),
    ]


# ----------------------------------------------------------------------------- codec


def test_codec_keeps_integers_beyond_64_bits_both_ways() -> None:
    """Integers outside 64 bits decode as exact ints and encode digit for digit."""
    text = b'{"a":18446744073709551617,"b":[-9223372036854775809,1.5],"c":"12345678901234567890"}'
    obj = codec.loads(text)
    assert obj == {
        "a": 2**64 + 1,
        "b": [-(2**63) - 1, 1.5],
        "c": "12345678901234567890",
    }
    assert codec.dumps(obj) == text
    assert codec.dumps_canonical({"b": 2**64, "a": 1}) == b'{"a":1,"b":18446744073709551616}'


def test_codec_still_refuses_what_orjson_refuses_on_the_exact_path() -> None:
    """Text with a long digit run is still checked by orjson first (NaN is refused)."""
    with pytest.raises(Exception, match="invalid JSON"):
        codec.loads(b'{"a": 18446744073709551617, "b": NaN}')


# ----------------------------------------------------------------------------- diff CLI


def test_diff_warns_in_one_line_when_the_delete_guard_holds_deletions_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the threshold at 10 % the example's deletion is held back: exit 0, one stderr
    line naming the source, the deletions, the previous count and the threshold."""
    d = _examples(tmp_path)
    source = json.loads((d / "source.json").read_text())
    source["deleteThreshold"] = 10
    (d / "source.json").write_text(json.dumps(source))
    assert main(_diff_args(d)) == 0
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
    assert main(_diff_args(EXAMPLES)) == 0
    captured = capsys.readouterr()
    assert "ACCOUNT_DELETED" in captured.out
    assert captured.err == ""


@pytest.mark.parametrize("order", ["as written", "reversed"])
def test_duplicate_catalog_entries_exit_2_at_the_second_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], order: str
) -> None:
    """Two entries for one (attribute, value), in either order, are bad input at the second
    line (naming the first), never resolved by line order; no events are written."""
    d = _examples(tmp_path)
    lines = (d / "catalog.jsonl").read_text().splitlines()
    twin = {**json.loads(lines[0]), "id": "another", "name": "Another name"}
    entries = [lines[0], "", json.dumps(twin), *lines[1:]]
    if order == "reversed":
        entries[0], entries[2] = entries[2], entries[0]
    (d / "catalog.jsonl").write_text("\n".join(entries) + "\n")
    assert main(_diff_args(d)) == 2
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
    d = _examples(tmp_path)
    entry = {"attribute": "memberOf", "value": "CN=Zo\u00eb", "id": "1"}
    twin = {"attribute": "memberOf", "value": "CN=Zoe\u0308", "id": "2"}
    (d / "catalog.jsonl").write_text(json.dumps(entry) + "\n" + json.dumps(twin) + "\n")
    assert main(_diff_args(d)) == 2
    assert capsys.readouterr().err.startswith(f"{d / 'catalog.jsonl'}:2: duplicate catalog")


def test_duplicate_account_names_the_line_of_the_first_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With blank lines before it, the error names both lines, not record positions."""
    d = _examples(tmp_path)
    lines = (d / "current.jsonl").read_text().splitlines()
    (d / "current.jsonl").write_text("\n\n" + "\n".join([*lines, lines[1]]) + "\n")
    assert main(_diff_args(d)) == 2
    err = capsys.readouterr().err
    assert err == (
        f"{d / 'current.jsonl'}:{len(lines) + 3}: duplicate uuid in the current "
        "snapshot (first at line 4)\n"
    )


def test_duplicate_guid_in_another_spelling_is_a_duplicate_account(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two accounts whose uuids are one GUID spelled differently are the same account."""
    d = _examples(tmp_path)
    lines = (d / "current.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    twin = {**first, "nativeIdentity": "CN=Twin", "uuid": first["uuid"].upper().strip("{}")}
    (d / "current.jsonl").write_text("\n".join([*lines, json.dumps(twin)]) + "\n")
    assert main(_diff_args(d)) == 2
    assert "duplicate uuid in the current snapshot (first at line 1)" in capsys.readouterr().err


def test_naive_completed_at_is_bad_input_for_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A completedAt without an offset exits 2 at its line, as the worker dead-letters it."""
    d = _examples(tmp_path)
    record = json.loads((d / "provisioning.jsonl").read_text().splitlines()[0])
    record["completedAt"] = "2026-11-22T08:00:00"
    (d / "provisioning.jsonl").write_text(json.dumps(record) + "\n")
    assert main(_diff_args(d)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{d / 'provisioning.jsonl'}:1: not a valid provisioning record: ")
    assert "completedAt" in err and "timezone" in err


# ----------------------------------------------------------------------------- worker


def _ann(uuid: str, title: str) -> dict[str, Any]:
    return {"nativeIdentity": "CN=Ann", "uuid": uuid, "attributes": {"title": title}}


def test_naive_completed_at_is_dead_lettered_by_the_worker_with_the_same_reason() -> None:
    """The worker's reason for a naive completedAt is the one diff prints after FILE:LINE."""
    worker = WorkerPath(make_source(), [])
    record = {
        "sourceId": SOURCE_ID,
        "input": {"key": {"simple": {"id": "CN=Ann"}}, "changes": []},
        "completedAt": "2026-11-22T08:00:00",
    }
    (outcome,) = worker.feed([(codec.dumps(record), True)])
    assert outcome.verdict is Verdict.DEAD_LETTERED
    assert outcome.reason is not None
    assert outcome.reason.startswith("not a valid provisioning record: completedAt: ")


def test_seven_digit_timestamps_are_accepted_everywhere() -> None:
    """startedAt and completedAt with 7 fractional digits are valid instants."""
    worker = WorkerPath(make_source(), [])
    outcomes = worker.aggregation("agg-1", "2026-01-01T00:00:00.1234567Z", [_ann("u", "a")])
    assert [o.verdict for o in outcomes] == [Verdict.MARKER, Verdict.STORED, Verdict.MARKER]


def test_worker_state_written_under_an_old_guid_spelling_is_re_keyed_not_recreated() -> None:
    """An account stored under its raw braced upper-case uuid (before R1's GUID rule) is
    found again by the same GUID in another spelling: an update, no create or delete."""
    worker = WorkerPath(make_source(), [])
    worker.aggregation("agg-1", "2026-01-01T00:00:00Z", [])
    old_key = "u:{08EE6C6D-7D02-4978-9417-D92BA6A5ED50}"
    stored = _ann("{08EE6C6D-7D02-4978-9417-D92BA6A5ED50}", "a")
    value = StoredAccount(
        0, digest(Account.model_validate(stored).model_dump(mode="json")), codec.dumps(stored)
    )
    overlay = BatchOverlay(worker.store)
    overlay.put(k_account(SOURCE_ID, old_key), value.encode())
    overlay.put(k_index(SOURCE_ID, "CN=Ann"), old_key.encode())
    worker.store.apply(overlay.writes, None)
    outcomes = worker.aggregation(
        "agg-2", "2026-01-02T00:00:00Z", [_ann("08ee6c6d-7d02-4978-9417-d92ba6a5ed50", "b")]
    )
    events = [e for o in outcomes for e in o.events]
    assert [e.eventType.value for e in events] == ["ACCOUNT_UPDATED"]
    new_key = "u:{08ee6c6d-7d02-4978-9417-d92ba6a5ed50}"
    assert worker.store.get(k_account(SOURCE_ID, new_key)) is not None
    assert worker.store.get(k_account(SOURCE_ID, old_key)) is None


def test_record_keys_spell_guids_as_r1_matches_them() -> None:
    """A GUID's spellings give one record key (one partition); other uuids stay exact."""
    spellings = ["{08EE6C6D-7D02-4978-9417-D92BA6A5ED50}", "08ee6c6d-7d02-4978-9417-d92ba6a5ed50"]
    assert {record_key("s", u, "CN=Ann") for u in spellings} == {
        b"s/{08ee6c6d-7d02-4978-9417-d92ba6a5ed50}"
    }
    assert record_key("s", "AbC=", "CN=Ann") != record_key("s", "abc=", "CN=Ann")
    assert uuid_key("{08ee6c6d-7d02-4978-9417-d92ba6a5ed50") == (
        "{08ee6c6d-7d02-4978-9417-d92ba6a5ed50"
    )


def test_worker_warning_and_summary_name_the_delete_guard_counts(tmp_path: Path) -> None:
    """The worker logs the held-back deletions with the previous count and the threshold,
    and its summary counts them, as diff's warning does."""
    worker = MemoryWorker(tmp_path)
    source = make_source(delete_threshold=10)
    accounts = [
        Account.model_validate({"nativeIdentity": f"CN=U{i}", "attributes": {"title": "t"}})
        for i in range(4)
    ]
    worker.publish(source, accounts, started_at="2026-01-01T00:00:00Z")
    worker.publish(source, accounts[:2], started_at="2026-01-02T00:00:00Z")
    runner = worker.runner()
    with capture_logs() as logs:
        worker.run(runner)
    (tripped,) = [e for e in logs if e["event"] == "delete_guard_tripped"]
    assert (tripped["source_id"], tripped["suppressed"]) == (SOURCE_ID, 2)
    assert (tripped["previous_accounts"], tripped["threshold_percent"]) == (4, 10)
    summary = runner.summary()
    assert (summary["delete_guard_trips"], summary["deletes_suppressed"]) == (1, 2)
