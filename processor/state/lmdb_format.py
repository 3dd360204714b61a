"""The on-disk format of a state store: its metadata record, the CRC32C that guards every
value and the checkpoint, the verifier that walks a closed store in a child process
before the worker maps it, and the opening of an environment that checks all this (see
:mod:`processor.state.lmdb_store` for why)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import crc32c
import lmdb

from processor.errors import StateCorruptError, StateError
from processor.files import PRIVATE_FILE_MODE, private_dir

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
#: The checkpoint as stored: 8 big-endian bytes.
CHECKPOINT = struct.Struct(">Q")
#: Map sizes are rounded up to this (a multiple of every OS page size in use).
MAP_ROUND_BYTES = 1 << 20
#: The CRC32C in front of every stored value.
CRC = struct.Struct(">I")
#: A stored entry: bytes, or a view of LMDB's map (see ``LmdbStateStore.viewer``).
_Stored = TypeVar("_Stored", bytes, memoryview)

#: Exit status of the verifier child when it found damage (its reason is on stdout).
VERIFY_CORRUPT_EXIT = 3
#: The verifier may take this long plus one second per this many bytes of data file.
VERIFY_BASE_TIMEOUT_S = 60.0
VERIFY_BYTES_PER_S = 20_000_000
CORRUPT_ERRORS: tuple[type[Exception], ...] = (
    lmdb.CorruptedError,
    lmdb.InvalidError,
    lmdb.VersionMismatchError,
    lmdb.PageNotFoundError,
    lmdb.PanicError,
    lmdb.IncompatibleError,
    lmdb.BadValsizeError,
)


def state_error(exc: lmdb.Error, what: str) -> StateError:
    """Our exception for one of LMDB's (raise it ``from exc`` to keep the cause)."""
    if isinstance(exc, CORRUPT_ERRORS):
        return StateCorruptError(f"state store is damaged ({what}): {exc}")
    return StateError(f"state store failed ({what}): {exc}")


@contextmanager
def mapped_errors(what: str) -> Iterator[None]:
    """Map LMDB's exceptions to ours, keeping the cause."""
    try:
        yield
    except lmdb.Error as exc:
        raise state_error(exc, what) from exc


def seal(key: bytes, value: bytes) -> bytes:
    """The stored form of a value: CRC32C of key and value, then the value."""
    return CRC.pack(crc32c.crc32c(value, crc32c.crc32c(key))) + value


def unseal(key: bytes, stored: _Stored) -> _Stored:
    """The value of a stored entry; ``StateCorruptError`` if its checksum does not match.
    ``stored`` as bytes gives a copy, as a view of LMDB's map a view (no copy)."""
    if len(stored) < CRC.size:
        raise StateCorruptError("state store entry is shorter than its checksum")
    value = stored[CRC.size :]
    if CRC.unpack_from(stored)[0] != crc32c.crc32c(value, crc32c.crc32c(key)):
        raise StateCorruptError("state store entry fails its checksum")
    return value


def check_existing(env: Any, data_file: Path, store_id: str) -> tuple[Any, Any]:
    """The (data, meta) databases of an existing store, once its file is whole and its
    metadata names it; ``StateCorruptError`` otherwise."""
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
    check_meta(raw, store_id)
    return data, meta


def check_meta(raw: bytes | None, store_id: str) -> None:
    """``StateCorruptError`` unless ``raw`` is this format's metadata record of ``store_id``."""
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


def create_meta(env: Any, store_id: str) -> tuple[Any, Any]:
    """Create the (data, meta) databases of a new store and its metadata record."""
    record = {"magic": MAGIC, "format": FORMAT_VERSION, "checksum": CHECKSUM, "store_id": store_id}
    with env.begin(write=True) as txn:
        meta = env.open_db(META_DB, txn=txn, create=True)
        data = env.open_db(DATA_DB, txn=txn, create=True)
        txn.put(META_KEY, json.dumps(record, sort_keys=True).encode(), db=meta)
    return data, meta


