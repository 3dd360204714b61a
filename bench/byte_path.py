"""Unchanged records decided from bytes, two checkouts side by side (issue 14).

The worker's per-record step (``PartitionProcessor.process`` on the record as the worker
passes it) over the same unchanged records of ``bench.report.core_bench.measure_worker_path``
(a baseline of ``--accounts`` accounts in an in-memory store, ``--limit`` unchanged records
of about 3.4 KB), measured for a base checkout and this one in alternating child processes,
``--runs`` times. Each child times ``--passes`` passes over the records and reports its best
and median pass as records per second, by the wall clock and by the process's CPU time (on a
shared machine the CPU time leaves out the time other processes held the core)::

    git worktree add /tmp/base BASE      # or: git archive BASE | tar -x -C /tmp/base
    python -m bench.byte_path --base /tmp/base --runs 5
    python -m bench.byte_path --base /tmp/base --runs 3 --changed --limit 300   # changed records

``--batch``: the batch step instead (``BatchDecider.decide``: per-record bookkeeping, runs of
unchanged records, tally) on one batch of ``--limit`` unchanged records, CPU time only; with
``--changed``, on the second aggregation's account records as they come (about 7 % changed,
created or deleted: runs as short as they really are)::

    python -m bench.byte_path --base /tmp/base --runs 3 --batch --limit 3000
    python -m bench.byte_path --base /tmp/base --runs 3 --batch --changed --limit 3000
    python -m bench.byte_path --base /tmp/base --runs 3 --batch --lmdb   # the worker's store

``--parts``: CPU ns per record of a run of unchanged records (``unchanged_run``) and of its
parts, each timed alone over the same records (byte checks, state read, digest; the rest is
the loop around them), in memory or (``--lmdb``) on LMDB::

    python -m bench.byte_path --base /tmp/base --runs 3 --parts --lmdb --passes 40
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

_ROW = "worker PartitionProcessor.process (bytes)"


def measure(
    accounts: int,
    limit: int,
    passes: int,
    changed: int = 0,
    batch: int = 0,
    lmdb: int = 0,
    parts: int = 0,
) -> dict[str, float]:
    """Records/s of the worker's step on unchanged (``changed`` 0) or changed records in the
    imported checkout; ``batch``: of the batch step (:func:`measure_batch`, ``lmdb``: on an
    LMDB store); ``parts``: ns per record of a run and its parts (:func:`measure_parts`)."""
    if parts:
        return measure_parts(accounts, limit, passes, lmdb)
    if batch:
        return measure_batch(accounts, limit, passes, changed, lmdb)
    generate = importlib.import_module("bench.generate").generate
    core_bench = importlib.import_module("bench.report.core_bench")
    captured: dict[str, list[tuple[Sequence[Any], Callable[[Any], object]]]] = {}

    def capture(label: str, items: Sequence[Any], work: Callable[[Any], object], _b: float):
        captured.setdefault(label, []).append((items, work))  # unchanged first, then changed
        return {"label": label, "per_s": 1.0}

    core_bench.rate = capture
    core_bench.measure_worker_path(generate(accounts, 0.05, 7), limit, 0.0)
    items, work = captured[_ROW][1 if changed else 0]

    def one_pass() -> None:
        for item in items:
            work(item)

    return _rates(len(items), passes, one_pass)


def _rates(n: int, passes: int, one_pass: Callable[[], object]) -> dict[str, float]:
    """Records/s of ``passes`` passes over ``n`` records: best and median by the wall clock,
    best by the CPU time."""
    walls, cpus = [], []
    for _ in range(passes):
        wall, cpu = time.perf_counter(), time.process_time()
        one_pass()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return {
        "records": n,
        "wall_best": n / min(walls),
        "wall_median": n / statistics.median(walls),
        "cpu_best": n / min(cpus),
    }


def _batch_setup(accounts: int, limit: int, mixed: int, lmdb: int) -> tuple[Any, ...]:
    """(store, partition processor, records, settings) of :func:`measure_batch`: a first
    aggregation stored, the second started, ``limit`` of its records (unchanged ones unless
    ``mixed``). Self-contained (not ``core_bench``'s set-up): an older checkout has no helper
    for it."""
    from bench.generate import CURRENT_AT, PREVIOUS_AT, generate
    from bench.report.core_bench import _iso, _records
    from processor.config import load_settings
    from processor.models import CatalogEntry, SourceDescriptor
    from processor.state.overlay import BatchOverlay
    from processor.state.store import InMemoryStateStore
    from processor.transport import InRecord
    from processor.worker.partition import PartitionProcessor, Verdict
    from processor.worker.registry import SourceRegistry

    dataset = generate(accounts, 0.05, 7)
    if lmdb:
        from processor.state.lmdb_store import LmdbStateStore

        where = tempfile.mkdtemp(prefix="ncd-byte-path-")
        atexit.register(shutil.rmtree, where, True)
        store: Any = LmdbStateStore.open(Path(where) / "state", verify=False)
    else:
        store = InMemoryStateStore()
    registry = SourceRegistry()
    source = SourceDescriptor.model_validate(dataset.source)
    registry.put_source(source)
    for entry in dataset.catalog():
        registry.catalog(source.id).put(CatalogEntry.model_validate(entry))
    proc = PartitionProcessor(registry)
    overlay = BatchOverlay(store)
    proc.begin_batch()
    for _, value in _records(dataset, dataset.previous(), _iso(PREVIOUS_AT)):
        proc.process(value, overlay)
    proc.end_batch(overlay, 0)
    store.apply(overlay.writes, None)
    second = _records(dataset, dataset.current(), _iso(CURRENT_AT))
    overlay = BatchOverlay(store)
    proc.begin_batch()
    proc.process(second[0][1], overlay)  # aggregation.started
    proc.end_batch(overlay, 1)
    store.apply(overlay.writes, None)
    settings = load_settings(partitions=1, group_id="b", instance_id="b")
    records = []
    probe = BatchOverlay(store)
    for offset, (key, value) in enumerate(second[1:-1], start=1):
        unchanged = proc.process(value, probe).verdict == Verdict.UNCHANGED
        if (mixed or unchanged) and len(records) < limit:
            records.append(
                InRecord(settings.topic_aggregations, 0, offset, key, value, (), 1_700_000_000_000)
            )
    return store, proc, records, settings


def measure_batch(
    accounts: int, limit: int, passes: int, mixed: int, lmdb: int = 0
) -> dict[str, float]:
    """Records/s of ``BatchDecider.decide`` on one batch of unchanged records (``mixed``: the
    second aggregation's account records as they come) in the imported checkout; ``lmdb``: the
    state in the worker's LMDB store (in a temporary directory), else in memory."""
    from processor.worker.batch import BatchDecider
    from processor.worker.partition import Verdict
    from processor.worker.partitions import Partition

    store, proc, records, settings = _batch_setup(accounts, limit, mixed, lmdb)
    decider = BatchDecider(settings, None)  # type: ignore[arg-type]  # never caught up
    partitions = {0: Partition(store, proc)}

    class _Sink:
        def send(self, record: Any) -> None:  # unchanged records: the seen chunks only
            assert mixed or record.topic == settings.topic_changelog, "an unchanged one wrote"

    def one_pass() -> None:
        tally, _ = decider.decide({0: records}, partitions, _Sink(), 2**62)  # type: ignore[arg-type]
        assert mixed or tally.verdicts[Verdict.UNCHANGED] == len(records), tally.verdicts

    return _rates(len(records), passes, one_pass)


def measure_parts(accounts: int, limit: int, passes: int, lmdb: int) -> dict[str, float]:
    """CPU ns per record of a run of ``limit`` unchanged records (``unchanged_run`` from the
    first) and of its parts each timed alone over the same records: the head's and uuid's
    byte checks (``compact_span``), the state read (``viewer(checked=False)``, or
    ``viewer()``, where the checkout has it, else ``get``) and the digest; the rest is the
    loop around them (best pass of each)."""
    from processor.state.overlay import BatchOverlay
    from processor.worker.envelope import COMPACT_HEAD, compact_span
    from processor.worker.state import bytes_digest, k_account

    store, proc, records, _ = _batch_setup(accounts, limit, 0, lmdb)
    head = COMPACT_HEAD.match(records[0].value)
    assert head is not None
    opens, source_id = head.end() - 1, head.group(1).decode()
    keys, views = [], []
    for record in records:
        span = compact_span(record.value, opens)
        assert span is not None, "a record the run would not take"
        keys.append(k_account(source_id, "u:") + span[1])
        views.append(memoryview(record.value)[opens : span[0]])
    topic = records[0].topic

    def run() -> None:
        proc.begin_batch()
        proc.unchanged_run(records, 0, topic, BatchOverlay(store))

    def read() -> None:
        overlay = BatchOverlay(store)
        try:  # the run's read: unchecked where the checkout has it
            get = overlay.viewer(checked=False)
        except TypeError:
            get = overlay.viewer() if hasattr(overlay, "viewer") else overlay.get
        for key in keys:
            get(key)

    parts = {
        "run": run,
        "checks": lambda: [compact_span(r.value, opens) for r in records],
        "read": read,
        "digest": lambda: [bytes_digest(v) for v in views],
    }
    ns = {}
    for name, work in parts.items():
        cpus = []
        for _ in range(passes):
            cpu = time.process_time()
            work()
            cpus.append(time.process_time() - cpu)
        ns[name] = min(cpus) / len(records) * 1e9
    ns["rest"] = ns["run"] - ns["checks"] - ns["read"] - ns["digest"]
    return ns


def _child(repo: Path, args: argparse.Namespace) -> dict[str, Any]:
    # This file is loaded by its path, so that ``bench`` and ``processor`` come from ``repo``
    # (which need not have this file).
    code = (
        "import sys, json, importlib.util as u; sys.path.insert(0, sys.argv[1]); "
        "s = u.spec_from_file_location('_byte_path', sys.argv[2]); m = u.module_from_spec(s); "
        "s.loader.exec_module(m); print(json.dumps(m.measure(*map(int, sys.argv[3:]))))"
    )
    argv = [str(repo), __file__, str(args.accounts), str(args.limit), str(args.passes)]
    argv.append("1" if args.changed else "0")
    argv.append("1" if args.batch else "0")
    argv.append("1" if args.lmdb else "0")
    argv.append("1" if args.parts else "0")
    # -I: neither this checkout nor the working directory shadows ``repo``'s modules.
    out = subprocess.run(
        [sys.executable, "-I", "-c", code, *argv], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", type=Path, required=True, help="the checkout to compare with")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--accounts", type=int, default=4000)
    parser.add_argument("--limit", type=int, default=2000, help="unchanged records per pass")
    parser.add_argument("--passes", type=int, default=15)
    parser.add_argument("--changed", action="store_true", help="changed records instead")
    parser.add_argument(
        "--batch", action="store_true", help="the batch step (--changed: records as they come)"
    )
    parser.add_argument("--lmdb", action="store_true", help="--batch on an LMDB store")
    parser.add_argument("--parts", action="store_true", help="ns per record of a run and its parts")
    args = parser.parse_args(argv)
    this = Path(__file__).resolve().parents[1]
    if args.parts:
        columns = ["run", "checks", "read", "digest", "rest"]
        print("run | checkout | " + " | ".join(f"{c} ns" for c in columns))
    else:
        columns = ["wall_best", "wall_median", "cpu_best"]
        print("run | checkout | best wall /s | median wall /s | best CPU /s")
    for run in range(args.runs):
        order = [("base", args.base), ("new", this)]
        for name, repo in reversed(order) if run % 2 else order:
            r = _child(repo.resolve(), args)
            cells = " | ".join(f"{r[c]:,.0f}" for c in columns)
            print(f"{run + 1} | {name} | {cells}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
