"""``ncd-processor replay DIR``: the worker pipeline over local snapshot files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import processor.worker.account_flow
from processor.cli import main
from processor.diffing import run_diff
from processor.files import read_catalog
from processor.models import Account, ProvisioningRecord, SourceDescriptor
from processor.replay import _snapshot_files
from tests.unit.memory_worker import MemoryWorker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PREVIOUS = "20261121T000000Z-previous.jsonl"  # before the provisioning record's completedAt
CURRENT = "20261122T000000Z-current.jsonl"  # after it


def _make_dir(root: Path, *snapshots: tuple[str, str]) -> Path:
    """A replay DIR holding the examples' source, catalog, provisioning and given snapshots."""
    directory = root / "in"
    (directory / "aggregations").mkdir(parents=True, exist_ok=True)
    for name in ("source.json", "catalog.jsonl", "provisioning.jsonl"):
        shutil.copy(EXAMPLES / name, directory / name)
    for target, example in snapshots:
        shutil.copy(EXAMPLES / example, directory / "aggregations" / target)
    return directory


def _replay(directory: Path, out: Path, *extra: str) -> int:
    return main(["replay", str(directory), "--output", str(out), "--quiet", *extra])


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _without_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events minus the id (its context is the aggregation id in the worker, empty in diff)."""
    trimmed = [{k: v for k, v in e.items() if k != "id"} for e in events]
    return sorted(trimmed, key=lambda e: (e["account"]["nativeIdentity"], e["eventType"]))


def _diff_events() -> list[dict[str, Any]]:
    out = run_diff(
        source_path=EXAMPLES / "source.json",
        previous_path=EXAMPLES / "previous.jsonl",
        current_path=EXAMPLES / "current.jsonl",
        catalog_path=EXAMPLES / "catalog.jsonl",
        provisioning_path=EXAMPLES / "provisioning.jsonl",
    )
    return [json.loads(line) for line in out.decode().splitlines()]


def test_replay_of_the_examples_equals_diff(tmp_path: Path) -> None:
    """Replaying previous then current gives the events of `diff` on the same files."""
    directory = _make_dir(tmp_path, (PREVIOUS, "previous.jsonl"), (CURRENT, "current.jsonl"))
    out = tmp_path / "events.jsonl"
    assert _replay(directory, out) == 0
    replayed = _events(out)
    expected = _diff_events()
    assert len(expected) == 5
    assert _without_ids(replayed) == _without_ids(expected)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _worker_events(tmp_path: Path) -> list[dict[str, Any]]:
    """The examples through the streaming worker (memory transport): the aggregations
    ``replay`` makes of PREVIOUS and CURRENT, the provisioning record between them."""
    worker = MemoryWorker(tmp_path / "worker")
    source = SourceDescriptor.model_validate_json((EXAMPLES / "source.json").read_bytes())
    publisher = worker.publisher()
    publisher.publish_source(source)
    publisher.publish_catalog(source.id, read_catalog(EXAMPLES / "catalog.jsonl", source.id))
    for name, example, started in (
        (PREVIOUS, "previous.jsonl", "2026-11-21T00:00:00.000Z"),
        (CURRENT, "current.jsonl", "2026-11-22T00:00:00.000Z"),
    ):
        if name == CURRENT:
            provisioning = _lines(EXAMPLES / "provisioning.jsonl")
            publisher.publish_provisioning(
                ProvisioningRecord.model_validate(r) for r in provisioning
            )
            worker.run(worker.runner())
        accounts = [Account.model_validate(a) for a in _lines(EXAMPLES / example)]
        publisher.publish_aggregation(
            source.id, accounts, aggregation_id=Path(name).stem, started_at=started
        )
        worker.run(worker.runner())
    return [json.loads(r.value or b"") for r in worker.broker.records(worker.settings.topic_events)]


def test_replay_and_the_worker_emit_the_same_events(tmp_path: Path) -> None:
    """The same records give the same events, ids included, through replay and the worker."""
    directory = _make_dir(tmp_path, (PREVIOUS, "previous.jsonl"), (CURRENT, "current.jsonl"))
    out = tmp_path / "events.jsonl"
    assert _replay(directory, out) == 0
    replayed = _events(out)
    streamed = _worker_events(tmp_path)
    assert len(replayed) == 5
    assert sorted(replayed, key=lambda e: e["id"]) == sorted(streamed, key=lambda e: e["id"])


def test_replay_is_deterministic(tmp_path: Path) -> None:
    """Two replays of the same DIR into fresh state give byte-identical output, ids included."""
    directory = _make_dir(tmp_path, (PREVIOUS, "previous.jsonl"), (CURRENT, "current.jsonl"))
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert _replay(directory, first, "--state-dir", str(tmp_path / "s1")) == 0
    assert _replay(directory, second, "--state-dir", str(tmp_path / "s2")) == 0
    assert first.read_bytes() == second.read_bytes()
    assert len({e["id"] for e in _events(first)}) == 5


def test_replay_is_incremental(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """State persists: a second run replays only the new file; a third replays nothing."""
    directory = _make_dir(tmp_path, (PREVIOUS, "previous.jsonl"))
    out = tmp_path / "events.jsonl"
    assert _replay(directory, out) == 0
    assert _events(out) == []  # the baseline emits nothing
    shutil.copy(EXAMPLES / "current.jsonl", directory / "aggregations" / CURRENT)
    capsys.readouterr()
    assert _replay(directory, out) == 0
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary["aggregations_replayed"] == 1
    assert summary["aggregations_skipped"] == 1
    assert _without_ids(_events(out)) == _without_ids(_diff_events())
    before = out.read_bytes()
    assert _replay(directory, out) == 0
    assert out.read_bytes() == before
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary["aggregations_skipped"] == 2


def test_replay_writes_events_to_stdout_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --output the events go to standard output and the summary to standard error."""
    directory = _make_dir(tmp_path, (PREVIOUS, "previous.jsonl"), (CURRENT, "current.jsonl"))
    assert main(["replay", str(directory), "--quiet"]) == 0
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines()]
    assert _without_ids(events) == _without_ids(_diff_events())
    assert json.loads(captured.err.strip())["events"]["ACCOUNT_UPDATED"] == 3


