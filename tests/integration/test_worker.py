"""End to end: the real worker process on a real Kafka-protocol broker."""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.generate import Dataset, generate, write
from processor.core import uuid_key
from processor.diffing import run_diff
from processor.models import Account, AggregationStatus, CatalogEntry, SourceDescriptor
from tests.broker import SessionBroker, require_exactly_once
from tests.conftest import TRANSPORTS
from tests.helpers import wait_for
from tests.integration.harness import WorkerEnv, canonical

pytestmark = pytest.mark.broker


@pytest.fixture
def worker_transport() -> str:
    """The workers' ``NCD_TRANSPORT``; tests parametrized on it run on every transport."""
    return "kafka-python"


@pytest.fixture
def env(kafka_broker: SessionBroker, tmp_path: Path, worker_transport: str) -> Iterator[WorkerEnv]:
    """Unique topics, group and state for one test; every worker is killed afterwards."""
    worker_env = WorkerEnv(
        kafka_broker.bootstrap,
        tmp_path,
        hides_aborted=kafka_broker.hides_aborted,
        transport=worker_transport,
    )
    worker_env.ensure_topics()
    yield worker_env
    worker_env.stop_all()


def _dataset(n: int = 240, seed: int = 11) -> Dataset:
    return generate(n, 0.1, seed)


def _models(
    dataset: Dataset,
) -> tuple[SourceDescriptor, list[Account], list[Account], list[CatalogEntry]]:
    source = SourceDescriptor.model_validate(dataset.source)
    previous = [Account.model_validate(a) for a in dataset.previous()]
    current = [Account.model_validate(a) for a in dataset.current()]
    catalog = [CatalogEntry.model_validate(c) for c in dataset.catalog()]
    return source, previous, current, catalog


def _expected(dataset: Dataset, tmp_path: Path) -> list[dict[str, Any]]:
    """What ``ncd-processor diff`` gives for the dataset's two snapshots (no provisioning)."""
    out = tmp_path / "data"
    write(dataset, out)
    text = run_diff(
        source_path=out / "source.json",
        previous_path=out / "previous.jsonl",
        current_path=out / "current.jsonl",
        catalog_path=out / "catalog.jsonl",
    )
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("worker_transport", TRANSPORTS)
def test_two_aggregations_give_the_events_of_diff(env: WorkerEnv, tmp_path: Path) -> None:
    """A baseline then a second aggregation yield exactly the events `diff` gives for the pair."""
    dataset = _dataset()
    source, previous, current, catalog = _models(dataset)
    expected = _expected(dataset, tmp_path)
    assert expected, "the dataset must produce events"
    env.start()
    env.publish(source, previous, catalog, started_at="2026-11-22T08:00:00Z")
    env.publish(source, current, catalog, started_at="2026-11-22T09:00:00Z")
    env.wait_drained()
    events = env.events()
    assert canonical(events) == canonical(expected)
    assert len({e["id"] for e in events}) == len(events)
    record = env.read_all("events")[0]
    assert record.headers["ce_specversion"] == b"1.0"
    assert record.headers["ce_id"].decode() == record.json()["id"]
    assert record.headers["content-type"] == b"application/json"
    # keyed by the uuid as R1 matches it: a GUID as {lower-case hex}
    assert record.key == f"{source.id}/{uuid_key(record.json()['account']['uuid'])}"


@pytest.mark.parametrize("worker_transport", TRANSPORTS)
def test_state_is_restored_from_the_changelog(env: WorkerEnv, tmp_path: Path) -> None:
    """Stopped after the baseline with its state directory deleted, the worker restores it."""
    dataset = _dataset(seed=12)
    source, previous, current, catalog = _models(dataset)
    expected = _expected(dataset, tmp_path)
    worker = env.start()
    env.publish(source, previous, catalog, started_at="2026-11-22T08:00:00Z")
    env.wait_drained()
    assert env.stop(worker) == 0
    assert env.events() == []
    shutil.rmtree(env.state_dir("w1"))
    env.start()
    env.publish(source, current, catalog, started_at="2026-11-22T09:00:00Z")
    env.wait_drained()
    assert canonical(env.events()) == canonical(expected)
    assert "state_restored" in env.log_text()


def test_sigkill_mid_aggregation_gives_each_event_once(env: WorkerEnv, tmp_path: Path) -> None:
    """A worker killed with SIGKILL mid-aggregation and restarted emits every event exactly once."""
    dataset = _dataset(n=600, seed=13)
    source, previous, current, catalog = _models(dataset)
    expected = _expected(dataset, tmp_path)
    worker = env.start()
    env.publish(source, previous, catalog, started_at="2026-11-22T08:00:00Z")
    env.wait_drained()
    env.publish(source, current, catalog, started_at="2026-11-22T09:00:00Z")
    # Kill as soon as the first events of the second aggregation are committed.
    deadline = time.monotonic() + 120
    while not env.events():
        assert time.monotonic() < deadline, "no events appeared"
        time.sleep(0.05)
    env.stop(worker, signal.SIGKILL)
    env.start("w1")
    env.wait_drained()
    require_exactly_once(env.hides_aborted)
    events = env.events()
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert canonical(events) == canonical(expected)


