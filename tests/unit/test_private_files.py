"""Owner-only data at rest: state directories 0700, LMDB and output files 0600, any umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.files import open_private, private_dir
from processor.state import LmdbStoreFactory
from tests.unit.test_replay import CURRENT, PREVIOUS, _make_dir, _replay


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that takes nothing away: every mode seen is the one the code chose."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_a_new_store_is_owner_only(tmp_path: Path) -> None:
    """The state directory and the store's directory are 0700, data.mdb and lock.mdb 0600."""
    state = private_dir(tmp_path / "state")
    store = LmdbStoreFactory(state, "ncd.aggregations").open(0)
    store.apply({b"k": b"v"}, 1)
    store.close()
    directory = state / "ncd.aggregations-0"
    assert (mode(state), mode(directory)) == (0o700, 0o700)
    assert {p.name: mode(p) for p in directory.iterdir()} == {
        "data.mdb": 0o600,
        "lock.mdb": 0o600,
    }


@pytest.mark.usefixtures("open_umask")
def test_an_existing_store_made_readable_is_tightened_on_open(tmp_path: Path) -> None:
    """A store left 0755/0644 (an older version, another umask) is made owner-only on open."""
    factory = LmdbStoreFactory(tmp_path, "s")
    factory.open(0).close()
    directory = tmp_path / "s-0"
    directory.chmod(0o755)
    for file in directory.iterdir():
        file.chmod(0o644)
    factory.open(0).close()
    assert mode(directory) == 0o700
    assert {mode(p) for p in directory.iterdir()} == {0o600}


@pytest.mark.usefixtures("open_umask")
def test_an_output_file_is_created_owner_only(tmp_path: Path) -> None:
    """open_private creates 0600 and appends."""
    path = tmp_path / "out.jsonl"
    for line in (b"a\n", b"b\n"):
        with open_private(path) as out:
            out.write(line)
    assert mode(path) == 0o600
    assert path.read_bytes() == b"a\nb\n"


@pytest.mark.usefixtures("open_umask")
def test_replay_writes_owner_only_events_and_state(tmp_path: Path) -> None:
    """`replay --output` creates its events file 0600 and its state directory 0700."""
    directory = _make_dir(tmp_path, (PREVIOUS, "previous.jsonl"), (CURRENT, "current.jsonl"))
    out = tmp_path / "events.jsonl"
    assert _replay(directory, out) == 0
    assert mode(out) == 0o600
    assert mode(directory / "state") == 0o700
    assert {mode(p) for p in (directory / "state").rglob("*")} <= {0o700, 0o600}


def test_a_state_directory_that_cannot_be_made_is_a_setting_error(tmp_path: Path) -> None:
    """`run` with NCD_STATE_DIR under a plain file exits 2 naming the setting, no traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "processor.cli", "run", "--state-dir", str(blocker / "state")],
        env={**os.environ, "NCD_HTTP_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "NCD_STATE_DIR: cannot create" in done.stderr
    assert "Traceback" not in done.stderr
