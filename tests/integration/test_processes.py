"""``NCD_PROCESSES=2``: two worker processes under one supervisor, on a real broker."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from bench.generate import generate
from tests.broker import require_exactly_once
from tests.helpers import wait_for
from tests.integration.harness import WorkerEnv, canonical
from tests.integration.test_worker import _expected, _models

pytestmark = pytest.mark.broker


def _two_free_ports() -> int:
    """A loopback port P such that nobody listens on P or P + 1 now."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two adjacent free ports")


def test_two_processes_split_the_partitions_and_emit_each_event_once(
    env: WorkerEnv, tmp_path: Path
) -> None:
    """Two children of one supervisor share the partitions and together give diff's events once."""
    require_exactly_once(env.hides_aborted)
    dataset = generate(240, 0.1, 21)
    source, previous, current, catalog = _models(dataset)
    expected = _expected(dataset, tmp_path)
    port = _two_free_ports()
    env.extra_env.update(
        {"NCD_PROCESSES": "2", "NCD_HTTP_HOST": "127.0.0.1", "NCD_HTTP_PORT": str(port)}
    )
    # The source and catalog first: each child reads them in full before it joins the group
    # (published after, a child may decide accounts before it has read the catalog).
    publisher, producer = env.publisher()
    try:
        publisher.publish_source(source)
        publisher.publish_catalog(source.id, catalog)
    finally:
        producer.close()
    supervisor = env.start("pod")
    # The children's endpoints: HTTP_PORT + i, read through the harness's metrics reader.
    env.http_ports.update({"pod-0": port, "pod-1": port + 1})

    def split() -> bool:
        first, second = env.assigned("pod-0"), env.assigned("pod-1")
        return bool(first) and bool(second) and sorted(first + second) == [0, 1, 2]

    wait_for(split, "both children holding a share of the 3 partitions", timeout_s=120)
    env.publish(source, previous, catalog, started_at="2026-11-22T08:00:00Z")
    env.publish(source, current, catalog, started_at="2026-11-22T09:00:00Z")
    env.wait_drained()
    events = env.events()  # read_committed
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert canonical(events) == canonical(expected)
    assert sorted(p.name for p in (tmp_path / "pod").iterdir()) == ["worker-0", "worker-1"]
    assert env.stop(supervisor, signal.SIGTERM) == 0