def test_poison_records_are_dead_lettered(env: WorkerEnv) -> None:
    """Not-JSON, wrong-shape and unknown-source records go to the DLQ; good ones still flow."""
    dataset = _dataset(n=30, seed=14)
    source, previous, current, catalog = _models(dataset)
    env.start()
    env.publish(source, previous, catalog, started_at="2026-11-22T08:00:00Z")
    poison = [
        (b"k1", b"{not json"),
        (b"k2", json.dumps({"type": "account", "sourceId": source.id}).encode()),
        (
            b"k3",
            json.dumps(
                {
                    "type": "aggregation.started",
                    "sourceId": "no-such-source",
                    "aggregationId": "x",
                    "startedAt": "2026-11-22T08:30:00Z",
                }
            ).encode(),
        ),
    ]
    env.produce_raw("aggregations", poison)
    changed = current[0].model_copy(
        update={"attributes": {**current[0].attributes, "title": "Poison Survivor"}}
    )
    env.publish(source, [changed, *current[1:]], catalog, started_at="2026-11-22T09:00:00Z")
    env.wait_drained()
    dead = env.read_all("dlq")
    assert sorted((d.key.encode() if d.key else None, d.value) for d in dead) == sorted(poison)
    reasons = {d.key: d.headers["ncd_error"].decode() for d in dead}
    assert "invalid JSON" in reasons["k1"]
    assert "not a valid aggregation record" in reasons["k2"]
    assert reasons["k3"] == "unknown source"
    for d in dead:
        assert d.headers["ncd_original_topic"].decode() == env.topic("aggregations")
        assert int(d.headers["ncd_original_offset"]) >= 0
    titles = [
        c["newValue"]
        for e in env.events()
        for c in e["singleValueAttributeChanges"]
        if c["name"] == "title"
    ]
    assert "Poison Survivor" in titles


def test_failed_and_over_threshold_aggregations_delete_nothing(env: WorkerEnv) -> None:
    """A FAILED aggregation deletes nothing, nor one whose deletions exceed the threshold."""
    dataset = _dataset(n=60, seed=15)
    source, previous, _, catalog = _models(dataset)
    worker = env.start()
    env.publish(source, previous, catalog, started_at="2026-11-22T08:00:00Z")
    # Half the accounts are missing, but the aggregation FAILED.
    env.publish(
        source,
        previous[: len(previous) // 2],
        catalog,
        started_at="2026-11-22T09:00:00Z",
        status=AggregationStatus.FAILED,
    )
    # Half the accounts are missing in a COMPLETED one: over the 10% guard.
    env.publish(source, previous[: len(previous) // 2], catalog, started_at="2026-11-22T10:00:00Z")
    env.wait_drained()
    assert [e for e in env.events() if e["eventType"] == "ACCOUNT_DELETED"] == []
    assert env.stop(worker) == 0
    assert "delete_guard_tripped" in env.log_text()
    # One account missing out of 60 (20 per partition): 5% is under the guard, so it goes.
    env.start()
    env.publish(source, previous[1:], catalog, started_at="2026-11-22T11:00:00Z")
    env.wait_drained()
    deleted = [e for e in env.events() if e["eventType"] == "ACCOUNT_DELETED"]
    assert [e["account"]["nativeIdentity"] for e in deleted] == [previous[0].nativeIdentity]


def test_state_follows_partitions_to_another_worker(env: WorkerEnv, tmp_path: Path) -> None:
    """Two workers share the partitions; when one stops, the other restores its state."""
    dataset = _dataset(n=300, seed=16)
    source, previous, current, catalog = _models(dataset)
    expected = _expected(dataset, tmp_path)
    env.start("w1", http=True)
    second = env.start("w2", http=True)
    wait_for(
        lambda: env.assigned("w1") and env.assigned("w2"), "the two workers to share partitions"
    )
    env.publish(source, previous, catalog, started_at="2026-11-22T08:00:00Z")
    env.wait_drained()
    assert '"batch_committed"' in env.log_text("w2")
    assert env.stop(second) == 0
    env.publish(source, current, catalog, started_at="2026-11-22T09:00:00Z")
    env.wait_drained()
    assert canonical(env.events()) == canonical(expected)
    assert "state_restored" in env.log_text("w1")
