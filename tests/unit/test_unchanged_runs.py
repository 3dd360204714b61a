"""Runs of unchanged records decided in bulk by the batch step, as one at a time would."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any
from unittest import mock

import lmdb
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from processor.config import Settings, load_settings
from processor.errors import StateCorruptError, StateError
from processor.keys import record_key
from processor.runner import Runner
from processor.state import BatchOverlay, InMemoryStateStore, InMemoryStoreFactory, open_store
from processor.state.lmdb_format import DATA_DB
from processor.transport import InRecord, OutRecord
from processor.worker import partition as partition_module
from processor.worker.batch import BatchDecider
from processor.worker.batch_memory import BatchMemory
from processor.worker.partition import PartitionProcessor, Verdict
from processor.worker.partitions import Partition
from processor.worker.registry import SourceRegistry
from processor.worker.state import k_account
from processor.worker.tally import BatchTally
from tests.unit.conftest import make_account, make_source
from tests.unit.memory_worker import MemoryWorker
from tests.unit.test_compact_path import compact, completed, start
from tests.unit.test_fast_path import T1, T2
from tests.unit.test_partition import SRC, _source, acct

#: Half with GUIDs as Active Directory sends them, half with other uuids.
ACCOUNTS = [
    {**acct(n), "uuid": f"{{08ee6c6d-1c2e-4b3a-9d8f-{n:012x}}}"} if n % 2 else acct(n)
    for n in range(10)
]
KINDS = [
    *("same", "changed", "space", "wrong_key", "no_key", "upper", "hint", "cut", "tombstone"),
    "escaped",
]


class _Checkpoint:
    def __init__(self) -> None:
        self.sent: list[OutRecord] = []

    def send(self, record: OutRecord) -> None:
        self.sent.append(record)


class _Follower:
    def catch_up(self, settle_s: float = 1.0) -> None:
        pass


class Worker:
    """One partition decided batch by batch with the worker's batch step; commits each."""

    def __init__(self, store: InMemoryStateStore | None = None) -> None:
        self.settings: Settings = load_settings(partitions=1, group_id="g", instance_id="i")
        registry = SourceRegistry()
        registry.put_source(_source())
        self.store = store or InMemoryStateStore()
        self.partitions = {0: Partition(self.store, PartitionProcessor(registry))}
        self.decider = BatchDecider(self.settings, _Follower())  # type: ignore[arg-type]
        self.checkpoint = _Checkpoint()
        self.offset = 0
        self.tallies: list[BatchTally] = []

    def batch(self, *records: tuple[bytes | None, bytes | None]) -> BatchTally:
        """Decide ``(key, value)`` records of ``ncd.aggregations`` as one batch."""
        batch = []
        for key, value in records:
            topic = self.settings.topic_aggregations
            batch.append(InRecord(topic, 0, self.offset, key, value, (), 1_700_000_000_000))
            self.offset += 1
        tally, overlays = self.decider.decide(
            {0: batch},
            self.partitions,
            self.checkpoint,  # type: ignore[arg-type]
            2**62,
        )
        self.store.apply(overlays[0].writes, None)
        self.tallies.append(tally)
        return tally

    def aggregation(self, agg: str, started: str, accounts: list[dict[str, Any]]) -> BatchTally:
        marker = record_key(SRC, None, agg)
        return self.batch(
            (marker, orjson.dumps(start(agg, started))),
            *[(_key(a), compact(agg, a)) for a in accounts],
            (marker, orjson.dumps(completed(agg))),
        )


def _key(account: dict[str, Any]) -> bytes:
    return record_key(SRC, account["uuid"], account["nativeIdentity"])


def _record(agg: str, account: dict[str, Any], kind: str) -> tuple[bytes | None, bytes | None]:
    """An account record of the second aggregation, as it was or altered by ``kind``."""
    key, value = _key(account), compact(agg, account)
    uuid = account["uuid"].encode()
    if kind == "changed":
        value = compact(agg, {**account, "attributes": {"title": "Lead", "memberOf": ["g1"]}})
    elif kind == "space":
        value = value.replace(b'"attributes":', b'"attributes": ')
    elif kind == "wrong_key":
        key = _key(ACCOUNTS[(ACCOUNTS.index(account) + 1) % len(ACCOUNTS)])
    elif kind == "no_key":
        key = None
    elif kind == "upper":
        value = value.replace(uuid, uuid.upper())
    elif kind == "hint":
        head, _, rest = value.partition(b'"account":{')
        value = head + b'"account":{"x":{"uuid":"' + _key(ACCOUNTS[0])[6:] + b'"},' + rest
    elif kind == "escaped":  # its uuid's first character escaped, and keyed as its bytes
        escaped = b"\\u00" + uuid[:1].hex().encode() + uuid[1:]
        key, value = f"{SRC}/".encode() + escaped, value.replace(uuid, escaped)
    elif kind == "cut":
        value = value[:-20]
    elif kind == "tombstone":
        value = None
    return key, value


