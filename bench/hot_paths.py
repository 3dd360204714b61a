"""Per-record microseconds of the hot paths, best of several passes, for before/after checks.

The worker's step on unchanged records (the fast path) and on changed ones, the core's
``decide_event`` on unchanged and changed pairs (alone, and with the event's output record
as the worker builds it), and ``processor.codec.loads`` on the same records, all from
``bench.report.core_bench``'s data and set-up, timed with ``timeit`` (best of ``--repeat``
passes: on a shared machine the best pass is the least disturbed one).

``--repo`` measures another checkout with this script, e.g. the commit a branch started from::

    git archive BASE | tar -x -C /tmp/base
    python bench/hot_paths.py --repo /tmp/base    # before
    python bench/hot_paths.py                     # after
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def _best_us(items: Sequence[Any], work: Callable[[Any], object], repeat: int) -> float:
    def one_pass() -> None:
        for item in items:
            work(item)

    return min(timeit.repeat(one_pass, number=1, repeat=repeat)) / len(items) * 1e6


def _with_record(event: Any, event_record: Callable[[str, Any, int], object]) -> object:
    """The output record of a decided event (what the worker writes), or ``None``."""
    return None if event is None else event_record("ncd.events", event, 0)


def measure(accounts: int, limit: int, repeat: int) -> dict[str, float]:
    """Microseconds per record of each hot path."""
    generate = importlib.import_module("bench.generate").generate
    core_bench = importlib.import_module("bench.report.core_bench")
    decide_event = importlib.import_module("processor.core").decide_event
    loads = importlib.import_module("processor.codec").loads
    event_record = importlib.import_module("processor.worker.outputs").event_record
    dataset = generate(accounts, 0.05, 7)
    policy, catalog = core_bench.policy_and_catalog(dataset)
    out: dict[str, float] = {}
    for kind in ("unchanged", "changed"):
        pairs = core_bench.build_pairs(dataset, kind, limit)
        models = list(zip(pairs.previous_models, pairs.current_models, strict=True))
        out[f"core decide_event, {kind} pair"] = _best_us(
            models, lambda pc: decide_event(policy, pc[0], pc[1], catalog, context="b"), repeat
        )
        out[f"core decide_event + event_record, {kind} pair"] = _best_us(
            models,
            lambda pc: _with_record(
                decide_event(policy, pc[0], pc[1], catalog, context="b"), event_record
            ),
            repeat,
        )
        out[f"codec.loads, {kind} account"] = _best_us(pairs.current_bytes, loads, repeat)

    def timed(label: str, items: Sequence[Any], work: Callable[[Any], object], _budget: float):
        us = _best_us(items, work, repeat)
        return {"label": label, "per_s": 1e6 / us, "us": us}

    core_bench.rate = timed  # measure_worker_path times its rows through ``rate``
    worker = core_bench.measure_worker_path(dataset, limit, 1.0)
    for kind in ("unchanged", "changed"):
        for row in worker[kind]["rows"]:
            out[f"worker, {kind} record: {row['label']}"] = row["us"]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repo", type=Path, help="measure this checkout (default: this one)")
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--limit", type=int, default=2000, help="records per row")
    parser.add_argument("--repeat", type=int, default=7, help="passes; the best one counts")
    args = parser.parse_args(argv)
    repo = (args.repo or Path(__file__).resolve().parents[1]).resolve()
    sys.path.insert(0, str(repo))
    figures = measure(args.accounts, args.limit, args.repeat)
    measured = importlib.import_module("processor").__file__
    print(json.dumps({"processor": measured, "us_per_record": figures}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
