"""The worker sizes the topics it creates from an existing aggregations topic."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from processor.config import Settings
from processor.errors import ConfigError
from processor.runner import Runner
from processor.state.store import InMemoryStoreFactory
from processor.topics import check_topics, ensure_topics
from processor.transport import Admin
from processor.transport.memory import MemoryBroker
from tests.unit.conftest import make_account, make_source
from tests.unit.memory_worker import MemoryWorker


def _settings(tmp_path: Path) -> Settings:
    return Settings(bootstrap_servers="memory:9092", state_dir=tmp_path, partitions=6)


def _counts(broker: MemoryBroker, settings: Settings) -> dict[str, int]:
    return {spec.name: len(broker.logs[spec.name]) for spec in settings.topic_specs()}


def test_topics_created_from_nothing_take_the_partitions_setting(tmp_path: Path) -> None:
    """With no aggregations topic, partitioned topics get --partitions, config topics 1."""
    broker, s = MemoryBroker(), _settings(tmp_path)
    assert ensure_topics(broker.admin(), s) == 6
    counts = _counts(broker, s)
    assert counts.pop(s.topic_sources) == counts.pop(s.topic_entitlements) == 1
    assert set(counts.values()) == {6}


def test_an_existing_aggregations_topic_sizes_what_the_worker_creates(tmp_path: Path) -> None:
    """An upstream 4-partition aggregations topic gives a 4-partition changelog and outputs."""
    broker, s = MemoryBroker(), _settings(tmp_path)
    broker.create_topic(s.topic_aggregations, 4)
    assert ensure_topics(broker.admin(), s) == 4
    counts = _counts(broker, s)
    for name in (
        s.topic_aggregations,
        s.topic_provisioning,
        s.topic_changelog,
        s.topic_events,
        s.topic_remediations,
        s.topic_dlq,
    ):
        assert counts[name] == 4, name


def test_checking_topics_creates_none_and_reads_the_aggregations_count(tmp_path: Path) -> None:
    """Without topic creation the count comes from aggregations and nothing is created."""
    broker, s = MemoryBroker(), _settings(tmp_path)
    broker.create_topic(s.topic_aggregations, 4)
    assert check_topics(broker.admin(), s) == 4
    assert set(broker.logs) == {s.topic_aggregations}


def test_existing_outputs_with_another_count_are_used_as_they_are(tmp_path: Path) -> None:
    """An events topic sized unlike aggregations is no co-partitioning conflict: accepted."""
    broker, s = MemoryBroker(), _settings(tmp_path)
    broker.create_topic(s.topic_aggregations, 4)
    broker.create_topic(s.topic_events, 2)
    broker.create_topic(s.topic_sources, 3)
    assert ensure_topics(broker.admin(), s) == 4
    assert len(broker.logs[s.topic_events]) == 2
    assert len(broker.logs[s.topic_sources]) == 3


@pytest.mark.parametrize("check", [ensure_topics, check_topics])
@pytest.mark.parametrize("which", ["topic_provisioning", "topic_changelog"])
def test_a_co_partitioned_topic_sized_differently_is_refused(
    tmp_path: Path, which: str, check: Callable[[Admin, Settings], int]
) -> None:
    """Provisioning or changelog sized unlike aggregations: one line naming both and a fix,
    whether the worker creates topics or only checks the ones it finds."""
    broker, s = MemoryBroker(), _settings(tmp_path)
    broker.create_topic(s.topic_aggregations, 4)
    broker.create_topic(getattr(s, which), 6)
    with pytest.raises(ConfigError) as caught:
        check(broker.admin(), s)
    message = str(caught.value)
    assert "\n" not in message
    assert f"topic {getattr(s, which)} has 6 partitions but {s.topic_aggregations} has 4" in (
        message
    )
    assert "4 partitions" in message.rsplit(":", 1)[1]
    assert s.topic_changelog not in broker.logs or which == "topic_changelog"


def test_the_worker_processes_an_upstream_four_partition_aggregations_topic(
    tmp_path: Path,
) -> None:
    """The worker starts on a 4-partition aggregations topic, sizes its changelog so, emits."""
    worker = MemoryWorker(tmp_path)
    s = worker.settings
    worker.broker.create_topic(s.topic_aggregations, 4)
    source = make_source()
    worker.publish(source, [make_account(f"CN=u{i}", {"title": "a"}) for i in range(8)])
    worker.publish(source, [make_account(f"CN=u{i}", {"title": "b"}) for i in range(8)])
    runner = worker.runner()
    worker.run(runner)
    assert len(worker.broker.logs[s.topic_changelog]) == 4
    events = [slot.record for log in worker.broker.logs[s.topic_events] for slot in log]
    assert len([r for r in events if r is not None]) == 8


def test_a_worker_that_creates_no_topics_still_refuses_a_co_partitioning_conflict(
    tmp_path: Path,
) -> None:
    """NCD_CREATE_TOPICS=false: the run still refuses a provisioning topic sized unlike
    aggregations, with the one-line fix, before reading anything."""
    worker = MemoryWorker(tmp_path)
    settings = worker.settings.model_copy(update={"create_topics": False})
    worker.broker.create_topic(settings.topic_aggregations, 4)
    worker.broker.create_topic(settings.topic_provisioning, 6)
    runner = Runner(settings, worker.broker, InMemoryStoreFactory())
    with pytest.raises(ConfigError, match="has 6 partitions but"):
        runner.run(threading.Event())
    assert settings.topic_changelog not in worker.broker.logs
