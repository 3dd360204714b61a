"""``diff`` streams (issue 14): its output and its errors are the in-memory diff's, byte for
byte, and it reads again only the accounts that may have an event."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from bench.generate import generate, write
from processor import codec
from processor.cli import main
from processor.core import (
    EntitlementCatalog,
    SourcePolicy,
    account_keys,
    diff_events,
    diff_snapshots,
    plan_diff,
    uuid_key,
)
from processor.diffing import DiffFiles, write_diff
from processor.errors import FileInputError, InputError
from processor.files import read_document
from processor.models import Account, CatalogEntry, ProvisioningRecord, SourceDescriptor
from tests.helpers import event_model
from tests.unit.test_cli_diff import _args
from tests.unit.test_core_properties import (
    PROPERTY_SETTINGS,
    provisioning_records,
    snapshots,
    sources,
)

#: sha256 of the output of the in-memory ``diff`` (commit 39f8d56, before streaming) on
#: :func:`varied_fixture`: 24 ACCOUNT_UPDATED, 1 ACCOUNT_CREATED, 1 ACCOUNT_DELETED.
IN_MEMORY_OUTPUT_SHA256 = "e7726d459d9bb248a1013e8f777ab5572b7d339df4258d2a507edef13f7aa6fc"


def varied_fixture(directory: Path) -> Path:
    """Write a varied diff input into ``directory`` and return it.

    :func:`bench.generate.generate`'s 80 accounts, 30 % changed (so renamed, created,
    deleted, provisioned and noisy ones too), with every fifth current line written with
    its keys sorted and spaces (the same account in other bytes), blank lines in both
    snapshots, and the current file reversed.
    """
    write(generate(80, 0.3, 11), directory)
    previous = (directory / "previous.jsonl").read_text().splitlines()
    (directory / "previous.jsonl").write_text("\n\n".join(previous) + "\n   \n")
    current = (directory / "current.jsonl").read_text().splitlines()
    respelled = [
        json.dumps(json.loads(line), sort_keys=True) if n % 5 == 0 else line
        for n, line in enumerate(current)
    ]
    (directory / "current.jsonl").write_text("\n".join(reversed(respelled)) + "\n\n")
    return directory


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The varied fixture, written once for the module."""
    return varied_fixture(tmp_path_factory.mktemp("varied"))


