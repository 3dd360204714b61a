"""One tally per batch: what was written, counted once, feeding logs, metrics and summaries.

Each decided record adds one :class:`Decided` to the batch's :class:`BatchTally` (a run of
unchanged records of one source adds one for the run), built from the decision *and* the
records actually written for it: an input whose event was too large
to write ends in the dead-letter topic, so it counts as dead-lettered (verdict, dead-letter
counter) and its unwritten event counts nowhere. Once the batch has committed,
:meth:`Tallies.committed` adds the one tally to the counters since start (:class:`Stats`),
the Prometheus metrics, the per-aggregation summaries and the ``batch_committed`` line, so
the four always agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from processor.observability.aggregations import AggregationTracker
from processor.observability.metrics import Metrics
from processor.worker.outputs import Outputs
from processor.worker.partition import Outcome, Verdict

log = structlog.get_logger("processor.runner")


@dataclass(frozen=True, slots=True)
class Decided:
    """What became of one input record, as written."""

    partition: int
    source_id: str | None
    verdict: str
    #: Types of the events written for it.
    event_types: tuple[str, ...] = ()
    #: ``(status, mode)`` of a completed marker.
    completed: tuple[str, str] | None = None
    #: How many records this stands for: a run of unchanged records is counted at once.
    count: int = 1


@dataclass
class Stats:
    """Counters since start; the shutdown line, the demo and the tests read them."""

    verdicts: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    deletes_suppressed: int = 0
    delete_guard_trips: int = 0
    batches: int = 0
    aborted_batches: int = 0
    restored_records: int = 0
    #: Aggregation records put back to wait for their partition's provisioning input.
    held_back: int = 0


@dataclass
class BatchTally:
    """The decisions of one batch, as written."""

    decided: list[Decided] = field(default_factory=list)
    verdicts: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    remediations: int = 0
    guard_trips: int = 0
    deletes_suppressed: int = 0

    @property
    def records(self) -> int:
        """Input records decided (a :class:`Decided` may stand for several): one verdict
        each."""
        return sum(self.verdicts.values())

    def add(self, partition: int, outcome: Outcome, outputs: Outputs) -> Decided:
        """Count one record: its decision and what was written for it."""
        verdict = Verdict.DEAD_LETTERED if outputs.dead_letter_reasons else outcome.verdict
        decided = Decided(
            partition, outcome.source_id, verdict, tuple(outputs.event_types), outcome.completed
        )
        self.decided.append(decided)
        self.verdicts[verdict] += 1
        self.events.update(outputs.event_types)
        self.remediations += outputs.remediations
        if outcome.deletes_suppressed:
            self.guard_trips += 1
            self.deletes_suppressed += outcome.deletes_suppressed
        return decided

    def unchanged(self, partition: int, source_id: str, count: int) -> None:
        """Count a run of ``count`` unchanged records of one source at once (nothing was
        written for them)."""
        self.decided.append(Decided(partition, source_id, Verdict.UNCHANGED, count=count))
        self.verdicts[Verdict.UNCHANGED] += count


class Tallies:
    """Adds each committed batch's tally to the stats, metrics, summaries and the log."""

    def __init__(self, stats: Stats, metrics: Metrics, aggregations: AggregationTracker):
        self.stats = stats
        self.metrics = metrics
        self.aggregations = aggregations

    def committed(self, tally: BatchTally, *, duration_s: float, commit_s: float) -> None:
        """Count a committed batch everywhere, and log it."""
        stats = self.stats
        stats.batches += 1
        stats.verdicts.update(tally.verdicts)
        stats.events.update(tally.events)
        stats.delete_guard_trips += tally.guard_trips
        stats.deletes_suppressed += tally.deletes_suppressed
        self.metrics.batch(
            tally.verdicts,
            tally.events,
            guard_trips=tally.guard_trips,
            remediations=tally.remediations,
            duration_s=duration_s,
        )
        log.info(
            "batch_committed",
            records=tally.records,
            verdicts=dict(tally.verdicts),
            events=dict(tally.events),
            remediations=tally.remediations,
            duration_ms=round(duration_s * 1000, 1),
            commit_ms=round(commit_s * 1000, 1),
        )
        summarize(self.aggregations, tally.decided)

    def summary(self) -> dict[str, Any]:
        """Counters for the shutdown line and for tests."""
        return {
            "verdicts": dict(self.stats.verdicts),
            "events": dict(self.stats.events),
            "batches": self.stats.batches,
            "aborted_batches": self.stats.aborted_batches,
            "delete_guard_trips": self.stats.delete_guard_trips,
            "deletes_suppressed": self.stats.deletes_suppressed,
        }


def summarize(aggregations: AggregationTracker, decided: Iterable[Decided]) -> None:
    """Tally committed decisions per aggregation; log the summary of each completed one.

    The decisions between two markers are counted in one call per partition, source, verdict
    and event types (in the order each first came, so every summary lists its verdicts and
    events as one call per decision would), not one per decision: a batch of ~2,000 records
    holds a few such groups, and a hundred or more decisions or runs. A marker (it opens or
    closes an aggregation's tally) is observed alone, after everything before it.
    """
    between: dict[tuple[int, str | None, str, tuple[str, ...]], int] = {}
    for one in decided:
        if one.verdict != Verdict.MARKER and one.completed is None:
            group = (one.partition, one.source_id, one.verdict, one.event_types)
            between[group] = between.get(group, 0) + one.count
            continue
        _observe(aggregations, between)
        summary = aggregations.observe(
            one.partition, one.source_id, one.verdict, one.event_types, one.completed
        )
        if summary is not None:
            log.info("aggregation_summary", **summary)
    _observe(aggregations, between)


def _observe(
    aggregations: AggregationTracker,
    between: dict[tuple[int, str | None, str, tuple[str, ...]], int],
) -> None:
    """Count the groups of decisions ``between`` two markers, and forget them."""
    for (partition, source_id, verdict, event_types), count in between.items():
        aggregations.observe(partition, source_id, verdict, event_types, count=count)
    between.clear()
