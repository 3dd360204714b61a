"""Contract tests: what the worker's decisions produce validates against the published
schemas and the pydantic models, over a synthetic source with every kind of change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from bench.generate import Dataset, generate
from processor import codec
from processor.models import (
    CatalogEntry,
    Operation,
    RemediationCommand,
    SourceDescriptor,
    event_class,
)
from processor.state.overlay import BatchOverlay
from processor.state.store import InMemoryStateStore
from processor.worker.decision import decide_record
from processor.worker.partition import Outcome, PartitionProcessor, Verdict
from processor.worker.registry import SourceRegistry

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
#: Records per batch: small, so that the run crosses batch boundaries.
BATCH = 50


def _validator(stem: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{stem}.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _stream(dataset: Dataset, source_id: str) -> list[tuple[bool, bytes]]:
    """(is provisioning, value): a baseline, provisioning, a changed FULL, a DELTA."""

    def marker(kind: str, agg: str, **extra: Any) -> tuple[bool, bytes]:
        body = {"type": kind, "sourceId": source_id, "aggregationId": agg, **extra}
        return False, codec.dumps(body)

    def account(agg: str, body: dict[str, Any], **extra: Any) -> tuple[bool, bytes]:
        return marker("account", agg, account=body, **extra)

    stream = [marker("aggregation.started", "g1", startedAt="2026-01-01T00:00:00Z")]
    stream += [account("g1", a) for a in dataset.previous()]
    stream.append(marker("aggregation.completed", "g1", status="COMPLETED"))
    stream += [(True, codec.dumps(p)) for p in dataset.provisioning()]
    stream.append(marker("aggregation.started", "g2", startedAt="2026-01-02T00:00:00Z"))
    current = list(dataset.current())
    stream += [account("g2", a) for a in current]
    stream.append(marker("aggregation.completed", "g2", status="COMPLETED"))
    delta = {"startedAt": "2026-01-03T00:00:00Z", "mode": "DELTA"}
    stream.append(marker("aggregation.started", "g3", **delta))
    stream += [account("g3", a, deleted=True) for a in current[:5]]
    stream.append(marker("aggregation.completed", "g3", status="COMPLETED"))
    return stream


def _outcomes() -> list[Outcome]:
    dataset = generate(300, 0.2, 5)
    source = dict(dataset.source)
    source["remediation"] = {
        "mode": "propose",
        "revert": ["ATTRIBUTES_CHANGED", "ENTITLEMENTS_ADDED", "ENTITLEMENTS_REMOVED"],
    }
    source["deleteThreshold"] = 100  # the deletions are reported, not held back
    registry = SourceRegistry()
    descriptor = SourceDescriptor.model_validate(source)
    registry.put_source(descriptor)
    for entry in dataset.catalog():
        registry.catalog(descriptor.id).put(CatalogEntry.model_validate(entry))
    processor = PartitionProcessor(registry)
    store = InMemoryStateStore()
    stream = _stream(dataset, descriptor.id)
    outcomes: list[Outcome] = []
    for start in range(0, len(stream), BATCH):
        overlay = BatchOverlay(store)
        processor.begin_batch()
        for provisioning, value in stream[start : start + BATCH]:
            outcome, _ = decide_record(
                processor,
                value,
                overlay,
                provisioning=provisioning,
                outputs=lambda _: None,
                check_key=False,
            )
            assert outcome.verdict != Verdict.DEAD_LETTERED, outcome.reason
            outcomes.append(outcome)
        processor.end_batch(overlay, start)
        store.apply(overlay.writes, None)
    return outcomes


def test_worker_events_and_commands_validate_against_schemas_and_models() -> None:
    """Every event and remediation command the worker decides validates against its
    published schema and re-validates into its pydantic model unchanged."""
    outcomes = _outcomes()
    events = [dict(event.body) for o in outcomes for event in o.events]
    commands = [c.model_dump(mode="json") for o in outcomes for c in o.remediations]
    assert {e["eventType"] for e in events} == {op.value for op in Operation}
    assert commands
    for event in events:
        stem = event["eventType"].lower().replace("_", "-", 1) + "-event"
        _validator(stem).validate(event)
        model = event_class(Operation(event["eventType"]))
        dumped = model.model_validate_json(codec.dumps(event)).model_dump(mode="json")
        assert codec.dumps(dumped) == codec.dumps(event)
    for command in commands:
        _validator("remediation-command").validate(command)
        assert RemediationCommand.model_validate(command).model_dump(mode="json") == command
