"""Per-aggregation tallies for the one summary log line of each aggregation.

An aggregation reaches each input partition as a ``started`` marker, account records, and a
``completed`` marker. The runner feeds every committed decision here; a completed marker
closes the tally of its (partition, source) and returns the summary to log. Only verdicts,
event types and counts are kept: nothing of an account.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

MARKER = "marker"


@dataclass
class _Tally:
    #: Clock reading at the started marker; ``None`` when this worker did not see it
    #: (it took the partition over in the middle of the aggregation).
    started: float | None
    verdicts: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)


class AggregationTracker:
    """Open tallies keyed by (partition, source id), between started and completed markers."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._open: dict[tuple[int, str], _Tally] = {}

    def observe(
        self,
        partition: int,
        source_id: str | None,
        verdict: str,
        event_types: Iterable[str] = (),
        completed: tuple[str, str] | None = None,
        count: int = 1,
    ) -> dict[str, Any] | None:
        """Count ``count`` decisions (a run of one verdict, the same events); on a completed
        marker return the aggregation's summary.

        ``completed`` is ``(status, mode)`` of a completed marker. Records without a source
        (unreadable input) belong to no aggregation and are not counted here.
        """
        if source_id is None:
            return None
        key = (partition, source_id)
        if verdict == MARKER and completed is None:
            tally = self._open[key] = _Tally(self._clock())
        else:
            found = self._open.get(key)
            tally = self._open[key] = _Tally(None) if found is None else found
        tally.verdicts[verdict] += count
        for event_type in event_types:
            tally.events[event_type] += count
        if completed is None:
            return None
        del self._open[key]
        status, mode = completed
        return {
            "source_id": source_id,
            "partition": partition,
            "status": status,
            "mode": mode,
            "records": sum(tally.verdicts.values()),
            "verdicts": dict(tally.verdicts),
            "events": dict(tally.events),
            "duration_s": None
            if tally.started is None
            else round(self._clock() - tally.started, 3),
        }

    def forget(self, partition: int) -> None:
        """Drop the tallies of a partition taken away from this worker."""
        for key in [k for k in self._open if k[0] == partition]:
            del self._open[key]

    def open_count(self) -> int:
        """How many aggregations are being tallied."""
        return len(self._open)
