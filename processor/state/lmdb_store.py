"""The on-disk state store: one LMDB environment per input partition.

Layout: ``STATE_DIR/<name>-<partition>/`` holds LMDB's ``data.mdb`` and ``lock.mdb``. The
environment has two named databases: ``data`` (the account states) and ``ncd-meta`` (a JSON
metadata record with a magic string, the format version and the store id, plus the changelog
checkpoint as 8 big-endian bytes). Puts, deletes and the checkpoint of one ``apply`` are one
LMDB write transaction, so a crash leaves all or none of them.

Durability flags, and why: ``sync=True, metasync=True`` (fsync data and meta pages on every
commit). ``apply`` runs once per committed Kafka transaction (a batch), so the fsync cost is
paid per batch, not per record. ``sync=False`` would allow a machine crash to *corrupt* the
file (LMDB's own warning), forcing a full rebuild of millions of 3 KB values from the
changelog; ``metasync=False`` could only lose the last commit (safe here, since the
checkpoint goes with it) and is the first knob to turn if commits ever become the
bottleneck. ``writemap=False`` so that a stray write through the map cannot damage the file
and the file grows only with data, not with ``map_size``. ``readahead=False`` because the
access pattern is random gets on a file that may be larger than RAM (LMDB's advice).

Detected on open, as :class:`~processor.errors.StateCorruptError`: a file that is not LMDB
(garbage or an unsupported LMDB version), an empty or truncated ``data.mdb`` (shorter than
the pages its meta page says were committed: reading those through the map would crash the
process with SIGBUS), a foreign environment (no metadata), a wrong magic, format version,
checksum scheme or store id, and any damage inside committed pages. LMDB has no checksums
of its own and, given random bytes over a page, may read garbage silently or crash the
process with SIGSEGV (both seen in tests/reliability/test_state_faults.py). So every value
(and the checkpoint) is stored behind a CRC32C of its key and value, checked on every read,
and an existing store is *verified before the worker maps it*: a child process
(:func:`verify_directory`) walks every entry, checks its CRC, the key order and the entry
count. A child that finds damage, crashes or hangs means "rebuild from the changelog"; the
worker itself never maps a damaged file. The walk costs one sequential read of the store
per open (pass ``verify=False`` to skip it where the file is known good).

Not thread-safe: use each store from one thread. Opening the same directory twice in one
process is refused (LMDB forbids it).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import crc32c
import lmdb

from processor.errors import StateCorruptError, StateError
from processor.files import PRIVATE_FILE_MODE, private_dir
from processor.state.store import check_key, check_partition, check_writes

FORMAT_VERSION = 1
MAGIC = "ncd-processor-state"
#: The integrity scheme of values and checkpoint; a store without it is rebuilt.
CHECKSUM = "crc32c-v1"
META_DB = b"ncd-meta"
DATA_DB = b"data"
META_KEY = b"meta"
CHECKPOINT_KEY = b"checkpoint"
DATA_FILE = "data.mdb"
LOCK_FILE = "lock.mdb"

# Initial map size. Without writemap the file grows with the data, not with the map, so this
# only reserves virtual address space; 1 GiB holds ~250k 3 KB values before the first growth.
DEFAULT_MAP_SIZE_BYTES = 1 << 30
# Map sizes are rounded up to this (a multiple of every OS page size in use).
_MAP_ROUND_BYTES = 1 << 20
# Each growth at least doubles the map, so 40 attempts cannot be exhausted by real data.
_MAX_GROWTHS = 40
# Scans read this many entries per read transaction, so that no read transaction stays open
# between yields (an open reader would pin old pages and block map growth).
SCAN_CHUNK = 256

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CHECKPOINT = struct.Struct(">Q")
_CRC = struct.Struct(">I")
#: Exit status of the verifier child when it found damage (its reason is on stdout).
VERIFY_CORRUPT_EXIT = 3
#: The verifier may take this long plus one second per this many bytes of data file.
VERIFY_BASE_TIMEOUT_S = 60.0
VERIFY_BYTES_PER_S = 20_000_000
_CORRUPT_ERRORS: tuple[type[Exception], ...] = (
    lmdb.CorruptedError,
    lmdb.InvalidError,
    lmdb.VersionMismatchError,
    lmdb.PageNotFoundError,
    lmdb.PanicError,
    lmdb.IncompatibleError,
    lmdb.BadValsizeError,
)

_open_paths: set[str] = set()
_open_lock = threading.Lock()


@contextmanager
def _mapped_errors(what: str) -> Iterator[None]:
    """Map LMDB's exceptions to ours, keeping the cause."""
    try:
        yield
    except _CORRUPT_ERRORS as exc:
        raise StateCorruptError(f"state store is damaged ({what}): {exc}") from exc
    except lmdb.Error as exc:
        raise StateError(f"state store failed ({what}): {exc}") from exc


