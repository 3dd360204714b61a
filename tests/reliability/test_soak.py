"""Short load soak: the worker keeps up with a steady stream and its heap stays flat."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import WorkerEnv
from tests.reliability.common import Chain, check_exact
from tests.reliability.soak import SoakResult, Workload, run_soak, summary

pytestmark = [pytest.mark.broker, pytest.mark.slow]

RECORDS = 100_000
RATE = 3_000.0
ACCOUNTS = 1_000
SEED = 11
#: Median RssAnon of the last quarter of the records over that of the third quarter. The
#: heap still rises slowly over the first ~150k records (1.11-1.13 seen here) and is flat
#: after (RELIABILITY.md); a leak of ~1 KiB per record (+25 MB per quarter) exceeds this.
MAX_ANON_GROWTH = 1.3


def _expected(workload: Workload, steps: int, workdir: Path) -> list[dict[str, Any]]:
    """``diff``'s events of each step, computed on the accounts that step changed."""
    expected: list[dict[str, Any]] = []
    previous = workload.accounts
    for step, snapshot, _ in workload.steps():
        if step >= steps:
            break
        if step == 0:  # the baseline: no events
            continue
        changed = [i for i, (a, b) in enumerate(zip(previous, snapshot, strict=True)) if a is not b]
        pair = [
            [accounts[i].model_dump(mode="json", exclude_none=True) for i in changed]
            for accounts in (previous, snapshot)
        ]
        expected += Chain(workload.source, workload.catalog, pair).expected(1, workdir)
        previous = snapshot
    return expected


def _median_anon_kb(result: SoakResult, low: float, high: float) -> float:
    """Median RssAnon over the samples whose committed offsets lie in [low, high) of all."""
    lo, hi = low * result.produced, high * result.produced
    window = [s.rss_anon_kb for s in result.samples if lo <= s.committed < hi]
    if high >= 1.0:
        window.append(result.samples[-1].rss_anon_kb)  # drained: committed == produced
    assert window, f"no memory sample between {low} and {high} of the records"
    return statistics.median(window)


def test_worker_keeps_up_and_heap_stays_flat(
    env: WorkerEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A paced stream of aggregations: all committed, exact events, no dead letters, flat heap."""
    workload = Workload(ACCOUNTS, 0.02, SEED)
    lines: list[str] = []
    result = run_soak(env, workload, RECORDS, RATE, interval_s=5.0, out=lines.append)
    assert result.produced >= RECORDS
    assert result.samples[-1].committed == result.produced
    assert env.read_all("dlq") == []
    note = check_exact(env, _expected(workload, result.steps, tmp_path / "expected"))
    middle = _median_anon_kb(result, 0.5, 0.75)
    end = _median_anon_kb(result, 0.75, 1.0)
    warm_up = 2 * workload.records_per_step(env.partitions)
    with capsys.disabled():
        print("\n[soak] " + "\n[soak] ".join(lines + summary(result, warm_up, 5.0)))
        print(f"[soak] RssAnon median 3rd quarter {middle / 1024:.1f} MB, last {end / 1024:.1f} MB")
        print(f"[soak] {note}")
    assert end <= middle * MAX_ANON_GROWTH, f"heap grew from {middle} KiB to {end} KiB"
