"""State faults: a deleted, truncated or corrupted state directory is noticed and rebuilt."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from processor.errors import StateCorruptError
from processor.state import open_store
from tests.integration.harness import WorkerEnv
from tests.reliability.common import chain, check_exact, log_events

SEED = 7


def _data_files(env: WorkerEnv) -> list[Path]:
    return sorted(env.state_dir("w1").glob("*/data.mdb"))


def _delete(env: WorkerEnv, rng: random.Random) -> None:
    shutil.rmtree(env.state_dir("w1"))


def _truncate(env: WorkerEnv, rng: random.Random) -> None:
    for path in _data_files(env):
        data = path.read_bytes()
        path.write_bytes(data[: rng.randrange(4096, len(data) - 4096)])


def _corrupt(env: WorkerEnv, rng: random.Random) -> None:
    for path in _data_files(env):
        data = bytearray(path.read_bytes())
        n = rng.randrange(64, 4096)
        at = rng.randrange(8192, len(data) - n)  # past the meta pages: the data itself
        data[at : at + n] = rng.randbytes(n)
        path.write_bytes(bytes(data))


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.parametrize(
    "damage", [_delete, _truncate, _corrupt], ids=["deleted", "truncated", "corrupted"]
)
def test_damaged_state_is_rebuilt_before_the_next_aggregation(
    env: WorkerEnv, tmp_path: Path, damage: object
) -> None:
    """After the state is damaged between runs, the next aggregation gives exactly diff's events."""
    steps = chain(240, 2, SEED)
    worker = env.start()
    steps.publish(env, 0)
    env.wait_drained()
    assert env.stop(worker) == 0
    assert len(_data_files(env)) == env.partitions
    damage(env, random.Random(SEED))  # type: ignore[operator]
    first_run = len(log_events(env, "w1", "state_restored"))
    env.start()
    steps.publish(env, 1)
    env.wait_drained()
    check_exact(env, steps.expected(1, tmp_path / "expected"))
    restored = log_events(env, "w1", "state_restored")[first_run:]
    assert sorted(r["partition"] for r in restored) == list(range(env.partitions))
    rebuilt = {r["partition"] for r in log_events(env, "w1", "state_store_rebuilt")}
    if damage is _delete:
        scratch = set(range(env.partitions))
    elif damage is _truncate:
        assert rebuilt == set(range(env.partitions))
        scratch = rebuilt
    else:
        # Random bytes may land on a free page (harmless: that store is kept and stays
        # exact); every store whose used pages were hit is rebuilt.
        assert rebuilt, "no corruption was noticed"
        scratch = rebuilt
    from_scratch = {r["partition"] for r in restored if r["from_offset"] is None}
    assert scratch <= from_scratch, f"not restored from scratch: {scratch - from_scratch}"


def _filled_store(root: Path) -> tuple[Path, dict[bytes, bytes]]:
    store = open_store(root, "agg", 0)
    data = {f"k{i:05d}".encode(): (f"value-{i}-" * 40).encode() for i in range(1500)}
    store.apply(data, 17)
    store.close()
    return root / "agg-0" / "data.mdb", data


@pytest.mark.parametrize("seed", range(60))
def test_random_bytes_anywhere_are_detected_or_harmless(tmp_path: Path, seed: int) -> None:
    """Random bytes over any part of a store raise StateCorruptError at open or change nothing."""
    path, data = _filled_store(tmp_path)
    rng = random.Random(seed)
    raw = bytearray(path.read_bytes())
    n = rng.randint(1, 4096)
    at = rng.randrange(0, len(raw) - n)
    raw[at : at + n] = rng.randbytes(n)
    path.write_bytes(bytes(raw))
    try:
        store = open_store(tmp_path, "agg", 0)
    except StateCorruptError:
        return  # noticed: the runner destroys the store and restores it from the changelog
    try:
        assert dict(store.scan(b"")) == data
        assert store.checkpoint() == 17
    finally:
        store.close()
