"""``ncd-processor diff`` against a DeepDiff job on the same snapshot pair, both as processes.

The DeepDiff job is what a team without this project might write: read both snapshot files,
decode every line, pair accounts by nativeIdentity and run ``DeepDiff(previous, current,
ignore_order=True)`` on every pair. Both run as child processes on the cached dataset of
``bench.diff_bench`` (20,000 accounts by default); the figure is the ratio of their CPU
times (user + system, steadier than wall time on a shared machine) and of their wall times.
``--before DIR`` also runs another checkout's ``diff`` (see ``bench.diff_bench``).

    python -m bench.diff_vs_deepdiff --accounts 20000 --runs 3 [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as ``python bench/diff_vs_deepdiff.py``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.diff_bench import OUT, dataset_dir, ensure_dataset, run_diff
from bench.generate import generate


def deepdiff_job(directory: Path) -> int:
    """The DeepDiff job itself (run in the child): the number of pairs compared."""
    import orjson
    from deepdiff import DeepDiff

    def read(name: str) -> dict[str, Any]:
        with (directory / name).open("rb") as handle:
            records = (orjson.loads(line) for line in handle if line.strip())
            return {record["nativeIdentity"]: record for record in records}

    previous, current = read("previous.jsonl"), read("current.jsonl")
    pairs = 0
    for name, after in current.items():
        before = previous.get(name)
        if before is not None:
            DeepDiff(before, after, ignore_order=True)
            pairs += 1
    return pairs


def run_child(command: list[str]) -> dict[str, float]:
    """Wall and CPU seconds of one child process (its output discarded)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[:4]} failed")
    return {"wall_s": time.perf_counter() - started, "cpu_s": usage.ru_utime + usage.ru_stime}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--changed", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3, help="diff runs (DeepDiff runs once)")
    parser.add_argument("--before", type=Path, metavar="DIR", help="another checkout's diff")
    parser.add_argument("--deepdiff-job", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.deepdiff_job is not None:
        print(deepdiff_job(args.deepdiff_job), file=sys.stderr)
        return 0
    directory = dataset_dir(args.accounts, args.changed, args.seed)
    ensure_dataset(generate(args.accounts, args.changed, args.seed), directory)
    OUT.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict[str, Any]]] = {"diff": [], "diff before": []}
    for i in range(args.runs):
        if args.before is not None:
            rows["diff before"].append(
                run_diff(directory, OUT / f"dd-before-{i}.jsonl", args.before)
            )
        rows["diff"].append(run_diff(directory, OUT / f"dd-after-{i}.jsonl"))
    job = [sys.executable, "-m", "bench.diff_vs_deepdiff", "--deepdiff-job", str(directory)]
    deep = run_child(job)
    print(f"DeepDiff job: {deep['cpu_s']:.2f} s CPU, {deep['wall_s']:.2f} s wall")
    for name, runs in rows.items():
        if not runs:
            continue
        cpu = min(r["cpu_s"] for r in runs)
        wall = min(r["wall_s"] for r in runs)
        cpus = ", ".join(f"{r['cpu_s']:.2f}" for r in runs)
        print(
            f"{name}: CPU {cpus} s (best {cpu:.2f}: DeepDiff / diff = {deep['cpu_s'] / cpu:.1f}x); "
            f"best wall {wall:.2f} s ({deep['wall_s'] / wall:.1f}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
