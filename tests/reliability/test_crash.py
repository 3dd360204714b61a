"""Crash safety: SIGKILL at seeded random moments of aggregations, restarting each time."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from tests.integration.harness import WorkerEnv
from tests.reliability.common import Committed, chain, check_exact, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]

KILLS = 10
SEED = 20261122
#: Snapshots available (the baseline and up to this many minus one aggregations).
MAX_STEPS = 14


def _aggregation_end(env: WorkerEnv) -> int:
    ends = env.input_end_offsets()
    return sum(offset for tp, offset in ends.items() if tp.topic == env.topic("aggregations"))


def test_repeated_sigkill_leaves_exactly_the_expected_events(
    env: WorkerEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ten SIGKILLs at random points of aggregations leave exactly the expected events."""
    rng = random.Random(SEED)
    steps = chain(500, MAX_STEPS, SEED)
    # Small batches: many transactions per aggregation, so kills land between and inside them.
    env.extra_env["NCD_MAX_BATCH_RECORDS"] = "20"
    worker = env.start()
    steps.publish(env, 0)
    env.wait_drained()
    env.stop(worker, signal.SIGKILL)
    published = 0
    end = 0
    committed = Committed(env)
    kills: list[tuple[int, int]] = []  # (committed at the kill, input end then)
    started = time.monotonic()
    for _ in range(KILLS):
        # Keep work queued: two aggregations ahead of what is committed.
        while published < MAX_STEPS - 1 and (published < 2 or committed.total() >= end - 1):
            published += 1
            steps.publish(env, published)
            end = _aggregation_end(env)
        before = committed.total()
        worker = env.start()
        # Kill once this life has committed a batch, after a further seeded random delay.
        wait_for(lambda b=before: committed.total() > b, "the worker to commit a batch")
        time.sleep(rng.uniform(0.0, 0.3))
        env.stop(worker, signal.SIGKILL)
        kills.append((committed.total(), end))
    committed.close()
    env.start()
    env.wait_drained()
    note = check_exact(env, steps.expected_upto(published, tmp_path / "expected"))
    mid_run = sum(1 for at, end in kills if at < end)
    with capsys.disabled():
        print(
            f"\n[crash] {KILLS} SIGKILLs ({mid_run} with input left to process) over "
            f"{published} aggregations ({_aggregation_end(env)} aggregation records) in "
            f"{time.monotonic() - started:.1f} s; committed/end at the kills: {kills}; {note}"
        )
    assert mid_run >= KILLS // 2, f"too few kills landed mid-run: {kills}"
