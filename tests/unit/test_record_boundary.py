"""No single record stops the worker: what fails in one record is undone and dead-lettered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import processor.worker.account_flow
import processor.worker.lifecycle
import processor.worker.outputs
import processor.worker.provisioning_flow
import processor.worker.registry
from processor.models import SourceDescriptor
from processor.runner import Runner
from processor.state import BatchOverlay, InMemoryStateStore, InMemoryStoreFactory
from processor.transport import OutRecord
from processor.worker.clock import SYSTEM_CLOCK, Clock
from tests.unit.conftest import SOURCE_ID, make_source
from tests.unit.memory_worker import MemoryWorker

T1, T2, T3 = "2026-11-20T01:00:00Z", "2026-11-21T01:00:00Z", "2026-11-22T01:00:00Z"


DEEP = "@deep@"


def with_deep(record: dict[str, Any], levels: int) -> bytes:
    """``record`` as JSON, its ``DEEP`` string replaced by lists nested ``levels`` deep."""
    nested = "[" * levels + '"x"' + "]" * levels
    return json.dumps(record).replace(f'"{DEEP}"', nested).encode()


def account(native: str, title: Any, source_id: str = SOURCE_ID, agg: str = "a") -> dict[str, Any]:
    """An account record of aggregation ``agg``."""
    return {
        "type": "account",
        "sourceId": source_id,
        "aggregationId": agg,
        "account": {"nativeIdentity": native, "attributes": {"title": title}},
    }


def key_of(value: dict[str, Any] | bytes, source_id: str) -> bytes:
    """The key the publisher gives a record: ``sourceId/<uuid or nativeIdentity>``."""
    if isinstance(value, bytes):
        return f"{source_id}/x".encode()
    account = value.get("account") or {}
    ref = account.get("uuid") or account.get("nativeIdentity") or value.get("aggregationId")
    return f"{value['sourceId']}/{ref}".encode()


class Upstream:
    """Writes aggregations record by record (hostile ones among them) and runs the worker."""

    def __init__(self, tmp_path: Path, source: SourceDescriptor | None = None) -> None:
        self.worker = MemoryWorker(tmp_path)
        self.source = source or make_source()
        self.worker.publisher().publish_source(self.source)

    def send(
        self, value: dict[str, Any] | bytes, topic: str | None = None, **key: bytes | None
    ) -> None:
        """Write one record keyed as the publisher keys it (bytes: by the source), or ``key=``."""
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        s = self.worker.settings
        record_key = key["key"] if "key" in key else key_of(value, self.source.id)
        out = OutRecord(topic or s.topic_aggregations, record_key, raw)
        self.worker.broker.producer().send(out)

    def aggregation(self, agg: str, started: str, records: list[dict[str, Any] | bytes]) -> None:
        base = {"sourceId": self.source.id, "aggregationId": agg}
        self.send({**base, "type": "aggregation.started", "startedAt": started, "mode": "FULL"})
        for record in records:
            self.send(record)
        self.send({**base, "type": "aggregation.completed", "status": "COMPLETED"})

    def run(self, clock: Clock = SYSTEM_CLOCK, **settings: Any) -> None:
        """Run a fresh worker until it has committed every input record (it must not raise).

        ``clock`` is the worker's clock; ``settings`` override the worker's settings.
        """
        configured = self.worker.settings.model_copy(update=settings)
        runner = Runner(configured, self.worker.broker, InMemoryStoreFactory(), clock=clock)
        self.worker.run(runner)

    def dead(self) -> list[str]:
        """The reason of every dead letter so far."""
        dlq = self.worker.broker.records(self.worker.settings.topic_dlq)
        return [dict(r.headers)["ncd_error"].decode() for r in dlq]

    def changes(self) -> list[tuple[str, str, Any]]:
        """(eventType, nativeIdentity, new title) of every event so far."""
        found = []
        for r in self.worker.broker.records(self.worker.settings.topic_events):
            event = json.loads(r.value or b"")
            titles = [c["newValue"] for c in event["singleValueAttributeChanges"]]
            found.append((event["eventType"], event["account"]["nativeIdentity"], *titles))
        return found


def _baseline(up: Upstream, *natives: str) -> None:
    up.aggregation("a1", T1, [account(n, "t1", agg="a1") for n in natives])
    up.run()


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ("attribute nested 300 levels", "nested deeper than 254 levels"),
        ("extra account field nested 1,000 levels", "nested deeper than 254 levels"),
        ("record nested 1,100 levels", "invalid JSON"),
    ],
)
def test_a_record_that_decodes_but_cannot_be_encoded_is_dead_lettered(
    tmp_path: Path, shape: str, reason: str
) -> None:
    """Nesting orjson decodes (1,024) but cannot encode (254) is dead-lettered; the rest flows."""
    up = Upstream(tmp_path)
    _baseline(up, "CN=a", "CN=b")
    hostile: dict[str, Any] | bytes
    if shape.startswith("attribute"):
        hostile = with_deep(account("CN=b", DEEP, agg="a2"), 300)
    elif shape.startswith("extra"):
        record = account("CN=b", "t1", agg="a2")
        record["account"]["extra"] = DEEP
        hostile = with_deep(record, 1000)
    else:
        hostile = b"[" * 1100 + b"]" * 1100
    up.aggregation("a2", T2, [account("CN=a", "t2", agg="a2"), hostile])
    up.run()
    assert len(up.dead()) == 1 and reason in up.dead()[0], up.dead()
    assert up.changes() == [("ACCOUNT_UPDATED", "CN=a", "t2")]


def test_a_failure_after_state_writes_undoes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decision failing after it wrote state leaves none: the next aggregation reports again."""
    up = Upstream(tmp_path)
    _baseline(up, "CN=a", "CN=boom")
    # The worker decides an update's event with update_event (the stored state as plain data).
    real = processor.worker.account_flow.update_event

    def failing(policy: Any, previous: Any, current: Any, *args: Any, **kwargs: Any) -> Any:
        if current is not None and current.nativeIdentity == "CN=boom":
            raise RuntimeError("a bug that quotes a value: secret-title")
        return real(policy, previous, current, *args, **kwargs)

    monkeypatch.setattr(processor.worker.account_flow, "update_event", failing)
    up.aggregation("a2", T2, [account("CN=a", "t2", agg="a2"), account("CN=boom", "t2", agg="a2")])
    up.run()
    assert up.dead() == ["could not be decided (RuntimeError in failing)"]
    monkeypatch.setattr(processor.worker.account_flow, "update_event", real)
    up.aggregation("a3", T3, [account("CN=a", "t2", agg="a3"), account("CN=boom", "t2", agg="a3")])
    up.run()
    assert up.changes() == [
        ("ACCOUNT_UPDATED", "CN=a", "t2"),
        ("ACCOUNT_UPDATED", "CN=boom", "t2"),
    ]


