"""One tally per batch: the stats, metrics, batch line and aggregation summary agree."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from processor.observability.aggregations import AggregationTracker
from processor.runner import Runner
from processor.state.store import InMemoryStoreFactory
from processor.worker.tally import Decided, summarize
from tests.unit.conftest import make_account, make_source
from tests.unit.memory_worker import MemoryWorker


def test_an_output_dead_lettered_for_its_size_counts_as_a_dead_letter_not_an_event(
    tmp_path: Path,
) -> None:
    """An input whose event is too large to write counts as dead-lettered everywhere, and its
    unwritten event counts nowhere."""
    worker = MemoryWorker(tmp_path)
    small = worker.settings.model_copy(update={"max_record_bytes": 1024})
    source = make_source()
    worker.publish(source, [make_account("CN=small", {"title": "t"})])
    worker.run(Runner(small, worker.broker, InMemoryStoreFactory()))
    big = make_account("CN=big", {"title": "x" * 600})
    worker.publish(source, [make_account("CN=small", {"title": "t"}), big])
    runner = Runner(small, worker.broker, InMemoryStoreFactory())
    with capture_logs() as logs:
        worker.run(runner)
    assert worker.broker.records(worker.settings.topic_events) == []
    assert len(worker.broker.records(worker.settings.topic_dlq)) == 1
    registry = runner.metrics.registry
    assert registry.get_sample_value("ncd_dead_letters_total") == 1
    for event_type in ("ACCOUNT_CREATED", "ACCOUNT_UPDATED", "ACCOUNT_DELETED"):
        assert registry.get_sample_value("ncd_events_total", {"type": event_type}) == 0
    assert registry.get_sample_value("ncd_records_total", {"verdict": "emitted"}) == 0
    assert registry.get_sample_value("ncd_records_total", {"verdict": "dead_lettered"}) == 1
    assert runner.stats.verdicts["dead_lettered"] == 1
    assert sum(runner.stats.events.values()) == 0
    batches = [line for line in logs if line["event"] == "batch_committed"]
    assert sum(sum(line["events"].values()) for line in batches) == 0
    [summary] = [line for line in logs if line["event"] == "aggregation_summary"]
    assert summary["verdicts"] == {"marker": 2, "unchanged": 1, "dead_lettered": 1}
    assert summary["events"] == {}


_PLACES = {
    "partition": st.sampled_from([0, 0, 1]),
    "source_id": st.sampled_from(["s1", "s1", "s2", None]),
}
#: Decisions as a batch holds them: markers (started, or completed with an outcome), other
#: decisions one by one, and runs of unchanged records.
_DECIDED = st.one_of(
    st.builds(
        Decided,
        **_PLACES,
        verdict=st.just("marker"),
        completed=st.sampled_from([None, ("ok", "FULL")]),
    ),
    st.builds(
        Decided,
        **_PLACES,
        verdict=st.sampled_from(["unchanged", "emitted", "stored", "stale"]),
        event_types=st.sampled_from([(), ("ACCOUNT_UPDATED",), ("ACCOUNT_CREATED", "X")]),
    ),
    st.builds(Decided, **_PLACES, verdict=st.just("unchanged"), count=st.integers(1, 5)),
)


@given(st.lists(st.lists(_DECIDED, max_size=30), max_size=4))
@settings(max_examples=300)
def test_summarize_counts_as_one_observation_per_decision_would(
    batches: list[list[Decided]],
) -> None:
    """summarize() of batches of decisions logs the same summaries (counts, and the order of
    their verdicts and events) and leaves the same tallies open as observing each decision
    alone, one count at a time."""
    clock = iter(range(10_000)).__next__
    grouped, alone = AggregationTracker(clock), AggregationTracker(clock)
    expected = []
    for batch in batches:
        for one in batch:
            for _ in range(one.count):
                summary = alone.observe(
                    one.partition, one.source_id, one.verdict, one.event_types, one.completed
                )
                if summary is not None:
                    expected.append({**summary, "duration_s": None})
    with capture_logs() as logs:
        for batch in batches:
            summarize(grouped, batch)
    got = [{**line, "duration_s": None} for line in logs]
    assert [list(s["verdicts"]) for s in got] == [list(s["verdicts"]) for s in expected]
    assert [list(s["events"]) for s in got] == [list(s["events"]) for s in expected]
    assert [{k: v for k, v in s.items() if k not in ("event", "log_level")} for s in got] == (
        expected
    )
    assert grouped.open_count() == alone.open_count()
