"""One tally per batch: the stats, metrics, batch line and aggregation summary agree."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from processor.runner import Runner
from processor.state.store import InMemoryStoreFactory
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
