"""The worker's whole loop in one process, without a broker: CPU time per record (issue 14).

The :class:`~processor.runner.Runner` on the memory transport with the real LMDB stores (the
production store, fsyncs included) takes a baseline aggregation of ``--accounts`` accounts
(``bench/generate.py``: ~3.3 KB AD-like accounts, 5 % changed, 1 % deleted, 2 % created in
the second), then is timed on the second aggregation: wall time and the process's CPU time,
and the garbage collector's time. What it leaves out is the Kafka client (fetch parsing,
producer): that is the part the worker adds to its client's consume-only loop, which the
0.40x targets are about.

The bench's own data (the dataset, the published records) would make every full collection
of the garbage collector walk it, so it is frozen (``gc.freeze``) before the timed run: the
figures are the worker's own.

Two checkouts side by side, alternated child processes (the machine is shared: compare the
figures of one run only)::

    git worktree add /tmp/base BASE
    python -m bench.loop --base /tmp/base --runs 3
    python -m bench.loop --profile            # cProfile of the timed run, top frames; the
                                              # whole profile in $TMPDIR/ncd-bench-loop.prof
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PARTITIONS = 3
ISO = "%Y-%m-%dT%H:%M:%SZ"
#: Where ``--profile`` writes the timed run's profile (``pstats.Stats(PROFILE_FILE)``).
PROFILE_FILE = str(Path(tempfile.gettempdir()) / "ncd-bench-loop.prof")


def _gc_timer() -> list[float]:
    """Seconds the garbage collector runs from now on (``[seconds, collections]``)."""
    spent = [0.0, 0.0]
    began = [0.0]

    def callback(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            spent[0] += time.perf_counter() - began[0]
            spent[1] += 1

    gc.callbacks.append(callback)
    return spent


def measure(accounts: int, profile: bool = False) -> dict[str, Any]:
    """Run the worker in this process on the imported checkout; the second aggregation's
    figures."""
    from bench.generate import CURRENT_AT, PREVIOUS_AT, generate
    from bench.report.profile import _quiet_logs, _run_until
    from processor.config import load_settings
    from processor.models import Account, CatalogEntry, SourceDescriptor
    from processor.publisher import Publisher, Topics
    from processor.runner import Runner
    from processor.state import LmdbStoreFactory
    from processor.transport.memory import MemoryBroker

    _quiet_logs()
    dataset = generate(accounts, 0.05, 7)
    broker = MemoryBroker(default_partitions=PARTITIONS)
    # No linger: the memory transport has every record at once.
    settings = load_settings(
        partitions=PARTITIONS, group_id="b", instance_id="b", batch_linger_ms=0
    )
    broker.admin().ensure_topics(settings.topic_specs())
    topics = Topics(
        settings.topic_sources,
        settings.topic_entitlements,
        settings.topic_aggregations,
        settings.topic_provisioning,
    )
    publisher = Publisher(broker.producer(), PARTITIONS, topics)
    source = SourceDescriptor.model_validate(dataset.source)
    publisher.publish_source(source)
    catalog = (CatalogEntry.model_validate(c) for c in dataset.catalog())
    publisher.publish_catalog(source.id, catalog)
    previous = (Account.model_validate(a) for a in dataset.previous())
    publisher.publish_aggregation(source.id, previous, started_at=PREVIOUS_AT.strftime(ISO))
    with tempfile.TemporaryDirectory(prefix="ncd-loop-") as state_dir:
        stores = LmdbStoreFactory(Path(state_dir), settings.topic_aggregations)
        _run_until(Runner(settings, broker, stores), dataset.n_accounts + 2 * PARTITIONS, 600)
        current = [Account.model_validate(a) for a in dataset.current()]
        publisher.publish_aggregation(source.id, current, started_at=CURRENT_AT.strftime(ISO))
        second = len(current) + 2 * PARTITIONS
        runner = Runner(settings, broker, stores)
        # The runner opens its stores in the timed part: their verification runs in child
        # processes (~0.5 s of the wall time, none of this process's CPU time).
        gc.collect()
        gc.freeze()
        spent = _gc_timer()
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        cpu = time.process_time()
        wall = _run_until(runner, second, 600)
        cpu = time.process_time() - cpu
        if profiler is not None:
            profiler.disable()
            import pstats

            profiler.dump_stats(PROFILE_FILE)  # for pstats: callers/callees of a function
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(35)
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumtime").print_stats(45)
    verdicts = {str(v.value): n for v, n in runner.stats.verdicts.items()}
    return {
        "records": second,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_us_per_record": cpu / second * 1e6,
        "records_per_cpu_s": second / cpu,
        "gc_s": spent[0],
        "gc_collections": int(spent[1]),
        "verdicts": verdicts,
    }


def _child(repo: Path, accounts: int) -> dict[str, Any]:
    code = (
        f"import sys, json; sys.path.insert(0, {str(repo)!r}); "
        f"from bench.loop import measure; print(json.dumps(measure({accounts})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--base", type=Path, help="a checkout to measure beside this one")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="cProfile the timed run")
    args = parser.parse_args(argv)
    if args.profile:
        print(json.dumps(measure(args.accounts, profile=True), indent=1))
        return 0
    here = Path(__file__).resolve().parent.parent
    repos = {"this": here} if args.base is None else {"base": args.base.resolve(), "this": here}
    figures: dict[str, list[float]] = {name: [] for name in repos}
    for run in range(args.runs):
        order = list(repos.items()) if run % 2 == 0 else list(reversed(repos.items()))
        for name, repo in order:
            out = _child(repo, args.accounts)
            figures[name].append(out["cpu_us_per_record"])
            print(
                f"run {run} {name}: {out['cpu_us_per_record']:.1f} us CPU/record "
                f"({out['records_per_cpu_s']:,.0f} records/s of CPU; wall {out['wall_s']:.2f} s; "
                f"gc {out['gc_s'] * 1000:.0f} ms in {out['gc_collections']}) {out['verdicts']}",
                flush=True,
            )
    if args.base is not None:
        base, this = (statistics.median(figures[k]) for k in ("base", "this"))
        print(f"median us CPU/record: base {base:.1f}, this {this:.1f}: {base / this:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
