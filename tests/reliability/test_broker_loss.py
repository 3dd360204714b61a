"""Broker loss: the broker process is frozen mid-run; the worker waits it out and finishes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.reliability.common import Committed, chain, check_exact, log_events, own_broker_env

pytestmark = [pytest.mark.broker, pytest.mark.slow]

#: Longer than the session timeout (6 s) and the client request timeout (30 s).
PAUSE_S = 35.0


def test_frozen_broker_is_waited_out_without_crash_or_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGSTOP on the broker mid-aggregation: same worker process survives, events exact."""
    broker, env = own_broker_env(tmp_path)
    try:
        steps = chain(600, 2, 31)
        env.extra_env["NCD_MAX_BATCH_RECORDS"] = "20"
        worker = env.start()
        steps.publish(env, 0)
        env.wait_drained()
        committed = Committed(env)
        before = committed.total()
        steps.publish(env, 1)
        wait_for(lambda: committed.total() > before, "progress before the pause")
        committed.close()
        broker.pause()
        time.sleep(PAUSE_S)
        assert worker.poll() is None, "the worker exited while the broker was frozen"
        broker.resume()
        env.wait_drained()
        assert worker.poll() is None, "the worker exited after the broker came back"
        note = check_exact(env, steps.expected(1, tmp_path / "expected"))
        retries = log_events(env, "w1", "batch_retried")
        backoffs = [r["backoff_s"] for r in retries]
        # The freeze failed at least one batch, and it was retried (not lost, not fatal)
        # with a backoff that grows while failures go on.
        assert retries, "no batch was retried: the freeze went unnoticed"
        assert backoffs == sorted(backoffs), backoffs
        with capsys.disabled():
            print(
                f"\n[broker-loss] broker frozen {PAUSE_S:.0f} s; worker pid {worker.pid} "
                f"survived; {len(retries)} retried batches, backoffs {backoffs}; {note}"
            )
    finally:
        env.stop_all()
        broker.stop()
