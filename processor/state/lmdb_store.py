"""The on-disk state store: one LMDB environment per input partition.

Layout: ``STATE_DIR/<name>-<partition>/`` holds LMDB's ``data.mdb`` and ``lock.mdb``. The
environment has two named databases: ``data`` (the account states) and ``ncd-meta`` (a JSON
metadata record with a magic string, the format version and the store id, plus the changelog
checkpoint as 8 big-endian bytes). Puts, deletes and the checkpoint of one ``apply`` are one
LMDB write transaction, so a crash leaves all or none of them.

Applies are written on the store's own thread (:mod:`processor.state.lmdb_writer`): ``apply``
returns once the previous one is written and this one handed over; a failed write raises from
the next call. A crash loses the apply in flight whole, with its checkpoint: the changelog
from there holds it (Kafka commits first; up to two batches), and the restore reads it again.

Durability flags, and why: ``sync=True, metasync=False`` (fsync the data pages on every
commit, the meta page only with the next one). ``apply`` runs once per committed Kafka
transaction (a batch), so the fsync cost is paid per batch (on the writer thread, beside the
next batch's work), not per record. ``sync=False`` would allow a machine crash to
*corrupt* the file (LMDB's own warning), forcing a full rebuild of millions of 3 KB values
from the changelog; ``metasync=False`` can only lose the last commit, and the checkpoint goes
with it, so the restore reads that batch again from the changelog. It halves the fsyncs of a
commit (20 puts: median 5.0-11.9 ms -> 3.2-3.4 ms on the shared machine; the state commit
was 4-24 % of the worker's profile on Apache Kafka). ``writemap=False`` so that a stray
write through the map cannot damage the file and the file grows only with data.
``readahead=False``: random gets on a file that may be larger than RAM (LMDB's advice).

Detected on open, as :class:`~processor.errors.StateCorruptError`: a file that is not LMDB
(garbage or an unsupported LMDB version), an empty or truncated ``data.mdb`` (shorter than
the pages its meta page says were committed: reading those through the map would crash the
process with SIGBUS), a foreign environment (no metadata), a wrong magic, format version,
checksum scheme or store id, and any damage inside committed pages. LMDB has no checksums
of its own and, given random bytes over a page, may read garbage silently or crash the
process with SIGSEGV (both seen in tests/reliability/test_state_faults.py). So every value
(and the checkpoint) is stored behind a CRC32C of its key and value, checked on every read
whose value is used (``viewer(checked=False)`` skips it for a comparison of a value's head
alone, see there), and an existing store is *verified before the worker maps it*: a child process
(:func:`~processor.state.lmdb_format.verify_directory`) walks every entry, checks its CRC,
the key order and the entry count. A child that finds damage, crashes or hangs means
"rebuild from the changelog"; the worker itself never maps a damaged file. The walk costs
one sequential read of the store per open (pass ``verify=False`` to skip it where the file
is known good).

Reads share one read transaction: the first read after the open or an apply begins it, and
every read uses it until the next ``apply`` (which ends it before handing its writes over,
so that no reader pins the pages that write frees for longer than a batch) or the close.
A get is then a lookup and a checksum, not a transaction per call. The snapshot may predate
the apply in flight, so its writes are read first (``get``, the viewer, ``checkpoint``);
scans, walks, counts and ``flush`` wait for the writer and read a new snapshot (the viewer's,
whose views may be held, stays to the next apply). Scans read in chunks, each whole before
it is yielded: a write between two yields is seen from the next chunk on. ``keys`` walks the
keys without copying or checking values. Use each store from one thread (its writer thread
is its own); opening a directory twice in one process is refused (LMDB forbids it).
"""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from itertools import chain, islice, takewhile
from operator import methodcaller
from pathlib import Path
from types import MappingProxyType
from typing import Any

import lmdb

from processor.errors import StateCorruptError, StateError
from processor.state.lmdb_format import (
    CHECKPOINT,
    CHECKPOINT_KEY,
    CRC,
    mapped_errors,
    open_env,
    state_error,
    unseal,
)
from processor.state.lmdb_writer import Writer, write_growing
from processor.state.store import MAX_KEY_BYTES, check_key, check_partition, check_writes

