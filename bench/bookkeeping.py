"""The runner's per-aggregation tally (``tally.summarize``) over one batch, in us per record.

One batch of 6,003 decisions in 3 partitions (a started marker, then 95 % unchanged, a run of
stored ones, more unchanged), best of 20. To compare two versions side by side, run it once
per version's ``processor`` tree, alternated (BENCHMARKS.md, "Issue 14")::

    python -m bench.bookkeeping                                  # in the work tree
    git archive 7e783df processor | tar -x -C /tmp/before        # the version before
    cd /tmp && PYTHONPATH=/tmp/before:$OLDPWD python -m bench.bookkeeping
"""

from __future__ import annotations

import time

from processor.observability.aggregations import AggregationTracker
from processor.worker.partition import Verdict
from processor.worker.tally import Decided, summarize


def decisions() -> list[Decided]:
    """One batch's decisions as the runner's tally keeps them."""
    decided = []
    for p in range(3):
        decided.append(Decided(p, "s", Verdict.MARKER))
        decided += [Decided(p, "s", Verdict.UNCHANGED) for _ in range(1900)]
        decided += [Decided(p, "s", Verdict.STORED) for _ in range(20)]
        decided += [Decided(p, "s", Verdict.UNCHANGED) for _ in range(80)]
    return decided


def main() -> None:
    decided = decisions()

    best = float("inf")
    for _ in range(20):
        tracker = AggregationTracker()
        began = time.perf_counter()
        summarize(tracker, decided)
        best = min(best, time.perf_counter() - began)
    print(f"{best / len(decided) * 1e6:.3f} us per record")


if __name__ == "__main__":
    main()
