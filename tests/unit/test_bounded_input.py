"""Bounded time and metadata: future instants, aggregation ids, running aggregations, sizes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from processor import codec
from processor.errors import InputError
from processor.models import MAX_AGGREGATION_ID_CHARS
from processor.state import BatchOverlay, InMemoryStateStore
from processor.worker.batch_memory import BatchMemory
from processor.worker.partition import PartitionProcessor, Verdict
from processor.worker.state import MAX_RUNNING, RUNNING_EXPIRY_MS, SourceMeta, k_meta, k_seen
from tests.unit.conftest import SOURCE_ID, make_source
from tests.unit.fake_clock import FakeClock
from tests.unit.test_partition import Partition
from tests.unit.test_record_boundary import T1, T2, Upstream, account

NOW = datetime(2026, 11, 22, tzinfo=UTC).timestamp()
HOUR = 3600.0


def clock() -> FakeClock:
    """The worker's clock in these tests: its wall clock reads 2026-11-22T00:00:00Z."""
    return FakeClock(wall_ms=int(NOW * 1000))


def instant(offset_s: float) -> str:
    """An RFC 3339 instant ``offset_s`` seconds after NOW."""
    return datetime.fromtimestamp(NOW + offset_s, tz=UTC).isoformat().replace("+00:00", "Z")


def started(agg: str, at: str) -> dict[str, Any]:
    return {
        "sourceId": SOURCE_ID,
        "aggregationId": agg,
        "type": "aggregation.started",
        "startedAt": at,
    }


def completed(agg: str) -> dict[str, Any]:
    return {
        "sourceId": SOURCE_ID,
        "aggregationId": agg,
        "type": "aggregation.completed",
        "status": "COMPLETED",
    }


@pytest.mark.parametrize(
    ("offset_s", "dead"),
    [(23 * HOUR, False), (25 * HOUR, True), (1e11, True)],
    ids=["within a day", "past a day", "year 5000"],
)
def test_a_start_later_than_now_plus_the_allowance_is_dead_lettered(
    tmp_path: Path, offset_s: float, dead: bool
) -> None:
    """startedAt beyond the clock plus NCD_FUTURE_ALLOWANCE_S (one day) is dead-lettered."""
    up = Upstream(tmp_path)
    up.send(started("a1", instant(offset_s)))
    up.run(clock())
    expected = ["startedAt is in the future (beyond NCD_FUTURE_ALLOWANCE_S)"] if dead else []
    assert up.dead() == expected


def test_a_forged_far_future_start_does_not_make_real_changes_stale(tmp_path: Path) -> None:
    """An aggregation dated 9999 is refused, so a later real change is still reported."""
    up = Upstream(tmp_path)
    up.aggregation("a1", instant(-2 * HOUR), [account("CN=a", "t1", agg="a1")])
    up.send(started("forged", "9999-12-31T00:00:00Z"))
    up.send(account("CN=a", "admin", agg="forged"))
    up.aggregation("a2", instant(-HOUR), [account("CN=a", "admin", agg="a2")])
    up.run(clock())
    assert up.changes() == [("ACCOUNT_UPDATED", "CN=a", "admin")]
    assert len(up.dead()) == 2  # the forged start, then its account record


def test_the_allowance_is_a_setting(tmp_path: Path) -> None:
    """With NCD_FUTURE_ALLOWANCE_S of an hour, a start two hours ahead is dead-lettered."""
    up = Upstream(tmp_path)
    up.send(started("a1", instant(2 * HOUR)))
    up.run(clock(), future_allowance_s=HOUR)
    assert len(up.dead()) == 1


def test_a_provisioning_record_completed_in_the_future_is_dead_lettered(tmp_path: Path) -> None:
    """A completedAt far ahead would hold the race window open for ever: dead-lettered."""
    up = Upstream(tmp_path)
    change = {"op": "Set", "attribute": "title", "value": "t9"}
    record = {
        "sourceId": SOURCE_ID,
        "input": {"key": {"simple": {"id": "CN=a"}}, "changes": [change]},
        "completedAt": "9999-01-01T00:00:00Z",
    }
    up.send(record, topic=up.worker.settings.topic_provisioning)
    up.run(clock())
    assert up.dead() == ["completedAt is in the future (beyond NCD_FUTURE_ALLOWANCE_S)"]


def test_an_aggregation_id_over_the_maximum_is_dead_lettered(tmp_path: Path) -> None:
    """Aggregation ids longer than 128 characters are refused by the schema."""
    up = Upstream(tmp_path)
    up.send(started("a" * MAX_AGGREGATION_ID_CHARS, T1))
    up.send(started("a" * (MAX_AGGREGATION_ID_CHARS + 1), T1))
    up.run()
    assert len(up.dead()) == 1 and "aggregationId" in up.dead()[0]


def _meta(p: Partition) -> SourceMeta:
    raw = p.store.get(k_meta(SOURCE_ID))
    assert raw is not None
    return SourceMeta.decode(raw)


def test_a_flood_of_started_markers_keeps_the_metadata_bounded() -> None:
    """1,000 forged starts with 128-character ids keep at most MAX_RUNNING, the newest."""
    p = Partition(make_source())
    ids = [f"{i:04d}".ljust(MAX_AGGREGATION_ID_CHARS, "x") for i in range(1000)]
    for chunk in range(0, 1000, 100):
        p.batch(*(started(i, T1) for i in ids[chunk : chunk + 100]))
    meta = _meta(p)
    assert sorted(meta.running) == ids[-MAX_RUNNING:]
    assert len(meta.encode()) < 16_384