def test_an_output_that_cannot_be_built_undoes_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure building a record's events dead-letters it and undoes its state writes."""
    up = Upstream(tmp_path)
    _baseline(up, "CN=a", "CN=boom")
    real = processor.worker.outputs.event_record

    def failing(topic: str, event: Any, timestamp_ms: int) -> OutRecord:
        if event.native_identity == "CN=boom":
            raise ValueError("cannot build")
        return real(topic, event, timestamp_ms)

    monkeypatch.setattr(processor.worker.outputs, "event_record", failing)
    up.aggregation("a2", T2, [account("CN=boom", "t2", agg="a2"), account("CN=a", "t2", agg="a2")])
    up.run()
    assert up.dead() == ["could not be decided (ValueError in failing)"]
    assert up.changes() == [("ACCOUNT_UPDATED", "CN=a", "t2")]
    monkeypatch.setattr(processor.worker.outputs, "event_record", real)
    up.aggregation("a3", T3, [account("CN=boom", "t2", agg="a3"), account("CN=a", "t2", agg="a3")])
    up.run()
    assert up.changes()[1:] == [("ACCOUNT_UPDATED", "CN=boom", "t2")]


def test_a_failed_completion_leaves_its_aggregation_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A completion failing mid-way deletes nothing and stays open: a resent one completes it."""
    up = Upstream(tmp_path, make_source(delete_threshold=100))
    _baseline(up, "CN=a", "CN=gone")
    real = processor.worker.lifecycle.decide_event

    def failing(policy: Any, previous: Any, current: Any, *args: Any, **kwargs: Any) -> Any:
        if current is None:
            raise KeyError("deletion")
        return real(policy, previous, current, *args, **kwargs)

    monkeypatch.setattr(processor.worker.lifecycle, "decide_event", failing)
    up.aggregation("a2", T2, [account("CN=a", "t1", agg="a2")])
    up.run()
    assert up.dead() == ["could not be decided (KeyError in failing)"]
    assert up.changes() == []
    monkeypatch.setattr(processor.worker.lifecycle, "decide_event", real)
    completed = {"sourceId": SOURCE_ID, "aggregationId": "a2", "type": "aggregation.completed"}
    up.send({**completed, "status": "COMPLETED"})
    up.run()
    assert [(t, n) for t, n, *_ in up.changes()] == [("ACCOUNT_DELETED", "CN=gone")]


def test_a_failed_provisioning_record_is_dead_lettered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provisioning record whose decision fails is dead-lettered; aggregations flow on."""
    up = Upstream(tmp_path)
    _baseline(up, "CN=a")

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise AttributeError("no")

    monkeypatch.setattr(processor.worker.provisioning_flow, "apply_provisioning", failing)
    change = {"op": "Set", "attribute": "title", "value": "t9"}
    record = {
        "sourceId": SOURCE_ID,
        "input": {"key": {"simple": {"id": "CN=a"}}, "changes": [change]},
        "completedAt": "2026-11-20T05:00:00Z",  # after the baseline's start
    }
    up.send(record, topic=up.worker.settings.topic_provisioning)
    up.aggregation("a2", T2, [account("CN=a", "t2", agg="a2")])
    up.run()
    assert up.dead() == ["could not be decided (AttributeError in failing)"]
    assert up.changes() == [("ACCOUNT_UPDATED", "CN=a", "t2")]


