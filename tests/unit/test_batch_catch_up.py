"""A batch with a record of an unknown source reads the config topics without waiting long."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson

from processor.config import load_settings
from processor.transport import TP, InRecord
from processor.worker.config_follower import CATCH_UP_POLL_S, ConfigFollower
from processor.worker.outcome import Verdict
from processor.worker.registry import SourceRegistry
from tests.unit.fake_clock import FakeClock
from tests.unit.test_compact_path import start
from tests.unit.test_unchanged_runs import Worker


class _EmptyConfigTopics:
    """Config topics with nothing new: a poll waits out its whole timeout on ``clock``."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def partitions_for(self, topic: str) -> list[TP]:
        return [TP(topic, 0)]

    def assign(self, positions: Mapping[TP, int | None]) -> None:
        pass

    def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        return dict.fromkeys(tps, 0)

    def position(self, tp: TP) -> int:
        return 0

    def poll(self, timeout_s: float, max_records: int) -> list[InRecord]:
        self.clock.advance(timeout_s)
        return []


def test_unknown_source_costs_a_batch_a_short_settle_not_the_start_ones() -> None:
    """Each batch naming a source not configured yet polls the config topics briefly: a source
    whose descriptor never comes must not cost every batch the start-up's settle second."""
    worker = Worker()
    clock = FakeClock()
    settings = load_settings(partitions=1, group_id="g", instance_id="i")
    follower = ConfigFollower(
        _EmptyConfigTopics(clock),  # type: ignore[arg-type]
        settings,
        SourceRegistry(),
        clock,
    )
    worker.decider._follower = follower
    marker = {**start("agg-1", "2026-11-20T10:00:00Z"), "sourceId": "not-configured"}
    unknown = orjson.dumps(marker)
    for _ in range(3):
        began = clock.monotonic()
        tally = worker.batch((b"k", unknown))
        assert tally.verdicts == {Verdict.DEAD_LETTERED: 1}  # still dead-lettered, as before
        assert clock.monotonic() - began < CATCH_UP_POLL_S / 4