def _outcome(worker: Worker) -> tuple[Any, ...]:
    """Everything a worker produced: outputs, counts (runs expanded) and the state."""
    counts: Counter[tuple[str | None, str]] = Counter()
    for tally in worker.tallies:
        for one in tally.decided:
            counts[one.source_id, one.verdict] += one.count
    return (
        [(r.topic, r.key, r.value, r.headers) for r in worker.checkpoint.sent],
        [(dict(t.verdicts), dict(t.events), t.records, t.remediations) for t in worker.tallies],
        counts,
        list(worker.store.scan(b"")),
    )


def _second(
    kinds: list[str],
    split: int,
    runs: bool,
    alter: Callable[[str, dict[str, Any], str], tuple[bytes | None, bytes | None]] = _record,
    patches: Sequence[AbstractContextManager[Any]] = (),
    store: Any = None,
) -> tuple[Any, ...]:
    """The second aggregation (each account's record altered by ``alter`` as its kind says)
    in two batches split at ``split``: what :func:`_outcome` says; ``runs=False``: one record
    at a time; ``patches`` are in force while it is decided; ``store``: the state's (else in
    memory)."""
    worker = Worker(store)
    worker.aggregation("a1", T1, ACCOUNTS)
    marker = record_key(SRC, None, "a2")
    records = [
        (marker, orjson.dumps(start("a2", T2))),
        *[alter("a2", a, kind) for a, kind in zip(ACCOUNTS, kinds, strict=True)],
        (marker, orjson.dumps(completed("a2"))),
    ]
    with ExitStack() as stack:
        stack.enter_context(
            mock.patch.object(
                PartitionProcessor,
                "unchanged_run",
                PartitionProcessor.unchanged_run if runs else lambda *_: None,
            )
        )
        for patch in patches:
            stack.enter_context(patch)
        worker.batch(*records[:split])
        worker.batch(*records[split:])
    return _outcome(worker)


#: Each account's record of a second aggregation as a kind says, and where its batches split.
_KINDS = st.lists(
    st.sampled_from(["same"] * 4 + KINDS), min_size=len(ACCOUNTS), max_size=len(ACCOUNTS)
)
_SPLIT = st.integers(0, len(ACCOUNTS) + 2)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=_KINDS, split=_SPLIT)
def test_runs_decide_a_batch_as_one_record_at_a_time(kinds: list[str], split: int) -> None:
    """A second aggregation of unchanged records among changed, altered, wrongly keyed and
    unreadable ones, in two batches split anywhere, gives the same outputs (dead letters and
    events, in order), counts and state with runs as one record at a time."""
    assert _second(kinds, split, runs=True) == _second(kinds, split, runs=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=_KINDS, split=_SPLIT)
def test_runs_on_lmdb_decide_as_one_record_at_a_time_in_memory(
    kinds: list[str], split: int
) -> None:
    """On the worker's LMDB store (whose runs read views of its map) a second aggregation
    gives the same outputs, counts and state with runs as one record at a time in memory."""
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp), "acc", 0, map_size_bytes=1 << 22, verify=False)
        try:
            on_disk = _second(kinds, split, runs=True, store=store)
        finally:
            store.close()
    assert on_disk == _second(kinds, split, runs=False)


#: Where the stored form of an account holds (after its 4-byte checksum) a byte of its bytes
#: digest, the last bytes of the header a run compares, and a byte of its JSON.
_IN_BYTES_DIGEST, _IN_JSON = 4 + 41 + 7, -2


def _damaged(tmp_path: Path, at: int) -> tuple[Worker, bytes]:
    """A worker on LMDB after a first aggregation, the stored state of ``ACCOUNTS[3]`` then
    damaged on disk at byte ``at`` of its stored form (checksum first), and that state key."""
    store = open_store(tmp_path, "acc", 0, map_size_bytes=1 << 22, verify=False)
    worker = Worker(store)
    worker.aggregation("a1", T1, ACCOUNTS)
    store.close()
    key = k_account(SRC, f"u:{ACCOUNTS[3]['uuid']}")
    env = lmdb.open(str(tmp_path / "acc-0"), max_dbs=2)
    try:
        with env.begin(write=True, db=env.open_db(DATA_DB)) as txn:
            stored = bytearray(txn.get(key))
            stored[at] ^= 1
            txn.put(key, bytes(stored))
    finally:
        env.close()
    worker.store = worker.partitions[0].store = open_store(tmp_path, "acc", 0, verify=False)
    return worker, key