def test_bad_line_exits_2_without_events_or_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad record exits 2 naming FILE:LINE, never quotes the value, writes nothing."""
    directory = _make_dir(tmp_path, (PREVIOUS, "previous.jsonl"), (CURRENT, "current.jsonl"))
    current = directory / "aggregations" / CURRENT
    lines = current.read_text().splitlines()
    lines.insert(2, '{"nativeIdentity": "SENTINEL-7f3a", "attributes": "SENTINEL-7f3a"}')
    current.write_text("\n".join(lines) + "\n")
    out = tmp_path / "events.jsonl"
    assert _replay(directory, out) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{current}:3: ")
    assert "SENTINEL" not in err
    assert _events(out) == []
    assert not (directory / "state").exists()


def test_a_record_whose_decision_fails_exits_2_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decision that fails (as the worker would dead-letter it) exits 2 with FILE:LINE
    and the worker's value-free reason, through the worker's per-record failure boundary."""
    directory = _make_dir(tmp_path, (PREVIOUS, "previous.jsonl"), (CURRENT, "current.jsonl"))

    def failing(*_args: Any, **_kwargs: Any) -> Any:
        raise ValueError("a bug that quotes a value: SENTINEL-7f3a")

    monkeypatch.setattr(processor.worker.account_flow, "decide_event", failing)
    assert _replay(directory, tmp_path / "events.jsonl") == 2
    err = capsys.readouterr().err
    current = directory / "aggregations" / CURRENT
    assert err.startswith(f"{current}:"), err
    assert "could not be decided (ValueError in failing)" in err
    assert "SENTINEL" not in err


