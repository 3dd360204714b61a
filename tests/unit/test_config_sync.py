"""Configuration published before an aggregation applies to it, however fetches arrive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from processor.files import read_catalog
from processor.models import Account, SourceDescriptor
from processor.transport.memory import MemoryBroker, MemoryPartitionReader
from tests.unit.memory_worker import MemoryWorker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SOURCE = SourceDescriptor.model_validate_json((EXAMPLES / "source.json").read_bytes())
STARTS = {"previous": "2026-11-21T00:00:00.000Z", "current": "2026-11-22T00:00:00.000Z"}


class SlowFetchReader(MemoryPartitionReader):
    """A reader whose records never arrive within a poll that does not wait, as a
    client's fetch still under way at the top of the worker's loop."""

    def poll(self, timeout_s: float, max_records: int) -> list[Any]:
        return [] if timeout_s == 0 else super().poll(timeout_s, max_records)


class SlowFetchBroker(MemoryBroker):
    def partition_reader(self) -> MemoryPartitionReader:
        return SlowFetchReader(self)


def _accounts(name: str) -> list[Account]:
    lines = (EXAMPLES / f"{name}.jsonl").read_text().splitlines()
    return [Account.model_validate_json(line) for line in lines if line.strip()]


def _events(tmp_path: Path, catalog: str) -> list[dict[str, Any]]:
    """The examples' two aggregations through one running worker; the catalog is published
    ``before-start``, ``after-start`` (just before the second aggregation) or ``never``."""
    worker = MemoryWorker(tmp_path / catalog, broker=SlowFetchBroker())
    publisher = worker.publisher()
    publisher.publish_source(SOURCE)

    def publish(name: str) -> None:
        publisher.publish_aggregation(
            SOURCE.id, _accounts(name), aggregation_id=name, started_at=STARTS[name]
        )

    if catalog == "before-start":
        publisher.publish_catalog(SOURCE.id, read_catalog(EXAMPLES / "catalog.jsonl", SOURCE.id))
    publish("previous")
    published = []

    def after_the_baseline() -> None:
        if not published and worker.drained():
            published.append(True)
            if catalog == "after-start":
                entries = read_catalog(EXAMPLES / "catalog.jsonl", SOURCE.id)
                publisher.publish_catalog(SOURCE.id, entries)
            publish("current")

    worker.run(worker.runner(), on_check=after_the_baseline)
    assert published, "the second aggregation was never published"
    topic = worker.settings.topic_events
    return [json.loads(r.value or b"") for r in worker.broker.records(topic)]


def test_a_catalog_published_before_an_aggregation_applies_to_it(tmp_path: Path) -> None:
    """A catalog published while the worker runs, just before an aggregation, gives that
    aggregation's events the catalog's entitlements (as if it had been there at start),
    even when the config topics' fetch has not arrived at the top of the loop."""
    late = _events(tmp_path, "after-start")
    assert late == _events(tmp_path, "before-start")
    assert late != _events(tmp_path, "never"), "the catalog changes nothing in these events"