def test_output_is_the_in_memory_diffs_byte_for_byte(
    fixture_dir: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """On creates, deletes, changes, renames, provisioning and respelled lines the streaming
    diff writes exactly what the in-memory diff wrote."""
    assert main(_args(fixture_dir)) == 0
    captured = capsysbinary.readouterr()
    types = sorted(json.loads(line)["eventType"] for line in captured.out.splitlines())
    assert types.count("ACCOUNT_UPDATED") == 24 and len(types) == 26
    assert hashlib.sha256(captured.out).hexdigest() == IN_MEMORY_OUTPUT_SHA256
    assert captured.err == b""


def _insert(name: str, at: int, make: Callable[[list[str]], str]) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        lines = (directory / name).read_text().splitlines()
        lines.insert(at, make(lines))
        (directory / name).write_text("\n".join(lines) + "\n")

    return edit


def _retag(name: str, at: int, field: str, like: int) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        lines = (directory / name).read_text().splitlines()
        record = json.loads(lines[at])
        record[field] = json.loads(lines[like])[field]
        lines[at] = json.dumps(record)
        (directory / name).write_text("\n".join(lines) + "\n")

    return edit


#: Each bad input and the error line the in-memory diff (commit 39f8d56) gave for it.
BAD_INPUTS = {
    "bad JSON late in current": (
        _insert("current.jsonl", 40, lambda _: '{"nativeIdentity": "x",'),
        "current.jsonl:41: invalid JSON: unexpected end of data at line 1 column 24",
    ),
    "invalid account in previous": (
        _insert("previous.jsonl", 71, lambda _: '{"nativeIdentity": 5, "attributes": {}}'),
        "previous.jsonl:72: not a valid account record: nativeIdentity: "
        "Input should be a valid string",
    ),
    "duplicate uuid in current": (
        _retag("current.jsonl", 60, "uuid", 3),
        "current.jsonl:61: duplicate uuid in the current snapshot (first at line 4)",
    ),
    "duplicate nativeIdentity in previous": (
        _retag("previous.jsonl", 100, "nativeIdentity", 2),
        "previous.jsonl:101: duplicate nativeIdentity in the previous snapshot (first at line 3)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_the_in_memory_diffs_error_and_no_events(
    case: str, fixture_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad line anywhere in either snapshot, or a repeated account, exits 2 with the same
    FILE:LINE: reason as before streaming, and writes no events."""
    edit, expected = BAD_INPUTS[case]
    directory = tmp_path / "bad"
    shutil.copytree(fixture_dir, directory)
    edit(directory)
    assert main(_args(directory)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"{directory}/{expected}\n"


def _account(name: str, title: str) -> Account:
    return Account.model_validate(
        {"nativeIdentity": name, "uuid": f"u-{name}", "attributes": {"title": title}}
    )


def test_unchanged_pairs_are_not_read_again(fixture_dir: Path) -> None:
    """diff_events asks for no account of a pair its ``same`` calls equal, and for both
    accounts of a pair it does not."""
    source = read_document(fixture_dir / "source.json", SourceDescriptor, "source")
    policy = SourcePolicy.from_source(source)
    previous = [_account("a", "x"), _account("b", "x")]
    current = [_account("a", "x"), _account("b", "y")]
    plan = plan_diff(
        policy, [account_keys(a) for a in previous], [account_keys(a) for a in current]
    )
    asked: list[tuple[str, int]] = []

    def reader(side: str, accounts: list[Account]) -> Callable[[int], Account]:
        return lambda i: asked.append((side, i)) or accounts[i]

    events = list(
        diff_events(
            policy,
            plan,
            reader("previous", previous),
            reader("current", current),
            EntitlementCatalog(),
            same=lambda i, j: i == j == 0,
        )
    )
    assert sorted(asked) == [("current", 1), ("previous", 1)]
    assert [e.native_identity for e in events] == ["b"]


def _write_jsonl(path: Path, models: Sequence[BaseModel], blank_every: int) -> Path:
    lines = [codec.dumps(m.model_dump(mode="json", exclude_none=True)) for m in models]
    for at in range(len(lines), 0, -blank_every):
        lines.insert(at, b"  ")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@PROPERTY_SETTINGS
@given(
    source=sources(),
    previous=snapshots(),
    current=snapshots(),
    records=provisioning_records(),
    data=st.data(),
)
def test_streaming_diff_equals_the_in_memory_diff(
    source: SourceDescriptor,
    previous: list[Account],
    current: list[Account],
    records: list[ProvisioningRecord],
    data: st.DataObject,
) -> None:
    """On random snapshots (some current lines repeating previous ones byte for byte) the
    files' diff writes what the in-memory diff of the same accounts gives, or both refuse."""
    picked = data.draw(st.lists(st.integers(0, len(previous) - 1), unique=True)) if previous else []
    repeated = [previous[i] for i in picked]
    taken = {a.nativeIdentity.casefold() for a in repeated}
    taken |= {uuid_key(a.uuid) for a in repeated if a.uuid}
    others = [
        a
        for a in current
        if a.nativeIdentity.casefold() not in taken and not (a.uuid and uuid_key(a.uuid) in taken)
    ]
    current = [*repeated, *others]
    blank_every = data.draw(st.integers(1, 4))
    with tempfile.TemporaryDirectory() as name:
        d = Path(name)
        (d / "source.json").write_bytes(codec.dumps(source.model_dump(mode="json")))
        entries = [CatalogEntry(attribute="memberOf", value="CN=A", id="ea", name="A")]
        files = DiffFiles(
            d / "source.json",
            _write_jsonl(d / "previous.jsonl", previous, blank_every),
            _write_jsonl(d / "current.jsonl", current, blank_every + 1),
            _write_jsonl(d / "catalog.jsonl", entries, 5),
            _write_jsonl(d / "provisioning.jsonl", records, 3),
        )
        try:
            catalog = EntitlementCatalog(entries)
            expected = diff_snapshots(source, previous, current, catalog, records)
        except InputError:
            with pytest.raises(FileInputError):
                write_diff(io.BytesIO(), files)
            return
        out = io.BytesIO()
        write_diff(out, files)
    assert out.getvalue() == b"".join(
        codec.dumps(event_model(event).model_dump(mode="json")) + b"\n" for event in expected.events
    )


def test_snapshots_from_pipes_give_the_same_output(
    fixture_dir: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Snapshots given as named pipes (as ``<(zcat ...)`` gives them), which cannot be read
    twice, diff to the same bytes as the files themselves."""
    assert main(_args(fixture_dir)) == 0
    expected = capsysbinary.readouterr().out
    directory = tmp_path / "piped"
    shutil.copytree(fixture_dir, directory)
    writers = []
    for name in ("previous.jsonl", "current.jsonl"):
        data = (directory / name).read_bytes()
        (directory / name).unlink()
        os.mkfifo(directory / name)
        writers.append(threading.Thread(target=(directory / name).write_bytes, args=(data,)))
    for writer in writers:
        writer.start()
    assert main(_args(directory)) == 0
    for writer in writers:
        writer.join()
    assert capsysbinary.readouterr().out == expected
