"""No attribute value reaches the logs or the metrics: a sentinel value is never printed."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
import structlog

from processor import codec
from processor.observability.logging import configure_logging
from tests.unit.conftest import make_account, make_source
from tests.unit.memory_worker import MemoryWorker

SENTINEL = "SENTINEL-7f3a"


def sentinel_poison(source_id: str) -> list[bytes]:
    """Invalid aggregation records, each carrying the sentinel where a parser could echo it."""
    started = {
        "type": "aggregation.started",
        "sourceId": source_id,
        "aggregationId": "agg-poison",
        "startedAt": "2026-11-22T10:00:00Z",
        "mode": "FULL",
    }
    return [
        b'{"type": "account", "attributes": {"title": "' + SENTINEL.encode() + b'"',
        codec.dumps({"type": SENTINEL, "sourceId": source_id}),
        codec.dumps({**started, "startedAt": SENTINEL}),
        codec.dumps({**started, "mode": SENTINEL}),
        codec.dumps(
            {
                "type": "account",
                "sourceId": source_id,
                "aggregationId": "agg-poison",
                "account": {"nativeIdentity": SENTINEL, "attributes": {"title": SENTINEL}},
                "deleted": SENTINEL,
            }
        ),
        codec.dumps(
            {
                "type": "account",
                "sourceId": source_id,
                "aggregationId": SENTINEL,
                "account": {"nativeIdentity": SENTINEL, "attributes": {"title": SENTINEL}},
                "deleted": False,
            }
        ),
    ]


@pytest.fixture
def stderr() -> Iterator[StringIO]:
    """The process's log output (JSON at debug level) captured in a buffer."""
    buffer = StringIO()
    real = sys.stderr
    sys.stderr = buffer
    configure_logging("debug", "json")
    try:
        yield buffer
    finally:
        sys.stderr = real
        structlog.reset_defaults()


def test_sentinel_never_logged_nor_exported(
    tmp_path: Path, stderr: StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    """Accounts and poison records holding a sentinel leave no trace of it in logs or metrics."""
    worker = MemoryWorker(tmp_path)
    source = make_source(delete_threshold=100)
    first = [make_account(f"{SENTINEL}-{i}", {"title": f"{SENTINEL} {i}"}) for i in range(6)]
    second = [make_account(f"{SENTINEL}-{i}", {"title": f"{SENTINEL}!"}) for i in range(1, 7)]
    worker.publish(source, first, started_at="2026-11-22T08:00:00Z")
    worker.publish(source, second, started_at="2026-11-22T09:00:00Z")
    poison = sentinel_poison(source.id)
    for value in poison:
        worker.produce_raw(SENTINEL.encode(), value)
    runner = worker.runner()
    worker.run(runner)

    dead = runner.metrics.registry.get_sample_value("ncd_dead_letters_total")
    assert dead == len(poison)
    emitted = runner.metrics.registry.get_sample_value("ncd_records_total", {"verdict": "emitted"})
    assert emitted is not None and emitted > 0
    logged = stderr.getvalue() + "".join(capsys.readouterr())
    assert '"record_dead_lettered"' in logged  # the log was captured at all
    assert "aggregation_summary" in logged
    assert SENTINEL not in logged
    assert SENTINEL not in runner.metrics.render().decode()
