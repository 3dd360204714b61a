"""Benchmark the state store engines with 3 KB values: LMDB (our store) vs SQLite (stdlib).

    python bench/state_stores.py --keys 200000

Phases, the same for every engine, each batch one durable (fsynced) transaction:

* load: batched puts of every key, in random order (the first restore from a changelog);
* update: batched overwrites of random existing keys (the steady state);
* get: random point reads of existing keys (one per incoming record).

rocksdict (RocksDB) is added when it is importable (``pip install rocksdict``). The data set
fits in the page cache of the benchmark machine, so gets measure the engines, not the disk.
Prints a markdown table with rates and their ratio to LMDB.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processor.state import open_store


class Engine(Protocol):
    """What the benchmark needs from an engine."""

    name: str

    def put_batch(self, items: Sequence[tuple[bytes, bytes]]) -> None: ...
    def get(self, key: bytes) -> bytes | None: ...
    def close(self) -> None: ...


class LmdbEngine:
    """Our LmdbStateStore, as the worker uses it (apply with a checkpoint, fsync per apply)."""

    name = "LMDB (LmdbStateStore)"

    def __init__(self, root: Path) -> None:
        self._store = open_store(root, "bench", 0)
        self._offset = 0

    def put_batch(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        self._offset += len(items)
        self._store.apply(dict(items), self._offset)

    def get(self, key: bytes) -> bytes | None:
        return self._store.get(key)

    def close(self) -> None:
        self._store.close()


class SqliteEngine:
    """SQLite in WAL mode, synchronous=FULL (durable per commit, like the LMDB store)."""

    name = "SQLite (WAL, sync FULL)"

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(root / "state.sqlite", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY, cp INTEGER)")
        self._offset = 0

    def put_batch(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        self._offset += len(items)
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", items)
        self._db.execute("INSERT OR REPLACE INTO meta (id, cp) VALUES (1, ?)", (self._offset,))
        self._db.execute("COMMIT")

    def get(self, key: bytes) -> bytes | None:
        row = self._db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        self._db.close()


class RocksEngine:
    """RocksDB through rocksdict, raw bytes, WriteBatch with sync=True."""

    name = "RocksDB (rocksdict, sync)"

    def __init__(self, root: Path) -> None:
        import rocksdict

        self._rocks: Any = rocksdict
        self._db = rocksdict.Rdict(str(root), options=rocksdict.Options(raw_mode=True))
        self._wopt = rocksdict.WriteOptions()
        self._wopt.sync = True
        self._offset = 0

    def put_batch(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        self._offset += len(items)
        batch = self._rocks.WriteBatch(raw_mode=True)
        for k, v in items:
            batch.put(k, v)
        batch.put(b"\x00checkpoint", self._offset.to_bytes(8, "big"))
        self._db.write(batch, self._wopt)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def close(self) -> None:
        self._db.close()


def _engines() -> list[tuple[str, Callable[[Path], Engine]]]:
    found: list[tuple[str, Callable[[Path], Engine]]] = [
        ("lmdb", LmdbEngine),
        ("sqlite", SqliteEngine),
    ]
    try:
        import rocksdict  # noqa: F401  (optional)

        found.append(("rocksdb", RocksEngine))
    except ImportError:
        pass
    return found


@contextmanager
def _timed(result: dict[str, float], phase: str, ops: int) -> Iterator[None]:
    start = time.perf_counter()
    yield
    result[phase] = ops / (time.perf_counter() - start)


def _value(i: int, pool: Sequence[bytes]) -> bytes:
    return pool[i % len(pool)][:-8] + i.to_bytes(8, "big")


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def run_engine(
    make: Callable[[Path], Engine], root: Path, args: argparse.Namespace
) -> dict[str, float]:
    """Run the three phases on one engine and return ops/s per phase (plus disk MB)."""
    rng = random.Random(args.seed)
    pool = [rng.randbytes(args.value_bytes) for _ in range(64)]
    keys = [f"account:{i:012d}".encode() for i in range(args.keys)]
    order = list(range(args.keys))
    rng.shuffle(order)
    result: dict[str, float] = {}
    engine = make(root)
    try:
        with _timed(result, "load", args.keys):
            for start in range(0, args.keys, args.batch):
                engine.put_batch(
                    [(keys[i], _value(i, pool)) for i in order[start : start + args.batch]]
                )
        updates = [rng.randrange(args.keys) for _ in range(args.updates)]
        with _timed(result, "update", args.updates):
            for start in range(0, args.updates, args.batch):
                chunk = updates[start : start + args.batch]
                engine.put_batch([(keys[i], _value(i + 1, pool)) for i in chunk])
        reads = [keys[rng.randrange(args.keys)] for _ in range(args.gets)]
        with _timed(result, "get", args.gets):
            for key in reads:
                if engine.get(key) is None:
                    raise AssertionError("a loaded key was not found")
    finally:
        engine.close()
    result["disk_mb"] = _dir_mb(root)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run every engine in turn, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--value-bytes", type=int, default=3072)
    parser.add_argument("--batch", type=int, default=500, help="puts per transaction")
    parser.add_argument("--updates", type=int, default=None, help="default: keys / 2")
    parser.add_argument("--gets", type=int, default=None, help="default: keys")
    parser.add_argument("--dir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    args.updates = args.updates if args.updates is not None else args.keys // 2
    args.gets = args.gets if args.gets is not None else args.keys
    base = Path(tempfile.mkdtemp(prefix="state-bench-", dir=args.dir))
    results: dict[str, dict[str, float]] = {}
    names: dict[str, str] = {}
    try:
        for key, make in _engines():
            print(f"running {key} ...", file=sys.stderr, flush=True)
            results[key] = run_engine(make, base / key, args)
            names[key] = getattr(make, "name", key)
            shutil.rmtree(base / key, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    _print_table(results, names, args)
    return 0


def _print_table(
    results: dict[str, dict[str, float]], names: dict[str, str], args: argparse.Namespace
) -> None:
    lmdb = results["lmdb"]
    print(
        f"\n{args.keys} keys, {args.value_bytes} B values, {args.batch} puts per durable"
        f" transaction, {args.updates} updates, {args.gets} random gets;"
        f" python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n"
    )
    print(
        "| engine | load puts/s | update puts/s | gets/s | disk MB | load / update / get vs LMDB |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for key, r in results.items():
        ratios = " / ".join(f"{r[p] / lmdb[p]:.2f}x" for p in ("load", "update", "get"))
        print(
            f"| {names[key]} | {r['load']:,.0f} | {r['update']:,.0f} | {r['get']:,.0f}"
            f" | {r['disk_mb']:,.0f} | {ratios} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
