"""``python -m bench.report [--quick]``: measure everything; write REPORT.md, report.json and
throughput.png."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.generate import generate
from bench.report import render

OUT = Path(__file__).resolve().parent


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _write(r: dict[str, Any], args: argparse.Namespace, began: float) -> None:
    """Write report.json, REPORT.md and the plot from what ``r`` holds now."""
    r["meta"] = {
        "command": "python -m bench.report"
        + (" --quick" if args.quick else "")
        + (f" --state-accounts {args.state_accounts}" if args.state_accounts_given else ""),
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": time.time() - began,
        "nproc": os.cpu_count(),
        "cpu": _cpu(),
        "python": platform.python_version(),
        "seed": args.seed,
        "accounts_core": args.core_accounts,
        "accounts_broker": None if args.no_broker else args.accounts,
        "accounts_state": args.state_accounts or None,
    }
    r["targets"] = render.targets(r)
    notes_file = args.out / "NOTES.md"
    if notes_file.exists():
        r["suggestions"] = notes_file.read_text().splitlines()
    args.out.mkdir(parents=True, exist_ok=True)
    if r.get("broker"):
        render.plot(r, args.out / "throughput.png")
    (args.out / "report.json").write_bytes(
        orjson.dumps(r, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str)
    )
    (args.out / "REPORT.md").write_text(render.markdown(r))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="scaled down: a few minutes")
    parser.add_argument("--accounts", type=int, help="accounts of the broker runs")
    parser.add_argument("--no-broker", action="store_true", help="pure sections only")
    parser.add_argument(
        "--state-accounts",
        type=int,
        help="accounts of the separate state run (default 1,000,000; 0 = use the baseline's)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    began = time.time()
    n_broker = args.accounts = args.accounts or (20_000 if args.quick else 200_000)
    args.state_accounts_given = args.state_accounts is not None
    if args.state_accounts is None:
        args.state_accounts = 0 if args.quick else 1_000_000
    n_core = args.core_accounts = 4_000 if args.quick else 20_000
    budget = 1.0 if args.quick else 3.0
    from bench.report.core_bench import measure_core, measure_worker_path
    from bench.report.profile import profile_worker

    core_data = generate(n_core, 0.05, args.seed)
    r: dict[str, Any] = {}
    print("1. diff core", file=sys.stderr)
    r["core"] = measure_core(core_data, 500 if args.quick else 1000, budget)
    r["worker_path"] = measure_worker_path(core_data, 2000, budget)
    print("profile", file=sys.stderr)
    r["profile"] = profile_worker(core_data)
    if not args.no_broker:
        from bench.report.broker_runs import measure_broker

        print(f"2-5. broker runs, {n_broker:,} accounts", file=sys.stderr)
        broker_data = generate(n_broker, 0.05, args.seed)
        r["broker"] = measure_broker(
            broker_data, 3, 10.0 if args.quick else 30.0, ("exactly_once", "at_least_once")
        )
        first = next(iter(r["broker"]["baseline"]))
        r["state"] = render.state_summary(
            first, r["broker"]["baseline"][first]["samples"], n_broker
        )
        if args.state_accounts:
            from bench.report.broker_runs import measure_state

            _write(r, args, began)  # what is measured so far survives a failed state run
            print(f"4. state, {args.state_accounts:,} accounts", file=sys.stderr)
            try:
                state_run = measure_state(generate(args.state_accounts, 0.05, args.seed), 3)
            except Exception as exc:  # report it; keep everything else
                r["state_error"] = f"{type(exc).__name__}: {exc}"
            else:
                r["state_run"] = {k: v for k, v in state_run.items() if k != "samples"}
                r["state"] = render.state_summary(
                    state_run["contender"], state_run["samples"], args.state_accounts
                )
                r["state"]["restore"] = state_run["restore"]
    _write(r, args, began)
    print(f"written {args.out / 'REPORT.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
