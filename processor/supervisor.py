"""Several worker processes in one container (``NCD_PROCESSES``, issue 14 point 5).

One Python process decides records on one core; a container given two cores runs
``ncd-processor run --processes 2`` instead of two containers. This module starts that many
``ncd-processor run`` child processes. Each child is an ordinary worker, a member of the
same consumer group with a name of its own:

- its instance id is ``INSTANCE_ID-<i>``, and so its transactional id ``GROUP_ID-INSTANCE_ID-<i>``;
- its state directory is ``STATE_DIR/worker-<i>``;
- its metrics and health endpoint listens on ``HTTP_PORT + i`` (none when the port is 0).

Each child runs ``python -m processor.supervisor PARENT_PID``: it asks the kernel (Linux) for
a SIGTERM when its supervisor dies, so a supervisor killed outright (SIGKILL) leaves no
workers behind, then runs ``ncd-processor run``. The group splits the partitions between
the children as between any members. The supervisor
forwards SIGTERM and SIGINT to every child and waits for all of them. It restarts nothing:
when a child exits on its own (a failure: a worker exits only when asked to), the others are
stopped and the supervisor exits with that child's status (128 + N for a child killed by
signal N), so the container's restart policy sees the failure. After a requested stop it
exits 0 when every child did, else with the first failed child's status.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processor.config import Settings

#: The signals forwarded to every child.
FORWARDED = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class Child:
    """One child worker: its command line and its whole environment."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]


def worker_children(
    count: int,
    *,
    instance_id: str,
    state_dir: Path,
    http_port: int,
    overrides: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
) -> list[Child]:
    """The ``count`` children of ``ncd-processor run --processes COUNT``.

    ``overrides`` are the settings given as flags (name -> value as typed); they reach the
    children as ``NCD_`` variables, so a child's own names (instance id, state directory,
    port) are the only settings that differ from the parent's.
    """
    base = dict(os.environ if environ is None else environ)
    base.update({f"NCD_{name.upper()}": value for name, value in overrides.items()})
    children = []
    for i in range(count):
        env = dict(base)
        env.update(
            {
                "NCD_PROCESSES": "1",
                "NCD_INSTANCE_ID": f"{instance_id}-{i}",
                "NCD_STATE_DIR": str(state_dir / f"worker-{i}"),
                "NCD_HTTP_PORT": str(http_port + i if http_port else 0),
            }
        )
        argv = [sys.executable, "-m", "processor.supervisor", str(os.getpid())]
        children.append(Child(f"worker-{i}", argv, env))
    return children


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: its exit code, or 128 + N if signal N ended it."""
    return 128 - returncode if returncode < 0 else returncode


class Supervisor:
    """Starts the children, forwards stop signals to them, and waits for every one."""

    def __init__(self, children: Sequence[Child]) -> None:
        self._children = list(children)
        self._procs: list[subprocess.Popen[bytes]] = []
        # Re-entrant: the signal handler runs in the main thread, which may hold it.
        self._lock = threading.RLock()
        self._stopping: int | None = None
        self._exits: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()

    def run(self) -> int:
        """Run every child to its end; the status this process should exit with.

        Must be called in the main thread (it installs the signal handlers, and puts the
        previous ones back before returning).
        """
        previous = {sig: signal.signal(sig, self._on_signal) for sig in FORWARDED}
        try:
            for index, child in enumerate(self._children):
                with self._lock:
                    if self._stopping is not None:
                        break
                    proc = subprocess.Popen(list(child.argv), env=dict(child.env))
                    self._procs.append(proc)
                threading.Thread(
                    target=self._watch, args=(index, proc), name=child.name, daemon=True
                ).start()
        except BaseException:  # a child could not be started: stop the ones that were
            self.stop(signal.SIGTERM)
            for proc in self._procs:
                proc.wait()
            raise
        else:
            if self._stopping is not None:  # a signal came while a child was starting
                self.stop(self._stopping)
            return self._wait_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _watch(self, index: int, proc: subprocess.Popen[bytes]) -> None:
        self._exits.put((index, proc.wait()))

    def _wait_all(self) -> int:
        status = 0
        for _ in range(len(self._procs)):
            index, returncode = self._exits.get()
            with self._lock:
                requested = self._stopping is not None
            if not requested:
                # Nobody asked it to stop: a failure. Stop the others; report this one.
                name = self._children[index].name
                print(
                    f"ncd-processor: {name} exited with status {exit_status(returncode)}; "
                    "stopping the other workers",
                    file=sys.stderr,
                )
                self.stop(signal.SIGTERM)
                status = exit_status(returncode) or 1
            elif status == 0:
                status = exit_status(returncode)
        return status

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Ask every running child to stop (``sig``); no child starts after this."""
        with self._lock:
            self._stopping = sig
            procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop(signum)


def run_processes(settings: Settings, overrides: Mapping[str, str]) -> int:
    """``ncd-processor run`` with ``settings.processes`` children; the status to exit with.

    ``overrides`` are the settings given as flags (name -> value as typed).
    """
    children = worker_children(
        settings.processes,
        instance_id=settings.instance_id,
        state_dir=settings.state_dir,
        http_port=settings.http_port,
        overrides=overrides,
    )
    return Supervisor(children).run()


#: prctl(2) option: the signal this process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> bool:
    """Have the kernel send this process SIGTERM when its parent dies (Linux only); whether
    ``parent`` is still this process's parent (it may have died before the request)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    return os.getppid() == parent


def _child(parent: int) -> int:
    """A child worker: SIGTERM when ``parent`` dies, then ``ncd-processor run``."""
    if not die_with_parent(parent):
        return 1
    from processor.cli import main

    return main(["run"])


if __name__ == "__main__":
    raise SystemExit(_child(int(sys.argv[1])))