def test_a_start_older_than_every_running_one_at_the_cap_is_dead_lettered() -> None:
    """At the cap, a new aggregation older than all the running ones is refused, not kept."""
    p = Partition(make_source())
    p.batch(*(started(f"new-{i}", T2) for i in range(MAX_RUNNING)))
    [outcome] = p.batch(started("old", T1))
    assert outcome.verdict == Verdict.DEAD_LETTERED
    assert sorted(_meta(p).running) == sorted(f"new-{i}" for i in range(MAX_RUNNING))


def test_a_running_aggregation_a_week_older_than_the_latest_expires() -> None:
    """An aggregation never completed is dropped once one starts a week after it."""
    p = Partition(make_source())
    p.batch(started("stuck", "2026-11-01T00:00:00Z"), account("CN=a", "t1", agg="stuck"))
    assert p.store.count(k_seen(SOURCE_ID, "stuck")) == 1
    later = datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000 + RUNNING_EXPIRY_MS + 1
    p.batch(started("fresh", datetime.fromtimestamp(later / 1000, tz=UTC).isoformat()))
    assert sorted(_meta(p).running) == ["fresh"]
    assert p.store.count(k_seen(SOURCE_ID, "stuck")) == 0
    [late] = p.batch(account("CN=b", "t1", agg="stuck"))
    assert late.verdict == Verdict.DEAD_LETTERED


def test_a_state_value_over_the_record_limit_is_refused() -> None:
    """A put the changelog could not carry raises InputError (the record is dead-lettered)."""
    overlay = BatchOverlay(InMemoryStateStore(), max_value_bytes=100)
    overlay.put(b"k", b"x" * 100)
    with pytest.raises(InputError, match="over NCD_MAX_RECORD_BYTES"):
        overlay.put(b"k", b"x" * 101)
    assert overlay.get(b"k") == b"x" * 100


def test_a_provisioning_change_growing_state_past_the_limit_is_dead_lettered(
    tmp_path: Path,
) -> None:
    """The stored account would outgrow the changelog's limit: the record is dead-lettered."""
    up = Upstream(tmp_path)
    limit = 65_536
    up.aggregation("a1", T1, [account("CN=a", "x" * (limit - 1000), agg="a1")])
    change = {"op": "Set", "attribute": "department", "value": "y" * 2000}
    record = {
        "sourceId": SOURCE_ID,
        "input": {"key": {"simple": {"id": "CN=a"}}, "changes": [change]},
        "completedAt": "2026-11-20T05:00:00Z",
    }
    up.send(record, topic=up.worker.settings.topic_provisioning)
    up.run(max_record_bytes=limit)
    [reason] = up.dead()
    assert reason.startswith("its state value of ") and reason.endswith(
        " over NCD_MAX_RECORD_BYTES"
    )
    assert int(reason.split()[4]) > limit


def test_seen_accounts_are_written_in_chunks_under_the_size_limit() -> None:
    """Many long keys in one batch make several seen chunks, each within half the limit."""
    limit = 65_536
    p = Partition(make_source(delete_threshold=100))
    p.processor = PartitionProcessor(p.registry, max_record_bytes=limit)
    natives = [f"CN={i:05d}".ljust(190, "n") for i in range(1000)]
    p.batch(started("a1", T1), *(account(n, "x", agg="a1") for n in natives), completed("a1"))
    p.batch(started("a2", T2), *(account(n, "x", agg="a2") for n in natives[1:]))
    chunks = list(BatchOverlay(p.store).scan(k_seen(SOURCE_ID, "a2")))
    assert len(chunks) > 1
    assert all(len(value) <= limit // 2 for _, value in chunks)
    assert sum(len(codec.loads(value)) for _, value in chunks) == 999
    [outcome] = p.batch(completed("a2"))
    assert [e.native_identity for e in outcome.events] == [natives[0]]
    assert json.loads(json.dumps([e.operation for e in outcome.events])) == ["ACCOUNT_DELETED"]


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.text(min_size=1, max_size=30), max_size=40, unique=True),
    budget=st.integers(4, 400),
)
@example(keys=["ab", "cd"], budget=11)  # one byte short of one chunk
@example(keys=["ab", "cd"], budget=12)  # just one chunk
def test_seen_chunks_hold_every_key_within_the_budget_and_fill_each(
    keys: list[str], budget: int
) -> None:
    """The seen keys of a batch are cut into chunks that hold them all, in order; each chunk
    is within the budget (unless it is one key alone) and the next key would not have fit in
    it, whether the keys are ASCII or not, one chunk or many."""
    state = BatchOverlay(InMemoryStateStore())
    memory = BatchMemory(max_record_bytes=2 * budget)
    memory.saw_decided(SOURCE_ID, "a1", keys)
    memory.end(state, 7)
    written = dict(state.scan(k_seen(SOURCE_ID, "a1")))
    chunks = [codec.loads(written[k_seen(SOURCE_ID, "a1", 7, n)]) for n in range(len(written))]
    assert [key for chunk in chunks for key in chunk] == sorted(keys)

    def size(chunk: list[str]) -> int:
        return 2 + sum(len(key.encode()) + 3 for key in chunk)

    assert all(size(chunk) <= budget or len(chunk) == 1 for chunk in chunks)
    assert all(size(a + b[:1]) > budget for a, b in pairwise(chunks))
