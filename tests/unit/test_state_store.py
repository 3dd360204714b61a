"""State stores: identical semantics of the LMDB store and its in-memory twin, and the overlay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.errors import StateCorruptError, StateError
from processor.state import (
    MAX_KEY_BYTES,
    BatchOverlay,
    InMemoryStateStore,
    InMemoryStoreFactory,
    LmdbStateStore,
    LmdbStoreFactory,
    StateStore,
    StoreFactory,
    destroy_store,
    lmdb_store,
    open_store,
    store_path,
)
from processor.state.lmdb_format import DATA_DB, META_DB, META_KEY
from processor.state.lmdb_store import SCAN_CHUNK

REPO = Path(__file__).resolve().parents[2]
SMALL_MAP = 1 << 20


@pytest.fixture(params=["memory", "lmdb"])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A store factory of each kind, so every semantic test runs against both."""
    if request.param == "memory":
        return InMemoryStoreFactory()
    return LmdbStoreFactory(tmp_path, "acc", map_size_bytes=SMALL_MAP)


@pytest.fixture
def store(factory: StoreFactory) -> Iterator[StateStore]:
    """A fresh store of partition 0, closed after the test."""
    opened = factory.open(0)
    yield opened
    opened.close()


def test_get_returns_none_for_missing_key(store: StateStore) -> None:
    """A key never written reads as None."""
    assert store.get(b"nobody") is None


def test_apply_puts_overwrites_and_deletes(store: StateStore) -> None:
    """Puts store values, a later put overwrites, None deletes, a missing delete is a no-op."""
    store.apply({b"a": b"1", b"b": b"2", b"e": b""}, None)
    store.apply({b"a": b"3", b"b": None, b"zz": None}, None)
    assert store.get(b"a") == b"3"
    assert store.get(b"b") is None
    assert store.get(b"e") == b""
    assert store.get(b"zz") is None
    assert store.count(b"") == 2


def test_scan_is_sorted_by_key_bytes_and_filtered_by_prefix(store: StateStore) -> None:
    """Scan yields entries under the prefix only, in byte order, including high bytes."""
    keys = [b"b", b"a\xff", b"a", b"a\x00", b"ab", b"\x80", b"a\x7f"]
    store.apply({k: k + b"!" for k in keys}, None)
    assert [k for k, _ in store.scan(b"")] == sorted(keys)
    assert list(store.scan(b"a")) == [(k, k + b"!") for k in sorted(keys) if k.startswith(b"a")]
    assert list(store.scan(b"c")) == []
    assert list(store.scan(b"\xff")) == []


def test_scan_crosses_chunk_boundaries_and_is_stable(store: StateStore) -> None:
    """A scan longer than one read chunk returns every entry once, the same on a second scan."""
    n = SCAN_CHUNK * 2 + 7
    store.apply({f"p{i:05d}".encode(): str(i).encode() for i in range(n)}, None)
    store.apply({b"o": b"before", b"q": b"after"}, None)
    first = list(store.scan(b"p"))
    assert first == [(f"p{i:05d}".encode(), str(i).encode()) for i in range(n)]
    assert list(store.scan(b"p")) == first
    assert store.count(b"p") == n
    assert store.count(b"p0000") == 10
    assert store.count(b"") == n + 2
    assert store.count(b"r") == 0