def _round_up(size: int) -> int:
    return -(-size // _MAP_ROUND_BYTES) * _MAP_ROUND_BYTES


def _seal(key: bytes, value: bytes) -> bytes:
    """The stored form of a value: CRC32C of key and value, then the value."""
    return _CRC.pack(crc32c.crc32c(value, crc32c.crc32c(key))) + value


def _unseal(key: bytes, stored: bytes) -> bytes:
    """The value of a stored entry; ``StateCorruptError`` if its checksum does not match."""
    if len(stored) < _CRC.size:
        raise StateCorruptError("state store entry is shorter than its checksum")
    value = stored[_CRC.size :]
    if _CRC.unpack_from(stored)[0] != crc32c.crc32c(value, crc32c.crc32c(key)):
        raise StateCorruptError("state store entry fails its checksum")
    return value


class LmdbStateStore:
    """A :class:`~processor.state.store.StateStore` in one LMDB environment (see module doc)."""

    def __init__(self, env: Any, data: Any, meta: Any, key: str, store_id: str) -> None:
        self._env = env
        self._data = data
        self._meta = meta
        self._key = key
        self._closed = False
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
            env, data, meta = _open_env(directory, map_size_bytes, store_id, verify)
        except BaseException:
            with _open_lock:
                _open_paths.discard(key)
            raise
        return cls(env, data, meta, key, store_id)

    def _live(self) -> Any:
        if self._closed:
            raise StateError("state store is closed")
        return self._env

    def get(self, key: bytes) -> bytes | None:
        """Return the value stored under ``key``, or ``None``."""
        env = self._live()
        check_key(key)
        with _mapped_errors("get"), env.begin(db=self._data) as txn:
            stored: bytes | None = txn.get(key)
        return None if stored is None else _unseal(key, stored)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Yield every ``(key, value)`` whose key starts with ``prefix``, sorted by key."""
        self._live()
        return self._scan(prefix)

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        start, skip_start = prefix, False
        while True:
            env = self._live()
            chunk: list[tuple[bytes, bytes]] = []
            done = True
            with _mapped_errors("scan"), env.begin(db=self._data) as txn:
                cursor = txn.cursor()
                if not (cursor.set_range(start) if start else cursor.first()):
                    return
                for k, v in cursor.iternext():
                    if skip_start and k == start:
                        continue
                    if not k.startswith(prefix):
                        break
                    chunk.append((k, _unseal(k, v)))
                    if len(chunk) >= SCAN_CHUNK:
                        done = False
                        break
            yield from chunk
            if done:
                return
            start, skip_start = chunk[-1][0], True

    def count(self, prefix: bytes) -> int:
        """Return how many keys start with ``prefix``."""
        env = self._live()
        with _mapped_errors("count"), env.begin(db=self._data) as txn:
            if not prefix:
                entries: int = txn.stat(self._data)["entries"]
                return entries
            cursor = txn.cursor()
            if not cursor.set_range(prefix):
                return 0
            n = 0
            for k in cursor.iternext(keys=True, values=False):
                if not k.startswith(prefix):
                    break
                n += 1
            return n

    def apply(self, writes: Mapping[bytes, bytes | None], checkpoint: int | None) -> None:
        """Atomically apply puts (``bytes``), deletes (``None``) and, if given, the checkpoint.

        On ``MapFullError`` the transaction is aborted, the map grown and the whole
        transaction retried, so growth is invisible to the caller.
        """
        env = self._live()
        items = check_writes(writes, checkpoint)
        for _ in range(_MAX_GROWTHS):
            try:
                self._write(env, items, checkpoint)
                return
            except lmdb.MapFullError:
                self._grow(env, items)
        raise StateError("state store map could not grow enough for one apply")

    def _write(
        self, env: Any, items: list[tuple[bytes, bytes | None]], checkpoint: int | None
    ) -> None:
        try:
            with env.begin(write=True) as txn:
                for key, value in items:
                    if value is None:
                        txn.delete(key, db=self._data)
                    else:
                        txn.put(key, _seal(key, value), db=self._data)
                if checkpoint is not None:
                    raw = _seal(CHECKPOINT_KEY, _CHECKPOINT.pack(checkpoint))
                    txn.put(CHECKPOINT_KEY, raw, db=self._meta)
        except lmdb.MapFullError:
            raise
        except _CORRUPT_ERRORS as exc:
            raise StateCorruptError(f"state store is damaged (apply): {exc}") from exc
        except lmdb.Error as exc:
            raise StateError(f"state store failed (apply): {exc}") from exc

    def _grow(self, env: Any, items: list[tuple[bytes, bytes | None]]) -> None:
        current: int = env.info()["map_size"]
        batch = sum(len(k) + len(v or b"") + _CRC.size for k, v in items)
        with _mapped_errors("grow map"):
            env.set_mapsize(_round_up(max(2 * current, current + 2 * batch)))

    @property
    def map_size_bytes(self) -> int:
        """The current size of the memory map (grows on demand)."""
        size: int = self._live().info()["map_size"]
        return size

    def checkpoint(self) -> int | None:
        """Return the next changelog offset to read, or ``None`` if never set."""
        env = self._live()
        with _mapped_errors("checkpoint"), env.begin(db=self._meta) as txn:
            raw: bytes | None = txn.get(CHECKPOINT_KEY)
        if raw is None:
            return None
        packed = _unseal(CHECKPOINT_KEY, raw)
        if len(packed) != _CHECKPOINT.size:
            raise StateCorruptError("state store checkpoint record is damaged")
        value: int = _CHECKPOINT.unpack(packed)[0]
        return value

    def close(self) -> None:
        """Release the store; further calls raise ``StateError``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._env.close()
        finally:
            with _open_lock:
                _open_paths.discard(self._key)


def _open_env(
    directory: Path, map_size_bytes: int, store_id: str, verify: bool
) -> tuple[Any, Any, Any]:
    """Open the environment and check it is a whole store of ours (see module doc)."""
    data_file = directory / DATA_FILE
    existed = data_file.exists()
    size = data_file.stat().st_size if existed else 0
    if existed and size == 0:
        # LMDB would silently initialise an empty file as a new environment.
        raise StateCorruptError(f"state store {store_id} has an empty data file")
    if existed and verify:
        _verify_in_child(directory, store_id, size)
    try:
        # Owner-only: the store holds every account's attributes (personal data).
        private_dir(directory)
        for name in (DATA_FILE, LOCK_FILE):  # made by an older version, or another umask
            if (directory / name).exists():
                (directory / name).chmod(PRIVATE_FILE_MODE)
    except OSError as exc:
        raise StateError(f"cannot create state directory for {store_id}: {exc}") from exc
    with _mapped_errors(f"open {store_id}"):
        env = lmdb.open(
            str(directory),
            mode=PRIVATE_FILE_MODE,
            map_size=_round_up(max(map_size_bytes, 2 * size)),
            subdir=True,
            max_dbs=2,
            writemap=False,
            sync=True,
            metasync=True,
            readahead=False,
            lock=True,
        )
    try:
        with _mapped_errors(f"open {store_id}"):
            if existed:
                data, meta = _check_existing(env, data_file, store_id)
            else:
                data, meta = _create(env, store_id)
    except BaseException:
        env.close()
        raise
    return env, data, meta


def _check_existing(env: Any, data_file: Path, store_id: str) -> tuple[Any, Any]:
    committed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    if data_file.stat().st_size < committed:
        raise StateCorruptError(f"state store {store_id} data file is truncated")
    try:
        meta = env.open_db(META_DB, create=False)
        data = env.open_db(DATA_DB, create=False)
    except lmdb.NotFoundError as exc:
        raise StateCorruptError(f"{store_id} is not an ncd-processor state store") from exc
    with env.begin(db=meta) as txn:
        raw = txn.get(META_KEY)
    _check_meta(raw, store_id)
    return data, meta


def _check_meta(raw: bytes | None, store_id: str) -> None:
    try:
        record = json.loads(raw) if raw is not None else None
    except ValueError:
        record = None
    if not isinstance(record, dict) or record.get("magic") != MAGIC:
        raise StateCorruptError(f"state store {store_id} has no valid metadata record")
    if record.get("format") != FORMAT_VERSION:
        raise StateCorruptError(
            f"state store {store_id} has format {record.get('format')!r}, expected {FORMAT_VERSION}"
        )
    if record.get("checksum") != CHECKSUM:
        raise StateCorruptError(f"state store {store_id} has no {CHECKSUM} checksums")
    if record.get("store_id") != store_id:
        raise StateCorruptError(f"state store {store_id} belongs to another store")


def _create(env: Any, store_id: str) -> tuple[Any, Any]:
    record = {"magic": MAGIC, "format": FORMAT_VERSION, "checksum": CHECKSUM, "store_id": store_id}
    with env.begin(write=True) as txn:
        meta = env.open_db(META_DB, txn=txn, create=True)
        data = env.open_db(DATA_DB, txn=txn, create=True)
        txn.put(META_KEY, json.dumps(record, sort_keys=True).encode(), db=meta)
    return data, meta


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


# ---------------------------------------------------------------- verification


def verify_directory(directory: Path, store_id: str) -> None:
    """Walk a closed store and check every entry; ``StateCorruptError`` names the damage.

    Meant to run in a child process (:func:`_verify_in_child`): on a damaged file LMDB may
    crash the process that reads it.
    """
    data_file = directory / DATA_FILE
    with _mapped_errors(f"verify {store_id}"):
        env = lmdb.open(
            str(directory), subdir=True, max_dbs=2, readonly=True, lock=False, readahead=False
        )
    try:
        with _mapped_errors(f"verify {store_id}"):
            data, meta = _check_existing(env, data_file, store_id)
            with env.begin() as txn:
                raw = txn.get(CHECKPOINT_KEY, db=meta)
                if raw is not None and len(_unseal(CHECKPOINT_KEY, raw)) != _CHECKPOINT.size:
                    raise StateCorruptError("state store checkpoint record is damaged")
                expected: int = txn.stat(data)["entries"]
                seen = 0
                previous = b""
                for key, stored in txn.cursor(db=data).iternext():
                    if seen and key <= previous:
                        raise StateCorruptError(f"state store {store_id} keys are out of order")
                    _unseal(key, stored)
                    seen += 1
                    previous = key
                    if seen > expected:
                        break
                if seen != expected:
                    raise StateCorruptError(
                        f"state store {store_id} holds {seen} entries, its header says {expected}"
                    )
    finally:
        env.close()


def _verify_in_child(directory: Path, store_id: str, size: int) -> None:
    """Run :func:`verify_directory` in a child process; damage, crash or hang is corruption.

    The child runs isolated (``python -I``: no ``PYTHON*`` variables, no user site, no script
    or working directory on its path) in ``/``, with this package's own root first on its
    path: a module planted in the state volume (a ``crc32c.py``, say) is never imported.
    """
    code = (
        "import sys; sys.path.insert(0, sys.argv[3]); from pathlib import Path; "
        "from processor.state.lmdb_store import _verify_main; "
        "sys.exit(_verify_main(Path(sys.argv[1]), sys.argv[2]))"
    )
    timeout = VERIFY_BASE_TIMEOUT_S + size / VERIFY_BYTES_PER_S
    root = str(Path(__file__).resolve().parents[2])  # so the child imports this package
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", code, str(directory.resolve()), store_id, root],
            cwd="/",
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise StateCorruptError(f"state store {store_id} verification did not finish") from exc
    except OSError as exc:
        raise StateError(f"cannot start the state store verifier: {exc}") from exc
    reason = done.stdout.decode("utf-8", "replace").strip()[:300]
    if done.returncode == 0:
        return
    if done.returncode == VERIFY_CORRUPT_EXIT:
        raise StateCorruptError(reason or f"state store {store_id} is damaged")
    if done.returncode < 0:
        raise StateCorruptError(
            f"state store {store_id} crashed its verifier (signal {-done.returncode})"
        )
    raise StateError(f"state store verifier failed with exit status {done.returncode}")


def _verify_main(directory: Path, store_id: str) -> int:
    """Entry point of the verifier child: 0 when whole, ``VERIFY_CORRUPT_EXIT`` when damaged."""
    try:
        verify_directory(directory, store_id)
    except StateError as exc:
        # Any LMDB failure on a file this process alone reads means the file is unusable;
        # rebuilding is the safe side (a wrongly rebuilt store only costs a restore).
        print(str(exc), flush=True)
        return VERIFY_CORRUPT_EXIT
    return 0