def test_a_damaged_stored_header_fails_a_run_on_lmdb(tmp_path: Path) -> None:
    """A stored account whose compared header is damaged on disk matches no record, and the
    checked read that follows reports the damage: the batch fails, nothing is decided."""
    worker, _ = _damaged(tmp_path, _IN_BYTES_DIGEST)
    try:
        with pytest.raises(StateCorruptError, match="checksum"):
            worker.aggregation("a2", T2, ACCOUNTS)
        assert worker.tallies == [worker.tallies[0]]  # the first aggregation's alone
    finally:
        worker.store.close()


def test_a_damaged_stored_body_is_unchanged_and_found_by_the_next_checked_read(
    tmp_path: Path,
) -> None:
    """A stored account damaged on disk in its JSON alone (its header intact) is unchanged
    for a record of its very bytes, and the next checked read and the next verified open
    report the damage."""
    worker, key = _damaged(tmp_path, _IN_JSON)
    try:
        tally = worker.aggregation("a2", T2, ACCOUNTS)
        assert tally.verdicts == {Verdict.MARKER: 2, Verdict.UNCHANGED: len(ACCOUNTS)}
        with pytest.raises(StateCorruptError, match="checksum"):
            worker.store.get(key)
    finally:
        worker.store.close()
    with pytest.raises(StateCorruptError):
        open_store(tmp_path, "acc", 0)


def test_unchanged_records_are_decided_in_one_run_without_the_per_record_path() -> None:
    """An unchanged aggregation's account records are one run: the per-record path decides
    only its two markers, and the run is counted as its records."""
    worker = Worker()
    worker.aggregation("a1", T1, ACCOUNTS)
    worker.checkpoint.sent.clear()
    with mock.patch.object(
        PartitionProcessor, "process", autospec=True, side_effect=PartitionProcessor.process
    ) as process:
        tally = worker.aggregation("a2", T2, ACCOUNTS)
    assert process.call_count == 2
    assert tally.verdicts == {Verdict.MARKER: 2, Verdict.UNCHANGED: len(ACCOUNTS)}
    assert tally.records == len(ACCOUNTS) + 2
    runs = [(d.verdict, d.count) for d in tally.decided if d.verdict == Verdict.UNCHANGED]
    assert runs == [(Verdict.UNCHANGED, len(ACCOUNTS))]
    assert {r.topic for r in worker.checkpoint.sent} == {worker.settings.topic_changelog}


class _FailingStore(InMemoryStateStore):
    """A store whose read of one key raises ``error``."""

    def __init__(self, key: bytes, error: Exception) -> None:
        super().__init__()
        self.key: bytes | None = None
        self.failing, self.error = key, error

    def get(self, key: bytes) -> bytes | None:
        if key == self.key:
            raise self.error
        return super().get(key)


def _failing_second(error: Exception, runs: bool) -> tuple[Any, ...]:
    failing = k_account(SRC, f"u:{ACCOUNTS[3]['uuid']}")
    worker = Worker(_FailingStore(failing, error))
    worker.aggregation("a1", T1, ACCOUNTS)
    worker.store.key = failing  # type: ignore[attr-defined]
    marker = record_key(SRC, None, "a2")
    with mock.patch.object(
        PartitionProcessor,
        "unchanged_run",
        PartitionProcessor.unchanged_run if runs else lambda *_: None,
    ):
        worker.batch(
            (marker, orjson.dumps(start("a2", T2))),
            *[(_key(a), compact("a2", a)) for a in ACCOUNTS],
        )
        worker.store.key = None  # type: ignore[attr-defined]  # (the completion reads it too)
        worker.batch((marker, orjson.dumps(completed("a2"))))
    return _outcome(worker)


def test_a_record_failing_within_a_run_is_dead_lettered_alone() -> None:
    """A record whose check raises in the middle of a run is dead-lettered with its reason, as
    one at a time; the records after it are still decided unchanged."""
    with_runs = _failing_second(ValueError("boom"), runs=True)
    assert with_runs == _failing_second(ValueError("boom"), runs=False)
    [dead] = [r for r in with_runs[0] if r[0] == load_settings().topic_dlq]
    assert dict(dead[3])["ncd_error"] == b"could not be decided (ValueError in get)"
    assert with_runs[1][-2][0] == {
        Verdict.MARKER: 1,
        Verdict.UNCHANGED: len(ACCOUNTS) - 1,
        Verdict.DEAD_LETTERED: 1,
    }


def test_a_state_failure_within_a_run_ends_the_batch() -> None:
    """A state read that fails in a run is not the record's fault: the batch fails."""
    with pytest.raises(StateError):
        _failing_second(StateError("disk"), runs=True)


