"""``diff`` streams (issue 14): its output and its errors are the in-memory diff's, byte for
byte, and it reads again only the accounts that may have an event."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.generate import generate, write
from processor.cli import main
from processor.core import SourcePolicy, account_keys, diff_events, plan_diff
from processor.core.catalog import EntitlementCatalog
from processor.models import Account
from tests.unit.test_cli_diff import _args

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
    import hashlib

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
    from processor.files import read_document
    from processor.models import SourceDescriptor

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
    assert [e.account.nativeIdentity for e in events] == ["b"]