def verify_directory(directory: Path, store_id: str) -> None:
    """Walk a closed store and check every entry; ``StateCorruptError`` names the damage.

    Meant to run in a child process (:func:`_verify_in_child`): on a damaged file LMDB may
    crash the process that reads it.
    """
    data_file = directory / DATA_FILE
    with mapped_errors(f"verify {store_id}"):
        env = lmdb.open(
            str(directory), subdir=True, max_dbs=2, readonly=True, lock=False, readahead=False
        )
    try:
        with mapped_errors(f"verify {store_id}"):
            data, meta = check_existing(env, data_file, store_id)
            with env.begin() as txn:
                raw = txn.get(CHECKPOINT_KEY, db=meta)
                if raw is not None and len(unseal(CHECKPOINT_KEY, raw)) != CHECKPOINT.size:
                    raise StateCorruptError("state store checkpoint record is damaged")
                expected: int = txn.stat(data)["entries"]
                seen = 0
                previous = b""
                for key, stored in txn.cursor(db=data).iternext():
                    if seen and key <= previous:
                        raise StateCorruptError(f"state store {store_id} keys are out of order")
                    unseal(key, stored)
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


def verify_in_child(directory: Path, store_id: str, size: int) -> None:
    """Run :func:`verify_directory` in a child process; damage, crash or hang is corruption.

    The child runs isolated (``python -I``: no ``PYTHON*`` variables, no user site, no script
    or working directory on its path) in ``/``, with this package's own root first on its
    path: a module planted in the state volume (a ``crc32c.py``, say) is never imported.
    """
    code = (
        "import sys; sys.path.insert(0, sys.argv[3]); from pathlib import Path; "
        "from processor.state.lmdb_format import verify_main; "
        "sys.exit(verify_main(Path(sys.argv[1]), sys.argv[2]))"
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


def verify_main(directory: Path, store_id: str) -> int:
    """Entry point of the verifier child: 0 when whole, ``VERIFY_CORRUPT_EXIT`` when damaged."""
    try:
        verify_directory(directory, store_id)
    except StateError as exc:
        # Any LMDB failure on a file this process alone reads means the file is unusable;
        # rebuilding is the safe side (a wrongly rebuilt store only costs a restore).
        print(str(exc), flush=True)
        return VERIFY_CORRUPT_EXIT
    return 0


def round_map_size(size: int) -> int:
    """``size`` rounded up to a whole number of :data:`MAP_ROUND_BYTES`."""
    return -(-size // MAP_ROUND_BYTES) * MAP_ROUND_BYTES


def open_env(
    directory: Path, map_size_bytes: int, store_id: str, verify: bool
) -> tuple[Any, Any, Any]:
    """Open the environment and check it is a whole store of ours (see
    :mod:`processor.state.lmdb_store`); ``(env, data db, meta db)``."""
    data_file = directory / DATA_FILE
    existed = data_file.exists()
    size = data_file.stat().st_size if existed else 0
    if existed and size == 0:
        # LMDB would silently initialise an empty file as a new environment.
        raise StateCorruptError(f"state store {store_id} has an empty data file")
    if existed and verify:
        verify_in_child(directory, store_id, size)
    try:
        # Owner-only: the store holds every account's attributes (personal data).
        private_dir(directory)
        for name in (DATA_FILE, LOCK_FILE):  # made by an older version, or another umask
            if (directory / name).exists():
                (directory / name).chmod(PRIVATE_FILE_MODE)
    except OSError as exc:
        raise StateError(f"cannot create state directory for {store_id}: {exc}") from exc
    with mapped_errors(f"open {store_id}"):
        env = lmdb.open(
            str(directory),
            mode=PRIVATE_FILE_MODE,
            map_size=round_map_size(max(map_size_bytes, 2 * size)),
            subdir=True,
            max_dbs=2,
            writemap=False,
            sync=True,
            metasync=False,
            readahead=False,
            lock=True,
        )
    try:
        with mapped_errors(f"open {store_id}"):
            if existed:
                data, meta = check_existing(env, data_file, store_id)
            else:
                data, meta = create_meta(env, store_id)
    except BaseException:
        env.close()
        raise
    return env, data, meta
