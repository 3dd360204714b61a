"""Crash safety: SIGKILL at seeded random moments of aggregations, restarting each time."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from processor.models import ChangeType, RemediationConfig
from processor.revert import run_revert
from tests.helpers import wait_for
from tests.integration.harness import WorkerEnv
from tests.reliability.common import Committed, chain, check_exact

pytestmark = [pytest.mark.broker, pytest.mark.slow]

KILLS = 10
#: Every other kill waits (freezing and thawing the worker) for a moment when one of its
#: transactions is open on the broker; this bounds the freezes per kill.
MAX_FREEZES = 400
SEED = 20261122
#: Snapshots available (the baseline and up to this many minus one aggregations).
MAX_STEPS = 14


def _aggregation_end(env: WorkerEnv) -> int:
    ends = env.input_end_offsets()
    return sum(offset for tp, offset in ends.items() if tp.topic == env.topic("aggregations"))


class OpenTransactions:
    """Whether the worker has a transaction open on the broker: an output partition whose
    high watermark is past its last stable offset (records written, not yet committed)."""

    def __init__(self, env: WorkerEnv) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self._consumers = [
            KafkaConsumer(bootstrap_servers=env.bootstrap, isolation_level=isolation)
            for isolation in ("read_committed", "read_uncommitted")
        ]
        self._tps = [
            TopicPartition(env.topic(name), p)
            for name in ("changelog", "events")
            for p in range(env.partitions)
        ]

    def any_open(self) -> bool:
        stable, written = (c.end_offsets(self._tps) for c in self._consumers)
        return any(stable[tp] < written[tp] for tp in self._tps)

    def close(self) -> None:
        for consumer in self._consumers:
            consumer.close()


def _kill_inside_a_transaction(
    worker: subprocess.Popen[bytes], probe: OpenTransactions, rng: random.Random
) -> None:
    """Freeze the worker at random moments until one finds a transaction of it open on the
    broker, then SIGKILL it there."""
    for _ in range(MAX_FREEZES):
        worker.send_signal(signal.SIGSTOP)
        if probe.any_open():
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=60)
            return
        worker.send_signal(signal.SIGCONT)
        time.sleep(rng.uniform(0.0, 0.05))
    raise AssertionError(f"no open transaction seen in {MAX_FREEZES} freezes")


def _aborted_records(env: WorkerEnv, name: str) -> int:
    """Records of ``name`` that only a read_uncommitted reader sees: aborted transactions."""
    return len(env.read_all(name, "read_uncommitted")) - len(env.read_all(name))


def _check_remediations(env: WorkerEnv, source_path: Path, tmp_path: Path) -> int:
    """The remediation topic holds exactly one command per native event, none repeated:
    what ``ncd-processor revert`` makes of the events the worker committed."""
    events_path = tmp_path / "committed-events.jsonl"
    events_path.write_text("".join(json.dumps(e) + "\n" for e in env.events()))
    expected = [
        json.loads(line)
        for line in run_revert(events_path=events_path, source_path=source_path).splitlines()
    ]
    commands = [r.json() for r in env.read_all("remediations")]
    ids = [c["id"] for c in commands]
    assert len(ids) == len(set(ids)), "a remediation command was delivered twice"

    def key(command: dict[str, Any]) -> str:
        return json.dumps(command, sort_keys=True)

    assert sorted(map(key, commands)) == sorted(map(key, expected))
    assert expected, "the run produced no remediation commands to check"
    return len(commands)


def test_repeated_sigkill_leaves_exactly_the_expected_events(
    env: WorkerEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ten SIGKILLs at random points of aggregations, half of them inside an open
    transaction, leave exactly the expected events and remediation commands, each once."""
    rng = random.Random(SEED)
    steps = chain(500, MAX_STEPS, SEED)
    steps.source = steps.source.model_copy(
        update={"remediation": RemediationConfig(revert=list(ChangeType))}
    )
    source_path = tmp_path / "source.json"
    source_path.write_text(steps.source.model_dump_json())
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
    probe = OpenTransactions(env)
    started = time.monotonic()
    # Every aggregation queued at once: each life of the worker has work until it is killed.
    while published < MAX_STEPS - 1:
        published += 1
        steps.publish(env, published)
    end = _aggregation_end(env)
    while len(kills) < KILLS:
        before = committed.total()
        assert before < end, f"the work ran out after {len(kills)} kills"
        worker = env.start()
        # Kill once this life has committed a batch: every other time inside one of its
        # open transactions, else after a further seeded random delay.
        wait_for(lambda b=before: committed.total() > b, "the worker to commit a batch")
        if len(kills) % 2 == 0:
            _kill_inside_a_transaction(worker, probe, rng)
        else:
            time.sleep(rng.uniform(0.0, 0.3))
            env.stop(worker, signal.SIGKILL)
        kills.append((committed.total(), end))
    probe.close()
    committed.close()
    env.start()
    env.wait_drained()
    note = check_exact(env, steps.expected_upto(published, tmp_path / "expected"))
    commands = _check_remediations(env, source_path, tmp_path)
    aborted = _aborted_records(env, "changelog")
    aborted_events = _aborted_records(env, "events")
    mid_run = sum(1 for at, end in kills if at < end)
    with capsys.disabled():
        print(
            f"\n[crash] {len(kills)} SIGKILLs ({mid_run} with input left to process) over "
            f"{published} aggregations ({_aggregation_end(env)} aggregation records) in "
            f"{time.monotonic() - started:.1f} s; aborted by the kills: {aborted} changelog "
            f"and {aborted_events} event records, hidden from read_committed readers; "
            f"{commands} remediation commands exact; {note}"
        )
    assert aborted > 0, f"no kill landed inside an open transaction: {kills}"
    assert mid_run >= KILLS // 2, f"too few kills landed mid-run: {kills}"
