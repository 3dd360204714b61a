"""Hostile input at the worker: every record is decided or dead-lettered, nothing escapes."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.models import Account, SourceDescriptor
from processor.state import BatchOverlay, InMemoryStateStore
from processor.worker.partition import Outcome, PartitionProcessor, Verdict
from processor.worker.registry import SourceRegistry
from tests.helpers import small_source
from tests.reliability.hostile import SOURCE_ID, hostile_values, nested, poison_records
from tests.unit.memory_worker import MemoryWorker

TEN_MB = 10 * 1024 * 1024


def _source() -> SourceDescriptor:
    return small_source(SOURCE_ID, name="Hostile", entitlements=False)


def _good(aggregation: str, title: str) -> list[bytes]:
    base = {"sourceId": SOURCE_ID, "aggregationId": aggregation}
    return [
        json.dumps(
            {**base, "type": "aggregation.started", "startedAt": f"2026-11-22T0{title[-1]}:00:00Z"}
        ).encode(),
        json.dumps(
            {
                **base,
                "type": "account",
                "account": {"nativeIdentity": "CN=good", "attributes": {"title": title}},
            }
        ).encode(),
        json.dumps(
            {**base, "type": "aggregation.completed", "status": "COMPLETED", "accountCount": 1}
        ).encode(),
    ]


def _processor() -> tuple[PartitionProcessor, InMemoryStateStore]:
    registry = SourceRegistry()
    registry.put_source(_source())
    return PartitionProcessor(registry), InMemoryStateStore()


def _run(
    processor: PartitionProcessor, store: InMemoryStateStore, values: list[bytes]
) -> list[Outcome]:
    overlay = BatchOverlay(store)
    processor.begin_batch()
    outcomes = [processor.process(v, overlay) for v in values]
    processor.end_batch(overlay, 0)
    store.apply(overlay.writes, None)
    return outcomes


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(hostile_values(), min_size=1, max_size=5))
def test_partition_processor_decides_every_hostile_record(values: list[bytes]) -> None:
    """Hostile records get a verdict (dead letters a reason); good records after them still work."""
    processor, store = _processor()
    _run(processor, store, _good("a1", "t1"))  # the baseline
    outcomes = _run(processor, store, values)
    for outcome in outcomes:
        assert isinstance(outcome.verdict, Verdict)
        if outcome.verdict == Verdict.DEAD_LETTERED:
            assert outcome.reason and len(outcome.reason) <= 300
    after = _run(processor, store, _good("a2", "t2"))
    assert [o.verdict for o in after] == [Verdict.MARKER, Verdict.EMITTED, Verdict.MARKER]
    assert after[1].events[0].body["singleValueAttributeChanges"][0]["newValue"] == "t2"


def test_extreme_records_are_dead_lettered_with_a_reason() -> None:
    """100k-deep nesting, a 10 MB record and a lone surrogate are dead-lettered, not raised."""
    processor, store = _processor()
    big = json.dumps({"type": "account", "sourceId": SOURCE_ID, "pad": "x" * TEN_MB}).encode()
    surrogate = b'{"type": "account", "sourceId": "\\ud800", "aggregationId": "x"}'
    outcomes = _run(processor, store, [nested(100_000), big, surrogate, b"\x00" * 10])
    assert [o.verdict for o in outcomes] == [Verdict.DEAD_LETTERED] * 4
    assert all(o.reason for o in outcomes)
    assert all("x" * 50 not in (o.reason or "") for o in outcomes)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(hostile_values(), min_size=1, max_size=4))
def test_runner_on_memory_transport_dead_letters_and_keeps_flowing(
    tmp_path_factory: object, values: list[bytes]
) -> None:
    """The in-process Runner commits every hostile record, dead-letters bad ones, then flows on."""
    tmp_path = Path(tmp_path_factory.mktemp("w"))  # type: ignore[attr-defined]
    worker = MemoryWorker(tmp_path)
    source = _source()
    account = Account.model_validate({"nativeIdentity": "CN=good", "attributes": {"title": "a"}})
    worker.publish(source, [account], started_at="2026-11-22T01:00:00Z")
    for value in values:
        worker.produce_raw(b"hostile", value)
    changed = account.model_copy(update={"attributes": {"title": "b"}})
    worker.publish(source, [changed], started_at="2026-11-22T02:00:00Z")
    runner = worker.runner()
    worker.run(runner)  # returns only once every input record is committed
    s = worker.settings
    dead = worker.broker.records(s.topic_dlq)
    assert len(dead) == runner.stats.verdicts[Verdict.DEAD_LETTERED]
    assert all(dict(d.headers)["ncd_error"] for d in dead)
    events = [json.loads(r.value or b"") for r in worker.broker.records(s.topic_events)]
    titles = [c["newValue"] for e in events for c in e["singleValueAttributeChanges"]]
    assert titles == ["b"]


def test_every_poison_shape_is_dead_lettered_or_accepted_and_good_records_flow(
    tmp_path: Path,
) -> None:
    """Each poison record is dead-lettered (or accepted) as labelled; good events stay exact."""
    worker = MemoryWorker(tmp_path)
    s = worker.settings
    source = _source()
    poison_source = source.model_copy(update={"id": "src-poison"})
    account = Account.model_validate({"nativeIdentity": "CN=good", "attributes": {"title": "a"}})
    worker.publish(source, [account], started_at="2026-11-22T01:00:00Z")
    worker.publisher().publish_source(poison_source)
    started = {"type": "aggregation.started", "startedAt": "2026-11-22T01:30:00Z"}
    worker.produce_raw(
        b"src-poison/p1",
        json.dumps({**started, "sourceId": "src-poison", "aggregationId": "p1"}).encode(),
    )
    poison = poison_records("src-poison", "p1", s.max_record_bytes)
    for record in poison:
        worker.produce_raw(record.key, record.value)
    changed = account.model_copy(update={"attributes": {"title": "b"}})
    worker.publish(source, [changed], started_at="2026-11-22T02:00:00Z")
    runner = worker.runner()
    worker.run(runner)
    dead = worker.broker.records(s.topic_dlq)
    offsets = {int(dict(d.headers)["ncd_original_offset"]) for d in dead}
    first = 3 + 1 + 1  # the first aggregation's three records and the poison's started marker
    got = {p.name for i, p in enumerate(poison) if first + i - 1 in offsets}
    assert sorted(got) == sorted(p.name for p in poison if p.dead)
    assert all(dict(d.headers)["ncd_error"] for d in dead)
    events = [json.loads(r.value or b"") for r in worker.broker.records(s.topic_events)]
    assert [c["newValue"] for e in events for c in e["singleValueAttributeChanges"]] == ["b"]
