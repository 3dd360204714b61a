"""The supervisor of ``ncd-processor run --processes N``: children's names, signals, exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from processor.config import load_settings
from processor.supervisor import Child, Supervisor, exit_status, worker_children
from tests.helpers import wait_for

# A stand-in worker: says it is ready, then exits 0 on SIGTERM/SIGINT (writing which signal
# it got), or fails as its second argument says once the file named by its third exists.
# SIGALRM ends it after 60 s, so a broken supervisor cannot leave it behind.
CHILD = """
import os, signal, sys, time
from pathlib import Path
out = Path(sys.argv[1])
def on_stop(signum, frame):
    # Written whole, then renamed: a reader never sees the file empty.
    part = out.with_suffix(".signal-part")
    part.write_text(str(signum))
    os.replace(part, out.with_suffix(".signal"))
    sys.exit(0)
signal.signal(signal.SIGTERM, on_stop)
signal.signal(signal.SIGINT, on_stop)
signal.alarm(60)
out.write_text("ready")
while len(sys.argv) > 3 and not Path(sys.argv[3]).exists():
    time.sleep(0.01)
if sys.argv[2] == "fail":
    sys.exit(3)
if sys.argv[2] == "exit0":
    sys.exit(0)
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
while True:
    signal.pause()
"""


def _child(tmp_path: Path, name: str, mode: str = "wait", after: str = "") -> Child:
    argv = [sys.executable, "-c", CHILD, str(tmp_path / f"{name}.ready"), mode]
    if after:  # act once that child is ready
        argv.append(str(tmp_path / f"{after}.ready"))
    return Child(name, argv, dict(os.environ))


def _signal_when_ready(tmp_path: Path, names: list[str], sig: int) -> threading.Thread:
    """Send ``sig`` to this process once every named child has said it is ready."""

    def send() -> None:
        wait_for(lambda: all((tmp_path / f"{n}.ready").exists() for n in names), "children ready")
        os.kill(os.getpid(), sig)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _signal_seen(tmp_path: Path, name: str) -> int | None:
    path = tmp_path / f"{name}.signal"
    return int(path.read_text()) if path.exists() else None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_reaches_every_child_and_a_clean_stop_exits_0(
    tmp_path: Path, sig: int
) -> None:
    """SIGTERM or SIGINT to the supervisor is forwarded to every child; all exit 0, so does it."""
    children = [_child(tmp_path, "a"), _child(tmp_path, "b")]
    before = signal.getsignal(signal.SIGTERM)
    sender = _signal_when_ready(tmp_path, ["a", "b"], sig)
    assert Supervisor(children).run() == 0
    sender.join()
    assert _signal_seen(tmp_path, "a") == sig
    assert _signal_seen(tmp_path, "b") == sig
    assert signal.getsignal(signal.SIGTERM) == before, "the previous handler is put back"


@pytest.mark.parametrize(("mode", "status"), [("fail", 3), ("kill", 128 + 9), ("exit0", 1)])
def test_a_child_that_ends_on_its_own_stops_the_others_and_fails_the_supervisor(
    tmp_path: Path, mode: str, status: int
) -> None:
    """A child exiting unasked (non-zero, killed, or even 0) stops the rest; nothing restarts."""
    children = [_child(tmp_path, "ok"), _child(tmp_path, "bad", mode, after="ok")]
    assert Supervisor(children).run() == status
    assert _signal_seen(tmp_path, "ok") == signal.SIGTERM
    assert (tmp_path / "bad.ready").read_text() == "ready", "the failed child ran once"


def test_a_child_failing_its_stop_makes_the_supervisor_fail(tmp_path: Path) -> None:
    """After a requested stop, a child exiting non-zero gives the supervisor that status."""
    stubborn = CHILD.replace("sys.exit(0)\nsignal.signal", "sys.exit(2)\nsignal.signal")
    children = [
        _child(tmp_path, "a"),
        Child("b", [sys.executable, "-c", stubborn, str(tmp_path / "b.ready"), "wait"], {}),
    ]
    sender = _signal_when_ready(tmp_path, ["a", "b"], signal.SIGTERM)
    assert Supervisor(children).run() == 2
    sender.join()


def test_exit_status_reads_signals_as_the_shell_does() -> None:
    """Exit codes pass through; a child ended by signal N counts as 128 + N."""
    assert [exit_status(c) for c in (0, 3, -signal.SIGKILL)] == [0, 3, 137]


def test_each_child_worker_has_its_own_name_state_and_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Children get INSTANCE_ID-i, STATE_DIR/worker-i and HTTP_PORT+i; flags reach them too."""
    children = worker_children(
        2,
        instance_id="pod",
        state_dir=tmp_path / "state",
        http_port=8080,
        overrides={"group_id": "g", "processes": "2", "state_dir": "/elsewhere"},
        environ={"NCD_PROCESSES": "2", "NCD_GUARANTEE": "exactly_once"},
    )
    assert [c.name for c in children] == ["worker-0", "worker-1"]
    settings = []
    for child in children:
        for name in list(os.environ):
            if name.startswith("NCD_"):
                monkeypatch.delenv(name)
        for name, value in child.env.items():
            monkeypatch.setenv(name, value)
        settings.append(load_settings())
        assert child.argv[1:] == ["-m", "processor.supervisor", str(os.getpid())]
    assert [s.processes for s in settings] == [1, 1]
    assert [s.group_id for s in settings] == ["g", "g"]
    assert [s.transactional_id for s in settings] == ["g-pod-0", "g-pod-1"]
    assert [s.state_dir for s in settings] == [
        tmp_path / "state" / "worker-0",
        tmp_path / "state" / "worker-1",
    ]
    assert [s.http_port for s in settings] == [8080, 8081]


def test_children_have_no_http_endpoint_when_the_port_is_0(tmp_path: Path) -> None:
    """HTTP_PORT 0 (no endpoint) stays 0 for every child."""
    children = worker_children(
        3, instance_id="x", state_dir=tmp_path, http_port=0, overrides={}, environ={}
    )
    assert [c.env["NCD_HTTP_PORT"] for c in children] == ["0", "0", "0"]


# A stand-in supervisor: starts a child that asks to die with it, then waits to be killed.
GRANDCHILD = """
import os, signal, sys
from pathlib import Path
from processor.supervisor import die_with_parent
out = Path(sys.argv[1])
def on_term(signum, frame):
    part = out.with_suffix(".signal-part")  # written whole, then renamed (as CHILD does)
    part.write_text(str(signum))
    os.replace(part, out.with_suffix(".signal"))
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
signal.alarm(60)
assert die_with_parent(int(sys.argv[2]))
out.write_text("ready")
while True:
    signal.pause()
"""
PARENT = """
import os, signal, subprocess, sys
subprocess.Popen([sys.executable, "-c", sys.argv[2], sys.argv[1], str(os.getpid())])
signal.alarm(60)
signal.pause()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_a_child_gets_sigterm_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    """A supervisor killed outright (SIGKILL) leaves no worker behind: each gets SIGTERM."""
    ready = tmp_path / "child.ready"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(ready), GRANDCHILD])
    try:
        wait_for(ready.exists, "the child ready")
        parent.kill()
        parent.wait()
        wait_for(lambda: _signal_seen(tmp_path, "child") is not None, "SIGTERM to the child")
    finally:
        if parent.poll() is None:
            parent.kill()
    assert _signal_seen(tmp_path, "child") == signal.SIGTERM
