"""End-to-end throughput of ``ncd-processor diff`` on a synthetic 100k-account AD snapshot pair.

Runs the real CLI as a child process (stdout to a file), twice, and reports wall time, peak
RSS of the child, accounts/s and MB/s, next to the time this same process takes only to read
and orjson-decode both snapshot files (a ceiling for anything that parses JSON). Checks the
two outputs are byte-identical and that the event counts are the dataset's expected counts.
Prints a markdown table and writes ``bench/out/diff_bench.json``.

    python -m bench.diff_bench --accounts 100000

``--before DIR`` runs, alternating with this tree's, the ``diff`` of another checkout (e.g.
``mkdir /tmp/before && git archive 39f8d56 | tar -x -C /tmp/before``: the command runs there as
``python -m processor.cli``), and checks both give the same bytes:

    python -m bench.diff_bench --accounts 100000 --runs 3 --before /tmp/before
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as ``python bench/diff_bench.py``: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from bench.generate import Dataset, generate, write
from processor.files import iter_lines
from processor.models import Account

OUT = Path(__file__).resolve().parent / "out"
FILES = ("source.json", "previous.jsonl", "current.jsonl", "catalog.jsonl", "provisioning.jsonl")
MB = 1_000_000


def dataset_dir(accounts: int, changed: float, seed: int) -> Path:
    """The cache directory of one (accounts, changed, seed) dataset."""
    return OUT / f"diff-{accounts}-{changed:g}-{seed}"


def ensure_dataset(dataset: Dataset, directory: Path) -> tuple[bool, float]:
    """Write the dataset's files unless a complete copy is cached; (reused, seconds)."""
    marker = directory / "complete.json"
    if marker.exists() and all((directory / name).exists() for name in FILES):
        return True, 0.0
    started = time.perf_counter()
    if directory.exists():
        shutil.rmtree(directory)
    sizes = write(dataset, directory)
    marker.write_bytes(orjson.dumps({"sizes": sizes, "expected": dataset.expected_counts()}))
    return False, time.perf_counter() - started


def decode_ceiling(paths: list[Path]) -> tuple[float, int]:
    """Seconds to read and orjson-decode every line of ``paths`` once; (seconds, lines)."""
    started = time.perf_counter()
    lines = 0
    for path in paths:
        with path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    orjson.loads(line)
                    lines += 1
    return time.perf_counter() - started, lines


def validate_ceiling(paths: list[Path]) -> float:
    """Seconds to read, decode and validate every line into ``Account`` as ``diff`` does
    (``processor.files.iter_lines``), each record dropped at once."""
    started = time.perf_counter()
    for path in paths:
        for _ in iter_lines(path, Account, "account record"):
            pass
    return time.perf_counter() - started


def _cli(root: Path | None) -> list[str]:
    found = shutil.which("ncd-processor", path=str(Path(sys.executable).parent))
    return [found] if found and root is None else [sys.executable, "-m", "processor.cli"]


def run_diff(directory: Path, out_path: Path, root: Path | None = None) -> dict[str, Any]:
    """One run of the CLI as a child: wall seconds, peak RSS (MB), output sha256 and size.

    ``root``: the checkout whose ``processor`` runs (its directory is the child's first
    import path); this tree's when ``None``.
    """
    command = [
        *_cli(root),
        "diff",
        "--source",
        str(directory / "source.json"),
        str(directory / "previous.jsonl"),
        str(directory / "current.jsonl"),
        "--entitlements",
        str(directory / "catalog.jsonl"),
        "--provisioning",
        str(directory / "provisioning.jsonl"),
    ]
    err_path = out_path.with_suffix(".stderr")
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, cwd=root)
        # os.wait4 gives this child's own rusage (RUSAGE_CHILDREN would be a running maximum).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"diff exited {proc.returncode}: {err_path.read_text(errors='replace')}")
    peak_kb = usage.ru_maxrss  # kilobytes on Linux
    data = out_path.read_bytes()
    counts = Counter(orjson.loads(line)["eventType"] for line in data.splitlines() if line)
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": peak_kb * 1024 / MB,
        "sha256": hashlib.sha256(data).hexdigest(),
        "output_bytes": len(data),
        "events": sum(counts.values()),
        "events_by_type": dict(sorted(counts.items())),
    }


