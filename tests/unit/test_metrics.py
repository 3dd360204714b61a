"""Prometheus metrics of the worker, the per-aggregation tally, and the summary log lines."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import structlog

from processor import runner as runner_module
from processor.observability.aggregations import AggregationTracker
from processor.observability.logging import configure_logging
from processor.observability.metrics import Metrics
from processor.runner import Runner
from processor.state.store import InMemoryStoreFactory
from processor.transport import TP
from tests.unit.conftest import make_account, make_source
from tests.unit.memory_worker import HookedFactory, MemoryWorker

SOURCE_A = "2c91808a78efc63e0178fb8624b248c5"
SOURCE_B = "2c91808a78efc63e0178fb8624b24800"


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    """One sample of the runner's registry."""
    return metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def log_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[StringIO]:
    """The process's structlog output as JSON lines in a buffer (reset afterwards)."""
    buffer = StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging("debug", "json")
    yield buffer
    structlog.reset_defaults()


def parsed(buffer: StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


# ---------------------------------------------------------------------- the Metrics class


def test_every_agreed_metric_is_exposed_from_the_start() -> None:
    """A fresh registry already shows every agreed series name, verdicts and types at 0."""
    metrics = Metrics(verdicts=["emitted", "stale"], event_types=["ACCOUNT_CREATED"])
    metrics.track_ready(lambda: False)
    text = metrics.render().decode()
    for name in (
        "ncd_dead_letters_total",
        "ncd_delete_guard_trips_total",
        "ncd_stale_records_total",
        "ncd_remediations_total",
        "ncd_batch_duration_seconds_count",
        "ncd_restore_records_total",
        "ncd_ready",
    ):
        assert f"\n{name} 0.0" in text, name
    assert 'ncd_records_total{verdict="emitted"} 0.0' in text
    assert 'ncd_events_total{type="ACCOUNT_CREATED"} 0.0' in text


def test_each_metrics_object_has_its_own_registry() -> None:
    """Two Metrics in one process neither clash nor share counts."""
    one, two = Metrics(), Metrics()
    one.batch({"stale": 2}, {}, guard_trips=0, remediations=0, duration_s=0.1)
    assert value(one, "ncd_stale_records_total") == 2
    assert value(two, "ncd_stale_records_total") == 0


def test_batch_counts_verdicts_events_and_derived_counters() -> None:
    """A batch adds to records by verdict, events by type, dead letters, stale, trips."""
    metrics = Metrics()
    verdicts = {"emitted": 3, "dead_lettered": 2, "stale": 1}
    metrics.batch(verdicts, {"ACCOUNT_UPDATED": 4}, guard_trips=1, remediations=2, duration_s=0.02)
    metrics.batch({"emitted": 1}, {}, guard_trips=0, remediations=0, duration_s=0.5)
    assert value(metrics, "ncd_records_total", verdict="emitted") == 4
    assert value(metrics, "ncd_records_total", verdict="dead_lettered") == 2
    assert value(metrics, "ncd_events_total", type="ACCOUNT_UPDATED") == 4
    assert value(metrics, "ncd_dead_letters_total") == 2
    assert value(metrics, "ncd_stale_records_total") == 1
    assert value(metrics, "ncd_delete_guard_trips_total") == 1
    assert value(metrics, "ncd_remediations_total") == 2
    assert value(metrics, "ncd_batch_duration_seconds_count") == 2
    assert value(metrics, "ncd_batch_duration_seconds_bucket", le="0.025") == 1


def test_lag_adds_both_input_topics_per_partition_and_forget_drops_series() -> None:
    """Lag of co-partitioned topics adds up per partition; a revoked partition's series go."""
    metrics = Metrics()
    metrics.lag({TP("aggs", 0): 5, TP("prov", 0): 2, TP("aggs", 1): 0})
    metrics.state_size(0, lambda: 9)
    metrics.restoring(0, 3, 4)
    assert value(metrics, "ncd_consumer_lag", partition="0") == 7
    assert value(metrics, "ncd_consumer_lag", partition="1") == 0
    metrics.forget_partition(0)
    metrics.forget_partition(7)  # never seen: no error
    for name in ("ncd_consumer_lag", "ncd_state_keys", "ncd_restore_remaining"):
        assert value(metrics, name, partition="0") is None
    assert value(metrics, "ncd_restore_records_total") == 3


# ---------------------------------------------------------------------- the tally


def test_tracker_summarizes_from_started_to_completed_marker() -> None:
    """Counts between a started and a completed marker make one summary, timed by the clock."""
    now = iter([10.0, 12.5])
    tracker = AggregationTracker(clock=lambda: next(now))
    assert tracker.observe(0, "s", "marker") is None
    assert tracker.observe(0, "s", "emitted", ["ACCOUNT_UPDATED"]) is None
    assert tracker.observe(1, "s", "stored") is None  # another partition: its own tally
    assert tracker.observe(0, None, "dead_lettered") is None  # no source: no aggregation
    summary = tracker.observe(0, "s", "marker", ["ACCOUNT_DELETED"], ("COMPLETED", "FULL"))
    assert summary == {
        "source_id": "s",
        "partition": 0,
        "status": "COMPLETED",
        "mode": "FULL",
        "records": 3,
        "verdicts": {"marker": 2, "emitted": 1},
        "events": {"ACCOUNT_UPDATED": 1, "ACCOUNT_DELETED": 1},
        "duration_s": 2.5,
    }
    assert tracker.open_count() == 1
    tracker.forget(1)
    assert tracker.open_count() == 0


def test_tracker_without_started_marker_reports_no_duration() -> None:
    """A worker that took a partition over mid-aggregation summarizes what it saw, untimed."""
    tracker = AggregationTracker(clock=lambda: 1.0)
    tracker.observe(2, "s", "unchanged")
    summary = tracker.observe(2, "s", "marker", (), ("FAILED", "DELTA"))
    assert summary is not None
    assert summary["duration_s"] is None
    assert summary["verdicts"] == {"unchanged": 1, "marker": 1}


def test_tracker_counts_a_run_of_decisions_at_once() -> None:
    """A run counted in one call tallies exactly as the same decisions counted one by one."""
    decisions = [("unchanged", ())] * 5 + [("emitted", ("ACCOUNT_UPDATED",))] * 2
    one_by_one, at_once = (AggregationTracker(clock=lambda: 1.0) for _ in range(2))
    for tracker in (one_by_one, at_once):
        tracker.observe(0, "s", "marker")
    for verdict, events in decisions:
        one_by_one.observe(0, "s", verdict, events)
    at_once.observe(0, "s", "unchanged", count=5)
    at_once.observe(0, "s", "emitted", ["ACCOUNT_UPDATED"], count=2)
    done = ("COMPLETED", "FULL")
    expected = one_by_one.observe(0, "s", "marker", (), done)
    assert expected is not None and expected["verdicts"] == {
        "marker": 2,
        "unchanged": 5,
        "emitted": 2,
    }
    assert at_once.observe(0, "s", "marker", (), done) == expected


# ---------------------------------------------------------------------- through the runner


def _scenario(worker: MemoryWorker) -> None:
    """Two sources, two aggregations each, a replayed old aggregation and two poison records.

    Source A (threshold 50 %): baseline a0..a9, then a0 changed, a9 gone, a10 new.
    Its second completion emits the deletion, so it counts as ``emitted``.
    Source B (threshold 10 %): baseline b0..b3, then only b0: the delete guard trips.
    """
    source_a = make_source(id=SOURCE_A, name="A", delete_threshold=50)
    source_b = make_source(id=SOURCE_B, name="B", delete_threshold=10)
    accounts_a = [make_account(f"a{i}", {"title": "t"}) for i in range(10)]
    accounts_b = [make_account(f"b{i}", {"title": "t"}) for i in range(4)]
    worker.publish(source_a, accounts_a, started_at="2026-11-22T08:00:00Z")
    b1 = worker.publish(source_b, accounts_b, started_at="2026-11-22T08:00:00Z")
    second_a = [
        make_account("a0", {"title": "new"}),
        *accounts_a[1:9],
        make_account("a10", {"title": "t"}),
    ]
    worker.publish(source_a, second_a, started_at="2026-11-22T09:00:00Z")
    worker.publish(source_b, accounts_b[:1], started_at="2026-11-22T09:00:00Z")
    worker.publish(source_b, accounts_b, started_at="2026-11-22T08:00:00Z", aggregation_id=b1)
    worker.produce_raw(b"x", b'{"type": "account", "broken')
    worker.produce_raw(None, None)


def test_runner_metrics_after_two_aggregations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the scenario, every counter of the runner has the value the inputs imply."""
    monkeypatch.setattr(runner_module, "LAG_SAMPLE_S", 0.0)
    worker = MemoryWorker(tmp_path)
    _scenario(worker)
    stores = InMemoryStoreFactory()
    runner = worker.runner(stores)
    worker.run(runner)
    m = runner.metrics
    expected_verdicts = {
        "marker": 7,
        "stored": 14,
        "emitted": 3,
        "unchanged": 9,
        "stale": 6,
        "dead_lettered": 2,
        "applied": 0,
        "ignored": 0,
    }
    for verdict, n in expected_verdicts.items():
        assert value(m, "ncd_records_total", verdict=verdict) == n, verdict
    for event_type in ("ACCOUNT_CREATED", "ACCOUNT_UPDATED", "ACCOUNT_DELETED"):
        assert value(m, "ncd_events_total", type=event_type) == 1, event_type
    assert value(m, "ncd_dead_letters_total") == 2
    assert value(m, "ncd_stale_records_total") == 6
    assert value(m, "ncd_delete_guard_trips_total") == 1
    assert value(m, "ncd_remediations_total") == 0
    assert value(m, "ncd_batch_duration_seconds_count") == runner.stats.batches
    assert value(m, "ncd_consumer_lag", partition="0") == 0
    assert value(m, "ncd_state_keys", partition="0") == len(stores.tables[0].items)
    assert value(m, "ncd_restore_records_total") == 0
    assert value(m, "ncd_restore_remaining", partition="0") == 0


def test_lag_gauge_follows_the_consumer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With small batches the lag gauge shows what is left after each poll, then 0."""
    monkeypatch.setattr(runner_module, "LAG_SAMPLE_S", 0.0)
    worker = MemoryWorker(tmp_path, max_batch_records=5)
    worker.publish(make_source(), [make_account(f"n{i}") for i in range(10)])
    total = worker.broker.end_offset(TP(worker.settings.topic_aggregations, 0))
    runner = worker.runner()
    seen: list[float | None] = []
    worker.run(
        runner, lambda: seen.append(value(runner.metrics, "ncd_consumer_lag", partition="0"))
    )
    lags = [lag for lag in seen if lag is not None]
    # Nothing is read while the partition restores; then five records a poll.
    assert lags[:2] == [total, total - 5]
    assert lags == sorted(lags, reverse=True)
    assert lags[-1] == 0


def test_restore_progress_is_counted(tmp_path: Path) -> None:
    """A fresh store restores the whole changelog: remaining starts at its end, ends at 0."""
    worker = MemoryWorker(tmp_path)
    worker.publish(make_source(), [make_account(f"r{i}") for i in range(7)])
    worker.run(worker.runner())
    changelog = worker.settings.topic_changelog
    end = worker.broker.end_offset(TP(changelog, 0))
    restored = len(worker.broker.records(changelog))
    remaining_at_apply: list[float | None] = []
    runner: Runner | None = None

    def before_apply(_writes: int) -> None:
        assert runner is not None
        remaining_at_apply.append(value(runner.metrics, "ncd_restore_remaining", partition="0"))

    runner = worker.runner(HookedFactory(before_apply))
    after: list[float | None] = []
    worker.run(
        runner, lambda: after.append(value(runner.metrics, "ncd_restore_remaining", partition="0"))
    )
    assert remaining_at_apply[0] == end
    assert value(runner.metrics, "ncd_restore_records_total") == restored
    assert after[-1] == 0


def test_summary_lines_per_batch_and_per_aggregation(tmp_path: Path, log_lines: StringIO) -> None:
    """Each batch logs counts and duration; each completed aggregation logs its own tally."""
    worker = MemoryWorker(tmp_path)
    _scenario(worker)
    worker.run(worker.runner())
    lines = parsed(log_lines)
    batches = [line for line in lines if line["event"] == "batch_committed"]
    assert batches
    assert {"records", "verdicts", "events", "duration_ms", "remediations"} <= set(batches[0])
    summaries = [line for line in lines if line["event"] == "aggregation_summary"]
    assert len(summaries) == 4  # the replayed old aggregation completes nothing
    by_source = {
        source: [line for line in summaries if line["source_id"] == source]
        for source in (SOURCE_A, SOURCE_B)
    }
    assert [line["verdicts"] for line in by_source[SOURCE_B]] == [
        {"marker": 2, "stored": 4},
        {"marker": 2, "unchanged": 1},
    ]
    first_a, second_a = by_source[SOURCE_A]
    assert first_a["verdicts"] == {"marker": 2, "stored": 10}
    assert first_a["events"] == {}
    assert second_a["partition"] == 0
    assert (second_a["status"], second_a["mode"]) == ("COMPLETED", "FULL")
    # The completion that emits the deletion counts as emitted, not as a marker.
    assert second_a["verdicts"] == {"marker": 1, "emitted": 3, "unchanged": 8}
    assert second_a["events"] == {
        "ACCOUNT_UPDATED": 1,
        "ACCOUNT_CREATED": 1,
        "ACCOUNT_DELETED": 1,
    }
    assert second_a["records"] == 12
    assert isinstance(second_a["duration_s"], float)
