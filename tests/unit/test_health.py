"""The HTTP endpoint (/metrics, /livez, /readyz) and the runner's liveness and readiness."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.cli import _start_health
from processor.errors import ConfigError
from processor.observability.health import HealthServer
from processor.observability.metrics import Metrics
from tests.unit.conftest import make_account, make_source
from tests.unit.memory_worker import HookedFactory, MemoryWorker


def get(port: int, path: str) -> tuple[int, str]:
    """Status and body of a GET on the local endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Flags:
    live = True
    ready = False


@pytest.fixture
def served() -> Iterator[tuple[HealthServer, Flags]]:
    """A server on a free port whose probes read two switchable flags."""
    flags = Flags()
    metrics = Metrics()
    metrics.track_ready(lambda: flags.ready)
    server = HealthServer("127.0.0.1", 0, metrics, lambda: flags.live, lambda: flags.ready)
    server.start()
    yield server, flags
    server.stop()


def test_probes_follow_their_checks(served: tuple[HealthServer, Flags]) -> None:
    """/livez and /readyz answer 200 when their check holds and 503 when it does not."""
    server, flags = served
    assert get(server.port, "/livez")[0] == 200
    assert get(server.port, "/readyz")[0] == 503
    flags.ready, flags.live = True, False
    assert get(server.port, "/readyz")[0] == 200
    assert get(server.port, "/livez")[0] == 503


def test_readyz_says_what_readiness_waits_for() -> None:
    """A 503 from /readyz carries the readiness detail; a 200 does not."""
    ready = {"now": False}
    server = HealthServer(
        "127.0.0.1",
        0,
        Metrics(),
        lambda: True,
        lambda: ready["now"],
        ready_detail=lambda: "restoring partitions [3]: 12 changelog offsets left",
    ).start()
    try:
        assert get(server.port, "/readyz") == (
            503,
            "not ok: restoring partitions [3]: 12 changelog offsets left\n",
        )
        ready["now"] = True
        assert get(server.port, "/readyz") == (200, "ok\n")
    finally:
        server.stop()


def test_metrics_route_serves_the_registry(served: tuple[HealthServer, Flags]) -> None:
    """/metrics is the Prometheus text of the registry, read at each scrape."""
    server, flags = served
    status, text = get(server.port, "/metrics")
    assert status == 200
    assert "\nncd_ready 0.0" in text
    flags.ready = True
    assert "\nncd_ready 1.0" in get(server.port, "/metrics?x=1")[1]


def test_unknown_path_is_404_and_stop_closes_the_port() -> None:
    """Other paths are not found; after stop nothing listens on the port any more."""
    server = HealthServer("127.0.0.1", 0, Metrics(), lambda: True, lambda: True).start()
    port = server.port
    assert get(port, "/")[0] == 404
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_cli_endpoint_disabled_by_port_zero_and_busy_port_is_a_config_error(
    tmp_path: Path,
) -> None:
    """NCD_HTTP_PORT=0 starts no server; a port in use fails naming the setting."""
    worker = MemoryWorker(tmp_path)
    runner = worker.runner()
    assert _start_health(worker.settings, runner) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = worker.settings.model_copy(
            update={"http_host": "127.0.0.1", "http_port": taken.getsockname()[1]}
        )
        with pytest.raises(ConfigError, match="NCD_HTTP_PORT"):
            _start_health(busy, runner)


def test_ready_only_after_restore_and_first_poll(tmp_path: Path) -> None:
    """During a restore /readyz is 503 and /livez 200; it turns 200 once restored and polling."""
    worker = MemoryWorker(tmp_path)
    worker.publish(make_source(), [make_account(f"r{i}", {"title": "t"}) for i in range(5)])
    worker.run(worker.runner())  # leaves a changelog for a fresh store to restore

    timeline: list[tuple[str, int, int]] = []
    server: HealthServer | None = None

    def probe(when: str) -> None:
        assert server is not None
        ready, live = get(server.port, "/readyz")[0], get(server.port, "/livez")[0]
        timeline.append((when, ready, live))

    runner = worker.runner(HookedFactory(lambda _writes: probe("restore")))
    server = HealthServer("127.0.0.1", 0, runner.metrics, runner.live, runner.ready.is_set)
    server.start()
    try:
        worker.run(runner, lambda: probe("loop"))
    finally:
        server.stop()
    restoring = [entry for entry in timeline if entry[0] == "restore"]
    assert restoring
    assert all(ready == 503 and live == 200 for _, ready, live in restoring)
    # Before the first poll (no partitions yet) not ready; after it, ready for good.
    assert timeline[0] == ("loop", 503, 200)
    first_ready = next(i for i, entry in enumerate(timeline) if entry[1] == 200)
    assert timeline[first_ready - 1][0] == "restore"
    assert all(ready == 200 for _, ready, _ in timeline[first_ready:])
    assert timeline[-1][0] == "loop"


def test_a_new_assignment_clears_readiness(tmp_path: Path) -> None:
    """A rebalance handing over partitions makes the worker unready until the next poll."""
    runner = MemoryWorker(tmp_path).runner()
    runner.ready.set()  # as if an earlier assignment had been restored and polled
    runner.on_assigned([])
    assert not runner.ready.is_set()


def test_liveness_turns_false_when_the_loop_stalls_or_ends(tmp_path: Path) -> None:
    """Live while the loop beats; not live past max_poll_interval without a beat, or after."""
    worker = MemoryWorker(tmp_path)
    worker.publish(make_source(), [make_account("x")])
    runner = worker.runner()
    limit_s = worker.settings.max_poll_interval_ms / 1000
    during: list[tuple[bool, bool]] = []

    def check() -> None:
        now = time.monotonic()
        during.append((runner.live(now), runner.live(now + limit_s + 1)))

    worker.run(runner, check)
    assert during and all(now and not stalled for now, stalled in during)
    assert not runner.live()


def _half_sent(port: int) -> socket.socket:
    """A connection that sends a request line and never finishes the request."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(b"GET /livez HTTP/1.1\r\n")
    return sock


def test_a_request_never_finished_is_dropped_after_the_timeout() -> None:
    """The server closes a connection that stalls mid-request (its thread is not held)."""
    server = HealthServer("127.0.0.1", 0, Metrics(), lambda: True, lambda: True, timeout_s=0.2)
    server.start()
    try:
        with _half_sent(server.port) as sock:
            assert sock.recv(1024) == b""  # end of stream: the server hung up, no reply
    finally:
        server.stop()


def test_connections_over_the_cap_are_refused_and_slots_come_back() -> None:
    """With two connections held, a third is closed at once; once they go, requests work."""
    server = HealthServer(
        "127.0.0.1", 0, Metrics(), lambda: True, lambda: True, timeout_s=60, max_connections=2
    )
    server.start()
    try:
        held = [_half_sent(server.port), _half_sent(server.port)]
        with _half_sent(server.port) as third:
            assert third.recv(1024) == b""
        for sock in held:
            sock.close()
        for _ in range(10_000):  # until a freed slot serves the request
            try:
                if get(server.port, "/livez")[0] == 200:
                    break
            except (ConnectionError, urllib.error.URLError):
                continue
        else:
            raise AssertionError("no request was served after the held connections closed")
    finally:
        server.stop()


def test_the_endpoint_binds_the_loopback_interface_by_default() -> None:
    """NCD_HTTP_HOST defaults to 127.0.0.1: nothing is exposed unless asked for."""
    from processor.config import Settings

    assert Settings.model_fields["http_host"].default == "127.0.0.1"