def measure(
    accounts: int, changed: float, seed: int, runs: int, before: Path | None = None
) -> dict[str, Any]:
    """Generate (or reuse) the dataset, run the CLI ``runs`` times and the decode ceiling;
    with ``before``, that checkout's CLI too, alternating."""
    dataset = generate(accounts, changed, seed)
    directory = dataset_dir(accounts, changed, seed)
    reused, gen_s = ensure_dataset(dataset, directory)
    prev, cur = directory / "previous.jsonl", directory / "current.jsonl"
    n_prev = accounts
    n_cur = accounts - len(dataset.deleted) + len(dataset.created)
    input_bytes = sum((directory / name).stat().st_size for name in FILES)
    snapshot_bytes = prev.stat().st_size + cur.stat().st_size
    ceiling_s, lines = decode_ceiling([prev, cur])
    if lines != n_prev + n_cur:
        raise RuntimeError(f"decoded {lines} lines, expected {n_prev + n_cur}")
    validate_s = validate_ceiling([prev, cur])
    results: list[dict[str, Any]] = []
    before_results: list[dict[str, Any]] = []
    for i in range(runs):
        if before is not None:
            before_results.append(run_diff(directory, OUT / f"diff-before-{i}.jsonl", before))
        results.append(run_diff(directory, OUT / f"diff-output-{i}.jsonl"))
    best = min(results, key=lambda r: r["wall_s"])
    hashes = {r["sha256"] for r in results + before_results}
    expected = dict(sorted(dataset.expected_counts().items()))
    return {
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
        },
        "dataset": {
            "accounts_previous": n_prev,
            "accounts_current": n_cur,
            "changed_fraction": changed,
            "seed": seed,
            "input_bytes": input_bytes,
            "snapshot_bytes": snapshot_bytes,
            "mean_account_bytes": snapshot_bytes / (n_prev + n_cur),
            "reused_cache": reused,
            "generate_s": gen_s,
            "directory": str(directory),
        },
        "runs": results,
        "best_wall_s": best["wall_s"],
        "accounts_per_s_both": (n_prev + n_cur) / best["wall_s"],
        "accounts_per_s_current": n_cur / best["wall_s"],
        "input_mb_per_s": input_bytes / MB / best["wall_s"],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "events": best["events"],
        "events_by_type": best["events_by_type"],
        "expected_events_by_type": expected,
        "counts_match": best["events_by_type"] == expected,
        "byte_identical": len(hashes) == 1,
        "before": None if before is None else {"root": str(before), "runs": before_results},
        "decode_only_s": ceiling_s,
        "decode_only_accounts_per_s": (n_prev + n_cur) / ceiling_s,
        "wall_over_decode_only": best["wall_s"] / ceiling_s,
        "decode_validate_s": validate_s,
        "wall_over_decode_validate": best["wall_s"] / validate_s,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown(result: dict[str, Any]) -> str:
    """The result as a markdown table."""
    ds, runs = result["dataset"], result["runs"]
    walls = ", ".join(f"{r['wall_s']:.2f}" for r in runs)
    hashes = ", ".join(sorted({r["sha256"][:16] for r in runs}))
    n_prev, n_cur = ds["accounts_previous"], ds["accounts_current"]
    snapshot = f"{ds['snapshot_bytes'] / MB:,.1f} MB ({ds['mean_account_bytes']:,.0f} B/account)"
    expected = f"{result['expected_events_by_type']} (match: {result['counts_match']})"
    decode = (
        f"{result['decode_only_s']:.2f} s ({result['decode_only_accounts_per_s']:,.0f} accounts/s)"
    )
    validated = (
        f"{result['decode_validate_s']:.2f} s "
        f"({(n_prev + n_cur) / result['decode_validate_s']:,.0f} accounts/s)"
    )
    rows = [
        ("accounts (previous + current)", f"{n_prev:,} + {n_cur:,}"),
        ("snapshot input", snapshot),
        ("all input files", f"{ds['input_bytes'] / MB:,.1f} MB"),
        ("diff wall time (best)", f"{result['best_wall_s']:.2f} s (runs: {walls})"),
        ("accounts/s, both snapshots", f"{result['accounts_per_s_both']:,.0f}"),
        ("accounts/s, current snapshot", f"{result['accounts_per_s_current']:,.0f}"),
        ("input MB/s", f"{result['input_mb_per_s']:.1f}"),
        ("peak RSS of the child", f"{result['peak_rss_mb']:,.0f} MB"),
        ("events", f"{result['events']:,} {result['events_by_type']}"),
        ("expected events", expected),
        ("output sha256", f"{hashes} (byte-identical: {result['byte_identical']})"),
        ("read + orjson.loads only, both snapshots", decode),
        ("diff wall / decode-only", f"{result['wall_over_decode_only']:.1f}x"),
        ("read + decode + validate to Account only", validated),
        ("diff wall / decode+validate", f"{result['wall_over_decode_validate']:.1f}x"),
    ]
    if result["before"] is not None:
        old = result["before"]["runs"]
        rows += [
            ("before: wall time", ", ".join(f"{r['wall_s']:.2f}" for r in old) + " s"),
            ("before: CPU time", ", ".join(f"{r['cpu_s']:.2f}" for r in old) + " s"),
            ("after: CPU time", ", ".join(f"{r['cpu_s']:.2f}" for r in runs) + " s"),
            ("before: peak RSS", ", ".join(f"{r['peak_rss_mb']:,.0f}" for r in old) + " MB"),
            ("after: peak RSS", ", ".join(f"{r['peak_rss_mb']:,.0f}" for r in runs) + " MB"),
        ]
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=100_000, help="previous snapshot size")
    parser.add_argument("--changed", type=float, default=0.05, help="fraction changed natively")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=2, help="CLI runs (>= 2 checks determinism)")
    parser.add_argument(
        "--before", type=Path, metavar="DIR", help="another checkout's diff, run alternately"
    )
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    result = measure(args.accounts, args.changed, args.seed, max(1, args.runs), args.before)
    print(markdown(result))
    (OUT / "diff_bench.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"\nwritten to {OUT / 'diff_bench.json'}")
    ok = result["counts_match"] and result["byte_identical"]
    if not ok:
        print("PROBLEM: event counts differ from expected or output is not deterministic")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