# Initial map size. Without writemap the file grows with the data, not with the map, so this
# only reserves virtual address space; 1 GiB holds ~250k 3 KB values before the first growth.
DEFAULT_MAP_SIZE_BYTES = 1 << 30
# Scans read this many entries per chunk: a chunk is read whole before it is yielded, so a
# write between two yields (which ends the read transaction) can only fall between chunks.
SCAN_CHUNK = 256
# Keys-only scans read this many keys per chunk (keys are small, and no value is copied).
KEYS_CHUNK = 4096

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

_open_paths: set[str] = set()
_open_lock = threading.Lock()


class LmdbStateStore:
    """A :class:`~processor.state.store.StateStore` in one LMDB environment (see module doc)."""

    def __init__(self, env: Any, data: Any, meta: Any, key: str, store_id: str) -> None:
        self._env = env
        self._data = data
        self._meta = meta
        self._key = key
        self._closed = False
        # The read transaction every read uses until the next write (see ``_read``).
        self._reader: Any = None
        # Its twin whose reads are views of the map (see ``viewer``), begun and ended with it.
        self._viewer: Any = None
        with mapped_errors("count"), env.begin(db=data) as txn:
            entries: int = txn.stat(data)["entries"]
        self._writer = Writer(env, (data, meta), store_id, entries)
        # The last apply's writes and checkpoint (maybe in flight), read first until the next.
        self._pending: dict[bytes, bytes | None] = {}
        self._pending_checkpoint: int | None = None
        self.store_id = store_id

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        map_size_bytes: int = DEFAULT_MAP_SIZE_BYTES,
        store_id: str | None = None,
        verify: bool = True,
    ) -> LmdbStateStore:
        """Open or create the store in ``directory``; raise ``StateCorruptError`` if damaged.

        ``store_id`` defaults to the directory name; a store created with another id is
        foreign and is reported as corrupt. ``verify`` checks an existing store in a child
        process first (see module doc).
        """
        if map_size_bytes <= 0:
            raise ValueError("map_size_bytes must be > 0")
        directory = Path(directory)
        store_id = store_id if store_id is not None else directory.name
        key = str(directory.resolve())
        with _open_lock:
            if key in _open_paths:
                raise StateError(f"state store {store_id} is already open in this process")
            _open_paths.add(key)
        try:
            env, data, meta = open_env(directory, map_size_bytes, store_id, verify)
            return cls(env, data, meta, key, store_id)  # (its count may fail: still released)
        except BaseException:
            with _open_lock:
                _open_paths.discard(key)
            raise

    def _live(self) -> Any:
        if self._closed:
            raise StateError("state store is closed")
        if self._writer.failed is not None:
            raise self._writer.failure()
        return self._env

    def _read(self) -> Any:
        """The read transaction of the store as it is now: begun at the first read after a
        write (or open) and kept for every read until the next write or the close."""
        txn = self._reader
        if txn is None or self._writer.failed is not None:
            env = self._live()
            try:
                txn = self._reader = env.begin(db=self._data)
            except lmdb.Error as exc:
                raise state_error(exc, "read") from exc
        return txn

    def _end_read(self) -> None:
        for txn in (self._reader, self._viewer):
            if txn is not None:
                txn.abort()
        self._reader = self._viewer = None

    def get(self, key: bytes) -> bytes | None:
        """Return the value stored under ``key``, or ``None``."""
        txn = self._reader
        if txn is None or self._writer.failed is not None:
            txn = self._read()
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_BYTES:
            check_key(key)  # raises, unless a subclass of bytes
        pending = self._pending
        if key in pending:
            return pending[key]
        try:
            stored: bytes | None = txn.get(key)
        except lmdb.Error as exc:
            raise state_error(exc, "get") from exc
        return None if stored is None else unseal(key, stored)

    def viewer(
        self, before: Mapping[bytes, bytes | None] = MappingProxyType({}), *, checked: bool = True
    ) -> Callable[[bytes], bytes | memoryview | None]:
        """:meth:`get` for a loop of reads with no write between them (a run of unchanged
        records), with the same checks (the key's, the value's checksum) and errors, but each
        value a view of LMDB's map, not a copy: valid only until the next write or the close
        (it then points at freed pages), so compared and dropped, never kept (``bytes()`` of
        it is). A key of ``before`` (a batch's pending writes) reads as it says there.

        ``checked=False``: the checksum (over the whole value: every cold page of it read) is
        not checked, for one use: comparing a value's head for a verdict that uses nothing else
        of it (an unchanged record: ``StoredAccount.matches_bytes``). The guarantee holds:
        damage in the compared bytes makes them differ from the 16-byte digest of the record's
        bytes (or the version), and the caller reads a value that does not match again with
        :meth:`get`, checked, before using it, so the damage is reported as by every read
        (damage confined to the 8 as-of bytes could count a record of the very stored bytes
        unchanged, not stale: both note it seen and write nothing). Damage elsewhere takes no
        part in the verdict and is reported by the next checked read and every open's verify.
        A too short value reads as empty."""
        txn = self._viewer
        if txn is None or self._writer.failed is not None:
            self._read()  # the same snapshot as ``get``'s: begun (or checked live) first
            try:
                txn = self._viewer = self._env.begin(db=self._data, buffers=True)
            except lmdb.Error as exc:
                raise state_error(exc, "read") from exc
        txn_get, pending, skip = txn.get, self._pending, CRC.size

        def view(key: bytes) -> bytes | memoryview | None:
            if key in before:
                return before[key]
            if key in pending:
                return pending[key]
            if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_BYTES:
                check_key(key)  # raises, unless a subclass of bytes
            try:
                stored: memoryview | None = txn_get(key)
            except lmdb.Error as exc:
                raise state_error(exc, "get") from exc
            if stored is None:
                return None
            return unseal(key, stored) if checked else stored[skip:]

        return view

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Yield every ``(key, value)`` whose key starts with ``prefix``, sorted by key."""
        self._live()
        return self._scan(prefix)

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for keys in self._key_chunks(prefix, SCAN_CHUNK):
            txn = self._read()  # the chunk's own: nothing can write before its values are read
            try:
                values = [unseal(k, txn.get(k)) for k in keys]
            except lmdb.Error as exc:
                raise state_error(exc, "scan") from exc
            yield from zip(keys, values, strict=True)

    def keys(self, prefix: bytes) -> Iterator[bytes]:
        """Yield every key that starts with ``prefix``, sorted, without reading its value."""
        self._live()
        return chain.from_iterable(self._key_chunks(prefix, KEYS_CHUNK))

    def _key_chunks(self, prefix: bytes, size: int) -> Iterator[list[bytes]]:
        after: bytes | None = None
        under = methodcaller("startswith", prefix)
        while True:
            self._settle_reads()
            try:
                cursor = self._cursor(prefix, after)
                if cursor is None:
                    return
                keys = cursor.iternext(keys=True, values=False)
                chunk = list(islice(takewhile(under, keys), size))
            except lmdb.Error as exc:
                raise state_error(exc, "keys") from exc
            yield chunk
            if len(chunk) < size:
                return
            after = chunk[-1]

    def _cursor(self, prefix: bytes, after: bytes | None) -> Any:
        """A cursor at the first key under ``prefix`` (past ``after`` if given); ``None`` at
        the end. Scans read in chunks, each in the read transaction current when it starts:
        a write between two chunks (the caller's, while it holds the iterator) ends the
        transaction, and the next chunk goes on after the last key given."""
        cursor = self._read().cursor()
        start = prefix if after is None else after
        if not (cursor.set_range(start) if start else cursor.first()):
            return None
        if after is not None and cursor.key() == after and not cursor.next():
            return None
        return cursor

    def count(self, prefix: bytes) -> int:
        """Return how many keys start with ``prefix`` (:meth:`stored_entries` waits for none)."""
        self._live()
        if prefix:
            return sum(map(len, self._key_chunks(prefix, KEYS_CHUNK)))
        self._settle_reads()
        with mapped_errors("count"):
            entries: int = self._read().stat(self._data)["entries"]
        return entries

    def stored_entries(self) -> int:
        """How many keys the store held when its last apply was written (any thread)."""
        return self._writer.entries

    def apply(self, writes: Mapping[bytes, bytes | None], checkpoint: int | None) -> None:
        """Atomically apply puts (``bytes``), deletes (``None``) and, if given, the checkpoint.

        Validated here, then written on the writer thread once the previous apply is (see
        module doc); a map too small is grown, invisible to the caller."""
        self._live()
        items = check_writes(writes, checkpoint)
        self._settle()
        self._end_read()  # its snapshot is about to be stale
        self._pending, self._pending_checkpoint = dict(items), checkpoint
        self._writer.submit(items, checkpoint)

    def flush(self) -> None:
        """Wait until the last apply is written; raise its error if it failed."""
        self._live()
        self._settle_reads()

    def _settle(self) -> bool:
        """Wait for the apply in flight, if any (whether there was one); one too big for the
        map is written here, the map grown first with no read open (LMDB's rule)."""
        written = self._writer.wait()
        if written is False:
            self._end_read()
            items, dbs = list(self._pending.items()), (self._data, self._meta)
            try:
                self._writer.entries = write_growing(
                    self._env, dbs, items, self._pending_checkpoint
                )
            except StateError as exc:
                self._writer.fail(exc)
                raise
        return written is not None

    def _settle_reads(self) -> None:
        """:meth:`_settle`; the copying reads then go on in a snapshot that has the apply."""
        if self._settle() and self._reader is not None:
            self._reader.abort()
            self._reader = None

    @property
    def map_size_bytes(self) -> int:
        """The current size of the memory map (grows on demand)."""
        self.flush()  # the apply in flight may grow it
        size: int = self._env.info()["map_size"]
        return size

    def checkpoint(self) -> int | None:
        """Return the next changelog offset to read, or ``None`` if never set."""
        txn = self._read()
        if self._pending_checkpoint is not None:
            return self._pending_checkpoint
        with mapped_errors("checkpoint"):
            raw: bytes | None = txn.get(CHECKPOINT_KEY, db=self._meta)
        if raw is None:
            return None
        packed = unseal(CHECKPOINT_KEY, raw)
        if len(packed) != CHECKPOINT.size:
            raise StateCorruptError("state store checkpoint record is damaged")
        value: int = CHECKPOINT.unpack(packed)[0]
        return value

    def close(self) -> None:
        """Release the store; further calls raise ``StateError``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            try:
                self._settle()  # the apply in flight is written before the file is closed
            finally:
                self._writer.close()
                self._end_read()
                self._env.close()
        finally:
            with _open_lock:
                _open_paths.discard(self._key)


def store_path(state_dir: Path, name: str, partition: int) -> Path:
    """Return ``state_dir/<name>-<partition>``, validating both parts."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError("store name must match [A-Za-z0-9][A-Za-z0-9._-]*")
    check_partition(partition)
    return Path(state_dir) / f"{name}-{partition}"


def open_store(
    state_dir: Path,
    name: str,
    partition: int,
    *,
    map_size_bytes: int = DEFAULT_MAP_SIZE_BYTES,
    verify: bool = True,
) -> LmdbStateStore:
    """Open (creating if needed) the store of ``partition``; may raise ``StateCorruptError``."""
    path = store_path(state_dir, name, partition)
    return LmdbStateStore.open(
        path, map_size_bytes=map_size_bytes, store_id=path.name, verify=verify
    )


def destroy_store(state_dir: Path, name: str, partition: int) -> None:
    """Delete the store of ``partition``; no-op if absent, ``StateError`` if open.

    The directory is first renamed (atomic), so a crash mid-delete never leaves a half
    store under the real name.
    """
    path = store_path(state_dir, name, partition)
    with _open_lock:
        if str(path.resolve()) in _open_paths:
            raise StateError(f"cannot destroy the open state store {path.name}")
    if not path.exists():
        return
    trash = path.with_name(f".deleting-{path.name}-{uuid.uuid4().hex}")
    try:
        path.rename(trash)
        shutil.rmtree(trash)
    except OSError as exc:
        raise StateError(f"cannot destroy state store {path.name}: {exc}") from exc


class LmdbStoreFactory:
    """A :class:`~processor.state.store.StoreFactory` of LMDB stores under one directory."""

    def __init__(
        self,
        state_dir: Path,
        name: str,
        *,
        map_size_bytes: int = DEFAULT_MAP_SIZE_BYTES,
        verify: bool = True,
    ) -> None:
        store_path(state_dir, name, 0)  # validate the name now, not at the first open
        self.state_dir = Path(state_dir)
        self.name = name
        self.map_size_bytes = map_size_bytes
        self.verify = verify

    def open(self, partition: int) -> LmdbStateStore:
        """Open (creating if needed) the store of ``partition``."""
        return open_store(
            self.state_dir,
            self.name,
            partition,
            map_size_bytes=self.map_size_bytes,
            verify=self.verify,
        )

    def destroy(self, partition: int) -> None:
        """Delete the store of ``partition`` (it must not be open); no-op if absent."""
        destroy_store(self.state_dir, self.name, partition)
