"""The completion of a FULL aggregation on the LMDB store: it deletes exactly the unseen
accounts, and a damaged value it needs is still detected."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.errors import StateCorruptError
from processor.state import InMemoryStateStore, StateStore, open_store
from processor.state.lmdb_format import DATA_DB
from tests.unit.test_partition import SRC, Partition, _source, acct, events

DAY1, DAY2, DAY3 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"


def _second_aggregation(
    store: StateStore,
    previous: set[int],
    current: list[int],
    cuts: list[int],
    newer: set[int],
) -> list[tuple[str, str]]:
    """Baseline ``previous``, then a FULL aggregation of ``current`` over batches cut at
    ``cuts`` (its completion in the last one), while a newer aggregation writes ``newer``;
    the events of the second aggregation's batches."""
    p = Partition(_source(deleteThreshold=100))
    p.store = store
    p.aggregation("a1", DAY1, [acct(i) for i in sorted(previous)])
    a2 = {"sourceId": SRC, "aggregationId": "a2"}
    a3 = {"sourceId": SRC, "aggregationId": "a3"}
    records = [{"type": "aggregation.started", **a2, "startedAt": DAY2, "mode": "FULL"}]
    records.append({"type": "aggregation.started", **a3, "startedAt": DAY3, "mode": "FULL"})
    records += [{"type": "account", **a3, "account": acct(i, title="New")} for i in sorted(newer)]
    records += [{"type": "account", **a2, "account": acct(i)} for i in current]
    records.append({"type": "aggregation.completed", **a2, "status": "COMPLETED"})
    outcomes = []
    bounds = [0, *sorted({min(c, len(records)) for c in cuts}), len(records)]
    for start, end in itertools.pairwise(bounds):
        if start < end:
            outcomes += p.batch(*records[start:end])
    return [e for e in events(outcomes) if e[0] == "ACCOUNT_DELETED"]


@settings(max_examples=40, deadline=None)
@given(
    previous=st.sets(st.integers(0, 11)),
    current=st.lists(st.integers(0, 15), unique=True),
    cuts=st.lists(st.integers(1, 30), max_size=3),
    newer=st.sets(st.integers(0, 15), max_size=3),
)
def test_full_completion_deletes_exactly_the_unseen_accounts(
    previous: set[int], current: list[int], cuts: list[int], newer: set[int]
) -> None:
    """Whatever the batches, on disk or in memory, a FULL completion deletes the stored
    accounts it did not see and no newer aggregation wrote, and nothing else."""
    expected = sorted(f"CN=user{i},DC=example" for i in previous - set(current) - newer)
    with tempfile.TemporaryDirectory() as tmp:
        disk = open_store(Path(tmp), "acc", 0, map_size_bytes=1 << 20, verify=False)
        try:
            on_disk = _second_aggregation(disk, previous, current, cuts, newer)
        finally:
            disk.close()
    in_memory = _second_aggregation(InMemoryStateStore(), previous, current, cuts, newer)
    assert on_disk == in_memory
    assert sorted(identity for _, identity in on_disk) == expected


# The stored entry: CRC32C (4 bytes), then the account's version byte and its asOf.
AS_OF_HIGH_BYTE = 6


def _damage(directory: Path, marker: bytes) -> None:
    """Make the stored account that contains ``marker`` look far newer (the store is closed)."""
    env = lmdb.open(str(directory), max_dbs=2)
    try:
        data = env.open_db(DATA_DB)
        with env.begin(write=True, db=data) as txn:
            key, value = next((k, v) for k, v in txn.cursor() if marker in v)
            at = AS_OF_HIGH_BYTE
            txn.put(key, value[:at] + bytes([value[at] ^ 0x40]) + value[at + 1 :])
    finally:
        env.close()


def test_a_damaged_unseen_account_fails_the_completion(tmp_path: Path) -> None:
    """The completion reads an unseen account's asOf behind its checksum: an asOf damaged to
    look newer (which would keep the account silently) is an error, not a skipped delete."""
    p = Partition()
    p.store = open_store(tmp_path, "acc", 0, verify=False)
    p.aggregation("a1", DAY1, [acct(i) for i in range(20)])
    p.store.close()
    _damage(tmp_path / "acc-0", b"CN=user0,")
    p.store = open_store(tmp_path, "acc", 0, verify=False)
    try:
        with pytest.raises(StateCorruptError):
            p.aggregation("a2", DAY2, [acct(i) for i in range(1, 20)])
    finally:
        p.store.close()