def test_keys_are_the_scans_keys_across_chunks(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keys() yields exactly the keys of scan(): sorted, under the prefix, chunk after chunk."""
    monkeypatch.setattr(lmdb_store, "KEYS_CHUNK", 4)
    keys = [f"p{i:03d}".encode() for i in range(13)] + [b"o", b"q", b"p\xff", b"\x80"]
    store.apply({k: b"v" + k for k in keys}, None)
    for prefix in (b"", b"p", b"p00", b"p012", b"r"):
        assert list(store.keys(prefix)) == [k for k, _ in store.scan(prefix)]
    assert list(store.keys(b"p")) == sorted(k for k in keys if k.startswith(b"p"))


def test_every_read_sees_the_last_apply(store: StateStore) -> None:
    """get, scan, keys, count and checkpoint read what the latest apply wrote, read after read."""
    store.apply({b"a": b"1", b"b": b"1"}, 1)
    assert (store.get(b"a"), store.count(b""), store.checkpoint()) == (b"1", 2, 1)
    store.apply({b"a": b"2", b"b": None, b"c": b"2"}, 2)
    assert (store.get(b"a"), store.get(b"b"), store.get(b"c")) == (b"2", None, b"2")
    assert list(store.scan(b"")) == [(b"a", b"2"), (b"c", b"2")]
    assert list(store.keys(b"")) == [b"a", b"c"]
    assert (store.count(b""), store.count(b"c"), store.checkpoint()) == (2, 1, 2)


def test_lmdb_walk_goes_on_after_a_write_between_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan or keys walk interrupted by an apply goes on after its last key, in the new state."""
    monkeypatch.setattr(lmdb_store, "KEYS_CHUNK", SCAN_CHUNK)
    s = open_store(tmp_path, "acc", 0, map_size_bytes=SMALL_MAP)
    try:
        n = SCAN_CHUNK * 2
        s.apply({f"p{i:05d}".encode(): b"old" for i in range(n)}, 1)
        walks = (s.scan(b"p"), s.keys(b"p"))
        firsts = [next(walk) for walk in walks]
        # Past the first scan chunk: the rest comes from a read after the write.
        s.apply({b"p00000": None, f"p{n - 1:05d}".encode(): b"new", b"p99999": b"new"}, 2)
        scanned = [firsts[0], *walks[0]]
        assert [k for k, _ in scanned] == [f"p{i:05d}".encode() for i in range(n)] + [b"p99999"]
        assert scanned[-2:] == [(f"p{n - 1:05d}".encode(), b"new"), (b"p99999", b"new")]
        assert [firsts[1], *walks[1]][1:] == [k for k, _ in scanned[1:]]
    finally:
        s.close()


def test_lmdb_reads_between_applies_that_grow_the_map(tmp_path: Path) -> None:
    """Reads kept between applies do not stop the map from growing, and see every apply."""
    s = open_store(tmp_path, "acc", 0, map_size_bytes=SMALL_MAP)
    try:
        for batch in range(8):
            s.apply(
                {f"k{batch}-{i:03d}".encode(): bytes([batch]) * 3072 for i in range(200)}, batch
            )
            assert s.get(f"k{batch}-199".encode()) == bytes([batch]) * 3072
            assert s.count(b"") == 200 * (batch + 1)
        assert s.map_size_bytes > SMALL_MAP
    finally:
        s.close()


def test_checkpoint_is_none_until_set_and_kept_when_not_given(store: StateStore) -> None:
    """The checkpoint starts as None, is set by apply, and apply(..., None) leaves it unchanged."""
    assert store.checkpoint() is None
    store.apply({b"k": b"v"}, 0)
    assert store.checkpoint() == 0
    store.apply({}, 41)
    store.apply({b"k": b"w"}, None)
    assert store.checkpoint() == 41


def test_contents_and_checkpoint_survive_close_and_reopen(factory: StoreFactory) -> None:
    """Data and checkpoint written before close are read back after reopening."""
    first = factory.open(3)
    first.apply({b"k1": b"v1", b"k2": b"v2"}, 17)
    first.apply({b"k2": None}, 18)
    first.close()
    second = factory.open(3)
    try:
        assert second.checkpoint() == 18
        assert list(second.scan(b"")) == [(b"k1", b"v1")]
    finally:
        second.close()


@pytest.mark.parametrize(
    ("bad_writes", "bad_checkpoint", "error"),
    [
        ({b"ok": b"x", b"": b"y"}, 9, ValueError),
        ({b"ok": b"x", b"k" * (MAX_KEY_BYTES + 1): b"y"}, 9, ValueError),
        ({b"ok": b"x", b"k": "text"}, 9, TypeError),
        ({b"ok": b"x", "k": b"y"}, 9, TypeError),
        ({b"ok": b"x"}, -1, ValueError),
    ],
)
def test_invalid_apply_applies_nothing(
    store: StateStore, bad_writes: dict[object, object], bad_checkpoint: int, error: type
) -> None:
    """An apply with one invalid item or checkpoint raises and changes no data nor checkpoint."""
    store.apply({b"ok": b"old"}, 5)
    with pytest.raises(error):
        store.apply(bad_writes, bad_checkpoint)  # type: ignore[arg-type]
    assert store.get(b"ok") == b"old"
    assert store.checkpoint() == 5


def test_longest_allowed_key_round_trips(store: StateStore) -> None:
    """A key of exactly MAX_KEY_BYTES is accepted by both stores."""
    key = b"k" * MAX_KEY_BYTES
    store.apply({key: b"v"}, None)
    assert store.get(key) == b"v"


def test_closed_store_refuses_every_call(factory: StoreFactory) -> None:
    """After close every call raises StateError, and close is idempotent."""
    s = factory.open(0)
    s.close()
    s.close()
    for call in (
        lambda: s.get(b"k"),
        lambda: s.scan(b""),
        lambda: s.count(b""),
        lambda: s.keys(b""),
        lambda: s.apply({b"k": b"v"}, 1),
        s.checkpoint,
    ):
        with pytest.raises(StateError):
            call()


def test_second_open_of_an_open_store_is_refused(factory: StoreFactory) -> None:
    """Opening a partition's store while it is open raises StateError."""
    s = factory.open(0)
    try:
        with pytest.raises(StateError):
            factory.open(0)
    finally:
        s.close()


def test_destroy_removes_the_store(factory: StoreFactory) -> None:
    """Destroy refuses an open store, then deletes it so the next open is empty; idempotent."""
    s = factory.open(1)
    s.apply({b"k": b"v"}, 7)
    with pytest.raises(StateError):
        factory.destroy(1)
    s.close()
    factory.destroy(1)
    factory.destroy(1)
    fresh = factory.open(1)
    try:
        assert fresh.checkpoint() is None
        assert fresh.count(b"") == 0
    finally:
        fresh.close()


def test_partitions_are_separate_stores(factory: StoreFactory) -> None:
    """Writes to one partition's store are not seen by another's."""
    a, b = factory.open(0), factory.open(1)
    try:
        a.apply({b"k": b"a"}, 1)
        assert b.get(b"k") is None
        assert b.checkpoint() is None
    finally:
        a.close()
        b.close()


def test_destroy_store_deletes_the_directory(tmp_path: Path) -> None:
    """destroy_store removes STATE_DIR/<name>-<partition> and leaves no trash behind."""
    open_store(tmp_path, "acc", 2).close()
    assert (tmp_path / "acc-2" / "data.mdb").exists()
    destroy_store(tmp_path, "acc", 2)
    assert list(tmp_path.iterdir()) == []


def test_store_path_rejects_unsafe_names(tmp_path: Path) -> None:
    """A store name that could escape the state directory, or a negative partition, is refused."""
    assert store_path(tmp_path, "acc.v1", 4) == tmp_path / "acc.v1-4"
    for name in ("../x", "", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            store_path(tmp_path, name, 0)
    with pytest.raises(ValueError):
        store_path(tmp_path, "acc", -1)


def test_map_grows_for_many_large_values(tmp_path: Path) -> None:
    """Batches of 3 KB values far beyond a 1 MiB initial map are applied by growing the map."""
    s = open_store(tmp_path, "acc", 0, map_size_bytes=SMALL_MAP)
    try:
        big = {f"big{i:04d}".encode(): os.urandom(3072) for i in range(700)}  # one 2 MiB batch
        s.apply(big, 1)
        for batch in range(10):
            s.apply({f"k{batch}-{i:03d}".encode(): bytes([batch]) * 3072 for i in range(100)}, 2)
        assert s.map_size_bytes > SMALL_MAP
        assert s.count(b"") == 1700
        assert s.get(b"big0123") == big[b"big0123"]
        assert s.get(b"k9-099") == bytes([9]) * 3072
    finally:
        s.close()
    reopened = open_store(tmp_path, "acc", 0, map_size_bytes=SMALL_MAP)
    try:
        assert reopened.count(b"") == 1700
        reopened.apply({b"more": b"x" * 3072}, 3)
        assert reopened.checkpoint() == 3
    finally:
        reopened.close()


def _filled(tmp_path: Path) -> Path:
    s = open_store(tmp_path, "acc", 0, map_size_bytes=SMALL_MAP)
    for batch in range(20):
        s.apply({f"k{batch}-{i}".encode(): os.urandom(3000) for i in range(20)}, batch)
    s.close()
    return tmp_path / "acc-0" / "data.mdb"


@pytest.mark.parametrize("cut", ["half", 8192, 5000, 100, 0])
def test_truncated_data_file_is_corrupt(tmp_path: Path, cut: str | int) -> None:
    """A data file cut short (to half, to a few pages, to nothing) gives StateCorruptError."""
    data_file = _filled(tmp_path)
    data = data_file.read_bytes()
    data_file.write_bytes(data[: len(data) // 2 if cut == "half" else int(cut)])
    with pytest.raises(StateCorruptError):
        open_store(tmp_path, "acc", 0)


@pytest.mark.parametrize("start", [0, 8192])
def test_garbage_data_file_is_corrupt(tmp_path: Path, start: int) -> None:
    """Random bytes over the whole file, or over every page after the meta pages, are detected."""
    data_file = _filled(tmp_path)
    data = bytearray(data_file.read_bytes())
    data[start:] = os.urandom(len(data) - start)
    data_file.write_bytes(bytes(data))
    with pytest.raises(StateCorruptError):
        open_store(tmp_path, "acc", 0)


def _rewrite_meta(directory: Path, record: dict[str, object]) -> None:
    env = lmdb.open(str(directory), max_dbs=2)
    try:
        meta = env.open_db(META_DB)
        with env.begin(write=True, db=meta) as txn:
            txn.put(META_KEY, json.dumps(record).encode())
    finally:
        env.close()


@pytest.mark.parametrize(
    "record",
    [
        {"magic": "ncd-processor-state", "format": 2, "store_id": "acc-0"},
        {"magic": "something-else", "format": 1, "store_id": "acc-0"},
        {"magic": "ncd-processor-state", "format": 1, "store_id": "acc-9"},
    ],
)
def test_wrong_metadata_is_corrupt(tmp_path: Path, record: dict[str, object]) -> None:
    """A wrong format version, magic or store id in the metadata record gives StateCorruptError."""
    open_store(tmp_path, "acc", 0).close()
    _rewrite_meta(tmp_path / "acc-0", record)
    with pytest.raises(StateCorruptError):
        open_store(tmp_path, "acc", 0)


def test_foreign_lmdb_environment_is_corrupt(tmp_path: Path) -> None:
    """A valid LMDB environment that is not one of our stores gives StateCorruptError."""
    env = lmdb.open(str(tmp_path / "acc-0"))
    with env.begin(write=True) as txn:
        txn.put(b"someone", b"else")
    env.close()
    with pytest.raises(StateCorruptError):
        open_store(tmp_path, "acc", 0)


def test_store_moved_to_another_partition_is_corrupt(tmp_path: Path) -> None:
    """A store directory renamed to another partition's name is foreign (its store id differs)."""
    open_store(tmp_path, "acc", 0).close()
    (tmp_path / "acc-0").rename(tmp_path / "acc-1")
    with pytest.raises(StateCorruptError):
        open_store(tmp_path, "acc", 1)


def test_corrupt_store_can_be_destroyed_and_rebuilt(tmp_path: Path) -> None:
    """After StateCorruptError, destroy_store then open_store gives an empty usable store."""
    data_file = _filled(tmp_path)
    data_file.write_bytes(b"garbage" * 1000)
    with pytest.raises(StateCorruptError):
        open_store(tmp_path, "acc", 0)
    destroy_store(tmp_path, "acc", 0)
    s = open_store(tmp_path, "acc", 0)
    try:
        assert s.checkpoint() is None
        s.apply({b"k": b"v"}, 1)
        assert s.get(b"k") == b"v"
    finally:
        s.close()


_WRITER = """
import sys
from pathlib import Path
from processor.state import open_store
s = open_store(Path(sys.argv[1]), "acc", 0, map_size_bytes=1 << 20)
batch = 0
while True:
    tag = str(batch).encode().rjust(8, b"0")
    s.apply({b"k%04d" % i: tag * 400 for i in range(300)}, batch + 1)
    print(batch, flush=True)
    batch += 1
"""


def test_killed_writer_leaves_whole_batches(tmp_path: Path) -> None:
    """A process killed during applies leaves each key at the batch named by the checkpoint."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    for _ in range(5):  # let it commit a few batches, then kill it mid-way through later ones
        assert proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    s = open_store(tmp_path, "acc", 0)
    try:
        checkpoint = s.checkpoint()
        # An apply returns before it is written, but only once the one before it is.
        assert checkpoint is not None and checkpoint >= 4
        tag = str(checkpoint - 1).encode().rjust(8, b"0")
        assert s.count(b"") == 300
        assert all(value == tag * 400 for _, value in s.scan(b""))
    finally:
        s.close()


def test_concrete_classes_satisfy_the_protocols(tmp_path: Path) -> None:
    """Both factories, typed as StoreFactory, open stores that work through the StateStore type."""
    factories: list[StoreFactory] = [InMemoryStoreFactory(), LmdbStoreFactory(tmp_path, "y")]
    stores: list[StateStore] = [InMemoryStateStore(), LmdbStateStore.open(tmp_path / "x-0")]
    stores += [f.open(5) for f in factories]
    for s in stores:
        s.apply({b"k": b"v"}, 1)
        assert (s.get(b"k"), s.checkpoint()) == (b"v", 1)
        s.close()


def test_memory_factory_can_simulate_corruption() -> None:
    """mark_corrupt makes open raise StateCorruptError until the partition is destroyed."""
    f = InMemoryStoreFactory()
    s = f.open(0)
    s.apply({b"k": b"v"}, 4)
    s.close()
    f.mark_corrupt(0)
    with pytest.raises(StateCorruptError):
        f.open(0)
    f.destroy(0)
    assert f.open(0).checkpoint() is None


# --- BatchOverlay ---------------------------------------------------------------------------


def test_overlay_reads_its_own_writes_before_the_store(store: StateStore) -> None:
    """get() sees pending puts and deletes first, then the store; the store is untouched."""
    store.apply({b"a": b"stored", b"b": b"stored"}, 1)
    overlay = BatchOverlay(store)
    overlay.put(b"a", b"pending")
    overlay.delete(b"b")
    overlay.put(b"c", b"new")
    assert overlay.get(b"a") == b"pending"
    assert overlay.get(b"b") is None
    assert overlay.get(b"c") == b"new"
    assert overlay.get(b"d") is None
    assert dict(overlay.writes) == {b"a": b"pending", b"b": None, b"c": b"new"}
    assert store.get(b"a") == b"stored"
    assert store.get(b"b") == b"stored"


def test_overlay_clear_discards_pending_writes(store: StateStore) -> None:
    """clear() drops every pending write so reads fall through to the store again."""
    store.apply({b"a": b"stored"}, 1)
    overlay = BatchOverlay(store)
    overlay.put(b"a", b"pending")
    overlay.put(b"z", b"new")
    overlay.clear()
    assert len(overlay) == 0
    assert overlay.get(b"a") == b"stored"
    assert list(overlay.scan(b"")) == [(b"a", b"stored")]


def test_overlay_scan_merges_sorted_and_hides_deletes(store: StateStore) -> None:
    """scan() merges pending writes into the store's entries, sorted, with deletes hidden."""
    store.apply({b"pa": b"1", b"pc": b"1", b"pe": b"1", b"x": b"1"}, 1)
    overlay = BatchOverlay(store)
    overlay.put(b"pb", b"2")
    overlay.put(b"pc", b"2")
    overlay.delete(b"pe")
    overlay.put(b"pf", b"2")
    overlay.delete(b"pg")
    overlay.put(b"y", b"2")
    assert list(overlay.scan(b"p")) == [(b"pa", b"1"), (b"pb", b"2"), (b"pc", b"2"), (b"pf", b"2")]
    assert overlay.count(b"p") == 4
    assert overlay.count(b"") == 6
    store.apply(overlay.writes, 2)
    assert list(store.scan(b"")) == list(overlay.scan(b""))


def test_overlay_rejects_invalid_keys_and_values() -> None:
    """put() and delete() validate like the stores, so a bad write fails at once."""
    overlay = BatchOverlay(InMemoryStateStore())
    with pytest.raises(ValueError):
        overlay.put(b"", b"v")
    with pytest.raises(TypeError):
        overlay.put(b"k", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        overlay.delete(b"k" * (MAX_KEY_BYTES + 1))


@pytest.mark.parametrize("key", [b"", b"k" * (MAX_KEY_BYTES + 1), "text"])
def test_overlay_get_rejects_invalid_keys(store: StateStore, key: object) -> None:
    """get() of an invalid key raises like the store's own get (TypeError or ValueError)."""
    overlay = BatchOverlay(store)
    overlay.put(b"k", b"v")
    with pytest.raises((TypeError, ValueError)):
        overlay.get(key)  # type: ignore[arg-type]


_keys = st.binary(min_size=1, max_size=3)
_ops = st.lists(st.tuples(_keys, st.one_of(st.none(), st.binary(max_size=4))), max_size=30)


@settings(max_examples=200, deadline=None)
@given(stored=st.dictionaries(_keys, st.binary(max_size=4), max_size=30), ops=_ops, prefix=_keys)
def test_overlay_view_equals_applying_its_writes(
    stored: dict[bytes, bytes], ops: list[tuple[bytes, bytes | None]], prefix: bytes
) -> None:
    """For any store and pending writes, the overlay reads exactly like the store after apply."""
    store = InMemoryStateStore()
    store.apply(stored, None)
    overlay = BatchOverlay(store)
    for key, value in ops:
        if value is None:
            overlay.delete(key)
        else:
            overlay.put(key, value)
    for p in (b"", prefix, prefix[:1]):
        view, count = list(overlay.scan(p)), overlay.count(p)
        got = [overlay.get(k) for k, _ in ops]
        after = InMemoryStateStore()
        after.apply(stored, None)
        after.apply(overlay.writes, None)
        assert view == list(after.scan(p))
        assert list(overlay.keys(p)) == list(after.keys(p))
        assert count == after.count(p)
        assert got == [after.get(k) for k, _ in ops]


@settings(max_examples=30, deadline=None)
@given(batches=st.lists(_ops, max_size=6), prefix=_keys)
def test_lmdb_and_memory_stores_agree(
    batches: list[list[tuple[bytes, bytes | None]]], prefix: bytes
) -> None:
    """Any sequence of applies leaves the LMDB store and the in-memory twin reading the same."""
    memory = InMemoryStateStore()
    with tempfile.TemporaryDirectory() as tmp:
        disk = LmdbStateStore.open(Path(tmp) / "s-0", map_size_bytes=SMALL_MAP)
        try:
            for offset, batch in enumerate(batches):
                memory.apply(dict(batch), offset)
                disk.apply(dict(batch), offset)
            for p in (b"", prefix):
                assert list(disk.scan(p)) == list(memory.scan(p))
                assert list(disk.keys(p)) == list(memory.keys(p))
                assert disk.count(p) == memory.count(p)
            assert disk.checkpoint() == memory.checkpoint()
        finally:
            disk.close()


def test_overlay_viewer_reads_pending_writes_then_the_store(store: StateStore) -> None:
    """viewer() reads as get() does, the batch's pending puts and deletes first, then the
    store, on disk as in memory."""
    store.apply({b"a": b"stored", b"b": b"stored", b"e": b"kept"}, 1)
    overlay = BatchOverlay(store)
    plain = overlay.viewer()
    overlay.put(b"a", b"pending")
    overlay.delete(b"b")
    view = overlay.viewer()
    assert bytes(plain(b"e") or b"") == b"kept"
    assert view(b"a") == b"pending"
    assert view(b"b") is None
    assert bytes(view(b"e") or b"") == b"kept"
    assert view(b"d") is None
    with pytest.raises(ValueError):
        view(b"")


def test_lmdb_viewer_reads_as_get_until_the_next_apply(tmp_path: Path) -> None:
    """An LMDB viewer gives each value as get() does (as a view), and one taken after an
    apply sees that apply."""
    store = open_store(tmp_path, "acc", 0, map_size_bytes=SMALL_MAP, verify=False)
    try:
        store.apply({b"a": b"one" * 2000, b"b": b"two"}, 1)
        view = store.viewer()
        assert [bytes(view(k) or b"-") for k in (b"a", b"b", b"c")] == [
            store.get(b"a"),
            b"two",
            b"-",
        ]
        store.apply({b"a": b"three", b"b": None}, 2)
        view = store.viewer()
        assert (bytes(view(b"a") or b""), view(b"b")) == (b"three", None)
    finally:
        store.close()


def _damaged(tmp_path: Path, raw: dict[bytes, bytes]) -> LmdbStateStore:
    """A store of ``a`` (5,000 bytes) and ``b`` whose ``a`` then had its last byte changed on
    disk, and whose entries in ``raw`` were then put as they are (no checksum), reopened."""
    store = open_store(tmp_path, "acc", 0, map_size_bytes=SMALL_MAP, verify=False)
    store.apply({b"a": b"x" * 5000, b"b": b"fine"}, 1)
    store.close()
    env = lmdb.open(str(tmp_path / "acc-0"), max_dbs=2)
    try:
        with env.begin(write=True, db=env.open_db(DATA_DB)) as txn:
            txn.put(b"a", txn.get(b"a")[:-1] + b"y")
            for key, value in raw.items():
                txn.put(key, value)
    finally:
        env.close()
    return open_store(tmp_path, "acc", 0, map_size_bytes=SMALL_MAP, verify=False)


def test_lmdb_viewer_detects_a_damaged_value(tmp_path: Path) -> None:
    """A value whose bytes were changed on disk fails its checksum when viewed, as when read
    with get()."""
    store = _damaged(tmp_path, {})
    try:
        view = store.viewer()
        assert bytes(view(b"b") or b"") == b"fine"
        with pytest.raises(StateCorruptError, match="checksum"):
            view(b"a")
        with pytest.raises(StateCorruptError, match="checksum"):
            store.get(b"a")
    finally:
        store.close()


def test_lmdb_unchecked_viewer_reads_a_damaged_value_that_checked_reads_refuse(
    tmp_path: Path,
) -> None:
    """viewer(checked=False) gives a value damaged on disk as it lies, and one too short for
    its checksum as empty, while get() and the checked viewer report both."""
    store = _damaged(tmp_path, {b"b": b"ab"})
    try:
        unchecked, checked = store.viewer(checked=False), store.viewer()
        assert bytes(unchecked(b"a") or b"") == b"x" * 4999 + b"y"
        short = unchecked(b"b")
        assert short is not None and bytes(short) == b"" and unchecked(b"c") is None
        for key in (b"a", b"b"):
            with pytest.raises(StateCorruptError):
                checked(key)
            with pytest.raises(StateCorruptError):
                store.get(key)
    finally:
        store.close()


def test_flush_then_stored_entries_count_every_apply(store: StateStore) -> None:
    """Once flushed, the store's cheap key count is its count of every key."""
    assert store.stored_entries() == 0
    store.apply({b"a": b"1", b"b": b"1"}, 1)
    store.apply({b"a": None, b"c": b"2", b"d": b"2"}, 2)
    store.flush()
    assert store.stored_entries() == store.count(b"") == 3