def test_a_run_notes_its_accounts_as_seen_without_undo() -> None:
    """The accounts of a run are seen by the aggregation, and a later record's rollback
    does not take them back."""
    worker = Worker()
    worker.aggregation("a1", T1, ACCOUNTS)
    processor = worker.partitions[0].processor
    overlay = BatchOverlay(worker.store)
    processor.begin_batch()
    processor.process(orjson.dumps(start("a2", T2)), overlay)
    records = [
        InRecord(worker.settings.topic_aggregations, 0, n, _key(a), compact("a2", a), (), 0)
        for n, a in enumerate(ACCOUNTS[:4])
    ]
    assert processor.unchanged_run(records, 1, worker.settings.topic_aggregations, overlay) == (
        SRC,
        3,
    )
    processor.abandon(b"{}", overlay, "a later record failed")
    seen = processor._memory.seen_keys(SRC, "a2", overlay)
    assert seen == {f"u:{a['uuid']}" for a in ACCOUNTS[1:4]}


def test_a_record_a_run_found_changed_skips_the_compact_way() -> None:
    """A changed record that a run looked up already is not looked up again by the compact
    way of the per-record path; a record the run did not look up (keyed as another) is."""
    worker = Worker()
    worker.aggregation("a1", T1, ACCOUNTS)
    changed = {**ACCOUNTS[1], "attributes": {"title": "Lead", "memberOf": ["g1"]}}
    wrong = _record("a2", ACCOUNTS[2], "wrong_key")
    with mock.patch.object(
        partition_module, "compact_account", side_effect=partition_module.compact_account
    ) as compact_way:
        tally = worker.batch(
            (record_key(SRC, None, "a2"), orjson.dumps(start("a2", T2))),
            (_key(ACCOUNTS[0]), compact("a2", ACCOUNTS[0])),
            (_key(changed), compact("a2", changed)),
            wrong,
        )
    accounts = [c.args[0] for c in compact_way.call_args_list if b'"account"' in c.args[0]]
    assert accounts == [wrong[1]]
    assert tally.events == {"ACCOUNT_UPDATED": 1}
    assert tally.verdicts[Verdict.UNCHANGED] == 1


def test_a_run_counts_as_its_records_in_the_batch_line_metrics_and_summary(
    tmp_path: Path,
) -> None:
    """A repeated aggregation decided in runs counts every unchanged record in the batch
    line, the metrics, the stats and the aggregation summary."""
    worker = MemoryWorker(tmp_path)
    source = make_source()
    accounts = [
        make_account(f"CN=u{n}", {"title": "t"}, uuid=f"{{08ee6c6d-1c2e-4b3a-9d8f-{n:012x}}}")
        for n in range(30)
    ]
    worker.publish(source, accounts)
    worker.run(Runner(worker.settings, worker.broker, InMemoryStoreFactory()))
    worker.publish(source, accounts)
    runner = Runner(worker.settings, worker.broker, InMemoryStoreFactory())
    with (
        mock.patch.object(
            PartitionProcessor, "process", autospec=True, side_effect=PartitionProcessor.process
        ) as process,
        capture_logs() as logs,
    ):
        worker.run(runner)
    markers = 2 * worker.settings.partitions
    assert process.call_count == markers  # the accounts were decided in runs
    assert runner.stats.verdicts["unchanged"] == 30
    registry = runner.metrics.registry
    assert registry.get_sample_value("ncd_records_total", {"verdict": "unchanged"}) == 30
    batches = [line for line in logs if line["event"] == "batch_committed"]
    assert sum(line["verdicts"].get("unchanged", 0) for line in batches) == 30
    assert sum(line["records"] for line in batches) == 30 + markers
    summaries = [line for line in logs if line["event"] == "aggregation_summary"]
    assert sum(s["verdicts"].get("unchanged", 0) for s in summaries) == 30


def test_a_failure_in_a_run_s_set_up_is_left_to_the_per_record_path() -> None:
    """When reading a run's source metadata raises (not a state failure), the run steps aside
    and the per-record path decides the record, within its own failure boundary."""
    worker = Worker()
    worker.aggregation("a1", T1, ACCOUNTS)
    worker.batch((record_key(SRC, None, "a2"), orjson.dumps(start("a2", T2))))
    real = BatchMemory.meta_of
    calls = iter([RuntimeError("once")])

    def meta_of(memory: BatchMemory, source_id: str, state: BatchOverlay) -> Any:
        failure = next(calls, None)
        if failure is not None:
            raise failure
        return real(memory, source_id, state)

    with mock.patch.object(BatchMemory, "meta_of", meta_of):
        tally = worker.batch(*[(_key(a), compact("a2", a)) for a in ACCOUNTS[:3]])
    assert tally.verdicts == {Verdict.UNCHANGED: 3}
    assert [d.count for d in tally.decided] == [1, 2]  # one at a time, then a run