def test_duplicate_account_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A snapshot holding one nativeIdentity twice is bad input, as in `diff`."""
    directory = _make_dir(tmp_path, (PREVIOUS, "previous.jsonl"))
    path = directory / "aggregations" / PREVIOUS
    first = path.read_text().splitlines()[0]
    path.write_text(path.read_text() + first + "\n")
    count = len(path.read_text().splitlines())
    assert _replay(directory, tmp_path / "e.jsonl") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:{count}: duplicate")


def test_duplicate_catalog_entry_exits_2_as_in_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A catalog naming one (attribute, value) twice is bad input at the second line (R13)."""
    directory = _make_dir(tmp_path, (PREVIOUS, "previous.jsonl"))
    path = directory / "catalog.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[0]]) + "\n")
    assert _replay(directory, tmp_path / "e.jsonl") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:{len(lines) + 1}: duplicate catalog entry")
    assert "as line 1" in err
    assert not (tmp_path / "e.jsonl").exists()


def test_provisioning_needs_completed_at(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A provisioning record without completedAt cannot be placed: exit 2 naming its line."""
    directory = _make_dir(tmp_path, (PREVIOUS, "previous.jsonl"))
    path = directory / "provisioning.jsonl"
    record = json.loads(path.read_text())
    del record["completedAt"]
    path.write_text(json.dumps(record) + "\n")
    assert _replay(directory, tmp_path / "e.jsonl") == 2
    assert capsys.readouterr().err.startswith(f"{path}:1: replay needs completedAt")


def test_provisioning_after_current_is_not_applied(tmp_path: Path) -> None:
    """A record that completed after the current snapshot started is not applied before it."""
    directory = _make_dir(
        tmp_path,
        ("20261121T000000Z-previous.jsonl", "previous.jsonl"),
        ("20261121T110000Z-current.jsonl", "current.jsonl"),  # before 12:00:05
    )
    out = tmp_path / "events.jsonl"
    assert _replay(directory, out) == 0
    names = {e["account"]["nativeIdentity"] for e in _events(out)}
    assert any(name.startswith("CN=Frank Li") for name in names)


def test_delete_guard_warns_and_suppresses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the default 10 % threshold the deletion is suppressed and stderr says so."""
    directory = _make_dir(tmp_path, (PREVIOUS, "previous.jsonl"), (CURRENT, "current.jsonl"))
    source = json.loads((directory / "source.json").read_text())
    source["deleteThreshold"] = 10
    (directory / "source.json").write_text(json.dumps(source))
    out = tmp_path / "events.jsonl"
    assert _replay(directory, out) == 0
    types = sorted(e["eventType"] for e in _events(out))
    assert "ACCOUNT_DELETED" not in types
    assert len(types) == 4
    err = capsys.readouterr().err
    assert f"delete guard: source {source['id']} ({source['name']}): 1 deletions held back" in err
    assert "deleteThreshold of 10% of the 6 previous accounts" in err


def test_start_times_follow_name_order(tmp_path: Path) -> None:
    """Without a timestamp in the name, mtimes going backwards still give increasing starts."""
    directory = tmp_path / "aggregations"
    directory.mkdir()
    for index, name in enumerate(["a.jsonl", "b.jsonl", "c.jsonl"]):
        path = directory / name
        path.write_text("")
        stamp = 2_000_000_000 - index * 1000
        os.utime(path, (stamp, stamp))
    starts = [s.started_ms for s in _snapshot_files(directory)]
    assert starts == [2_000_000_000_000, 2_000_000_000_001, 2_000_000_000_002]
    assert [s.aggregation_id for s in _snapshot_files(directory)] == ["a", "b", "c"]


def test_missing_aggregations_dir_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DIR without aggregations/ is bad input naming the directory."""
    directory = _make_dir(tmp_path)
    shutil.rmtree(directory / "aggregations")
    assert _replay(directory, tmp_path / "e.jsonl") == 2
    assert "aggregations:1: no such directory" in capsys.readouterr().err
