"""Unchanged records through the worker's batch step, two checkouts side by side (issue 14).

``BatchDecider.decide`` (the runner's per-batch step: per-record bookkeeping, tally, outputs)
on one batch of ``--limit`` unchanged account records of about 3.4 KB, against an in-memory
store holding a baseline of ``--accounts`` accounts (no LMDB, no broker), for a base checkout
and this one in alternating child processes, ``--runs`` times. Each child times ``--passes``
passes and reports its best and median pass as records per second of CPU time::

    git worktree add /tmp/base BASE
    python -m bench.unchanged_batch --base /tmp/base --runs 3
    python -m bench.unchanged_batch --base /tmp/base --runs 3 --mixed   # as they come

``--mixed``: the batch is the second aggregation's account records as they come (about 7 %
changed, created or deleted), so runs of unchanged records are as short as they really are.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def measure(accounts: int, limit: int, passes: int, mixed: int = 0) -> dict[str, float]:
    """Records/s of CPU time of ``BatchDecider.decide`` on unchanged records (``mixed``: on
    the account records of the second aggregation as they come, changed ones among them) in
    the imported checkout."""
    from bench.generate import CURRENT_AT, PREVIOUS_AT, generate
    from bench.report.core_bench import _iso, _records
    from processor.config import load_settings
    from processor.models import CatalogEntry, SourceDescriptor
    from processor.state.overlay import BatchOverlay
    from processor.state.store import InMemoryStateStore
    from processor.transport import InRecord
    from processor.worker.batch import BatchDecider
    from processor.worker.partition import PartitionProcessor, Verdict
    from processor.worker.partitions import Partition
    from processor.worker.registry import SourceRegistry

    dataset = generate(accounts, 0.05, 7)
    registry = SourceRegistry()
    source = SourceDescriptor.model_validate(dataset.source)
    registry.put_source(source)
    for entry in dataset.catalog():
        registry.catalog(source.id).put(CatalogEntry.model_validate(entry))
    store = InMemoryStateStore()
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
    decider = BatchDecider(settings, None)  # type: ignore[arg-type]  # never caught up
    partitions = {0: Partition(store, proc)}

    class _Sink:
        def send(self, record: Any) -> None:  # unchanged records: the seen chunks only
            assert mixed or record.topic == settings.topic_changelog, "an unchanged one wrote"

    cpus = []
    for _ in range(passes):
        cpu = time.process_time()
        tally, _ = decider.decide({0: records}, partitions, _Sink(), 2**62)  # type: ignore[arg-type]
        cpus.append(time.process_time() - cpu)
        assert mixed or tally.verdicts[Verdict.UNCHANGED] == len(records), tally.verdicts
    n = len(records)
    return {"records": n, "cpu_best": n / min(cpus), "cpu_median": n / statistics.median(cpus)}


def _child(repo: Path, args: argparse.Namespace) -> dict[str, Any]:
    # Loaded by its path, so that ``bench`` and ``processor`` come from ``repo``.
    code = (
        "import sys, json, importlib.util as u; sys.path.insert(0, sys.argv[1]); "
        "s = u.spec_from_file_location('_unchanged_batch', sys.argv[2]); "
        "m = u.module_from_spec(s); s.loader.exec_module(m); "
        "print(json.dumps(m.measure(*map(int, sys.argv[3:]))))"
    )
    argv = [str(repo), __file__, str(args.accounts), str(args.limit), str(args.passes)]
    argv.append("1" if args.mixed else "0")
    out = subprocess.run(
        [sys.executable, "-I", "-c", code, *argv], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", type=Path, required=True, help="the checkout to compare with")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=4000)
    parser.add_argument("--limit", type=int, default=3000, help="unchanged records per batch")
    parser.add_argument("--passes", type=int, default=15)
    parser.add_argument("--mixed", action="store_true", help="changed records among them")
    args = parser.parse_args(argv)
    this = Path(__file__).resolve().parents[1]
    figures: dict[str, list[float]] = {"base": [], "new": []}
    print("run | checkout | best CPU /s | median CPU /s")
    for run in range(args.runs):
        order = [("base", args.base), ("new", this)]
        if run % 2:
            order.reverse()
        for name, repo in order:
            r = _child(repo.resolve(), args)
            figures[name].append(r["cpu_best"])
            print(f"{run + 1} | {name} | {r['cpu_best']:,.0f} | {r['cpu_median']:,.0f}", flush=True)
    base, new = (statistics.median(figures[k]) for k in ("base", "new"))
    print(f"median of best CPU /s: base {base:,.0f}, new {new:,.0f}: {new / base:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
