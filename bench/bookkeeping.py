"""The runner's per-aggregation tally (``Runner._summarize``) over one batch, in us per record.

One batch of 6,003 decisions in 3 partitions (a started marker, then 95 % unchanged, a run of
stored ones, more unchanged), best of 20. To compare two versions side by side, run it once
per version's ``processor`` tree, alternated (BENCHMARKS.md, "Issue 14")::

    python -m bench.bookkeeping                                  # in the work tree
    git archive 7e783df processor | tar -x -C /tmp/before        # the version before
    cd /tmp && PYTHONPATH=/tmp/before:$OLDPWD python -m bench.bookkeeping
"""

from __future__ import annotations

import time
from typing import Any

from processor.observability.aggregations import AggregationTracker
from processor.runner import Runner
from processor.worker.partition import Outcome, Verdict


def decisions() -> list[tuple[int, Outcome]]:
    """One batch's decisions as the runner keeps them: (partition, outcome)."""
    decided = []
    for p in range(3):
        decided.append((p, Outcome(Verdict.MARKER, source_id="s")))
        decided += [(p, Outcome(Verdict.UNCHANGED, source_id="s")) for _ in range(1900)]
        decided += [(p, Outcome(Verdict.STORED, source_id="s")) for _ in range(20)]
        decided += [(p, Outcome(Verdict.UNCHANGED, source_id="s")) for _ in range(80)]
    return decided


def main() -> None:
    decided = decisions()

    class _Holder:  # the one attribute ``_summarize`` uses
        _aggregations: Any

    best = float("inf")
    for _ in range(20):
        holder = _Holder()
        holder._aggregations = AggregationTracker()
        began = time.perf_counter()
        Runner._summarize(holder, decided)  # type: ignore[arg-type]
        best = min(best, time.perf_counter() - began)
    print(f"{best / len(decided) * 1e6:.3f} us per record")


if __name__ == "__main__":
    main()
