"""Rebalance: a worker killed mid-aggregation hands its partitions over, then takes some back."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.broker import SessionBroker
from tests.helpers import wait_for
from tests.reliability.common import chain, check_exact, log_events, session_env

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_killed_worker_hands_over_and_rejoins_without_loss(
    kafka_broker: SessionBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL one of two workers on 6 partitions: exact events, before and after it rejoins."""
    env = session_env(kafka_broker, tmp_path, partitions=6)
    try:
        steps = chain(600, 3, 41)
        env.extra_env["NCD_MAX_BATCH_RECORDS"] = "20"
        env.start("w1", http=True)
        second = env.start("w2", http=True)
        wait_for(lambda: env.assigned("w1") and env.assigned("w2"), "both workers to join")
        steps.publish(env, 0)
        env.wait_drained()
        steps.publish(env, 1)
        wait_for(lambda: bool(env.read_all("events")), "the first events")
        taken = env.assigned("w2")
        env.stop(second, signal.SIGKILL)
        wait_for(lambda: env.assigned("w1") == list(range(6)), "w1 to take every partition")
        env.wait_drained()
        first = check_exact(env, steps.expected(1, tmp_path / "expected"))
        restored = {r["partition"] for r in log_events(env, "w1", "state_restored")}
        assert set(taken) <= restored, f"w1 did not restore {taken}: {restored}"
        # The killed worker comes back: partitions move again, and nothing is lost.
        env.start("w2", http=True)
        wait_for(lambda: env.assigned("w2") and len(env.assigned("w1")) < 6, "w2 to rejoin")
        time.sleep(1.0)
        steps.publish(env, 2)
        env.wait_drained()
        second_note = check_exact(env, steps.expected_upto(2, tmp_path / "expected"))
        rejoined = env.assigned("w2")
        assert rejoined and sorted(set(env.assigned("w1")) | set(rejoined)) == list(range(6))
        with capsys.disabled():
            print(
                f"\n[rebalance] w2 killed holding {taken}; w1 restored {sorted(restored)}; "
                f"w2 rejoined with {rejoined}; {first}; {second_note}"
            )
    finally:
        env.stop_all()