def test_rollback_undoes_the_writes_since_the_savepoint_only() -> None:
    """Writes before the savepoint stay; puts and deletes after it are undone."""
    store = InMemoryStateStore()
    store.apply({b"k-stored": b"0"}, None)
    overlay = BatchOverlay(store)
    overlay.put(b"k-kept", b"1")
    overlay.savepoint()
    overlay.put(b"k-kept", b"2")
    overlay.put(b"k-new", b"3")
    overlay.delete(b"k-stored")
    overlay.rollback()
    assert dict(overlay.writes) == {b"k-kept": b"1"}
    assert overlay.get(b"k-stored") == b"0"


def test_a_config_record_that_fails_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source descriptor whose compilation raises is logged and skipped; the rest flows."""
    real = processor.worker.registry.SourcePolicy.from_source

    def failing(source: Any) -> Any:
        if source.id == "bad":
            raise RecursionError("compiling it")
        return real(source)

    monkeypatch.setattr(processor.worker.registry.SourcePolicy, "from_source", failing)
    up = Upstream(tmp_path)
    up.worker.publisher().publish_source(make_source(id="bad"))
    _baseline(up, "CN=a")
    up.aggregation("a2", T2, [account("CN=a", "t2", agg="a2")])
    up.run()
    assert up.changes() == [("ACCOUNT_UPDATED", "CN=a", "t2")]
