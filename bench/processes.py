"""The worker with 1 and with N processes (``NCD_PROCESSES``) side by side, and its profile.

One run on one broker: the inputs (source, catalog, a baseline, provisioning, a second
aggregation with 5 % changed) are published once to shared input topics; every contender
(transport x process count, each with its own group, outputs and state) takes the baseline,
then is timed on the same second aggregation. The client ceilings (kafka-python and
confluent consume-only, the worker's fetch options) read the same offsets. With
``--profile`` a py-spy sampler is attached to the 1-process worker of each transport for the
second aggregation (active threads, by thread and by function) and its top frames by own
and by total share are written beside the figures.

    python -m bench.processes --bootstrap 127.0.0.1:32993 --accounts 30000 --partitions 6
    python -m bench.processes --accounts 30000 --profile      # own broker (Apache Kafka)
    python -m bench.processes --processes 1 --base /tmp/base  # another checkout's worker beside

Rates count from the last ``partitions_assigned`` line (the group's final assignment) and
only the records committed after it, so a 2-process worker whose first child started alone
is not credited with what that child did before the second joined.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, TypeVar

import orjson

from bench.generate import PREVIOUS_AT, generate
from bench.report import ceilings
from bench.report.broker_runs import (
    ISO,
    Contender,
    accounts,
    count_topic,
    create_inputs,
    publish_second,
    run_sampled,
)
from bench.worker_bench import _timestamp
from processor.models import CatalogEntry, SourceDescriptor
from tests.broker import BenchBroker, bench_broker

OUT = Path(__file__).resolve().parent / "out"
T = TypeVar("T")
#: Each transport's consume-only loop over the same offsets (the worker's fetch options).
CEILINGS = {
    "kafka-python": ceilings.kafka_python_consume_only,
    "confluent": ceilings.confluent_consume_only,
}


class Workers(Contender):
    """A contender run as ``NCD_PROCESSES=processes`` (its children under one supervisor)."""

    def __init__(
        self, *args: Any, processes: int, batch: int, code: Path | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.processes = processes
        self.batch = batch
        self.base = code is not None
        if code is not None:
            self.code = code
        self.tag = f"{self.tag}-p{processes}" + (f"-b{batch}" if batch else "")
        self.tag += "-base" if self.base else ""
        self.profile_to: Path | None = None

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update({"NCD_PROCESSES": str(self.processes), "NCD_HTTP_PORT": "0"})
        if self.batch:
            env["NCD_MAX_BATCH_RECORDS"] = str(self.batch)
        return env

    def start_worker(self) -> tuple[subprocess.Popen[bytes], float]:
        mark = self.log_path().read_bytes().count(b"\n") if self.log_path().exists() else 0
        proc, started = super().start_worker()
        self.started = started
        if self.profile_to is not None:
            self.spy = threading.Thread(target=self._spy, args=(proc, mark), daemon=True)
            self.spy.start()
        return proc, started

    def _spy(self, proc: subprocess.Popen[bytes], mark: int) -> None:
        """py-spy on ``proc`` from its ``partitions_assigned`` line until it exits."""
        assert self.profile_to is not None
        while b"partitions_assigned" not in b"\n".join(
            self.log_path().read_bytes().splitlines()[mark:]
        ):
            if proc.poll() is not None:
                return
            time.sleep(0.02)
        with self.profile_to.with_suffix(".log").open("wb") as err:
            subprocess.run(
                [
                    str(Path(sys.executable).with_name("py-spy")), "record",
                    "--pid", str(proc.pid), "--rate", "200", "--nonblocking", "--threads",
                    "--nolineno", "--format", "raw", "--output", str(self.profile_to),
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
                check=False,
            )  # fmt: skip


def steady_rate(row: dict[str, Any], lines: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Two rates that leave the start (group join, a second child's rebalance) out.

    ``window``: records/s while the workers' committed count went from 20 % to 90 % of ``n``,
    from their ``batch_committed`` lines (each batch's records at its commit instant; the
    group's offsets, sampled every 0.5 s, quantised a run of a few seconds to steps of
    20-25 %). ``steady``: from the group's last assignment before the drain,
    counting only the records committed after it (``None`` when one child did everything
    before the other joined).
    """
    samples = row["samples"]
    drained = row["started"] + row["from_process_start_s"]
    window = _log_window(lines, n)
    assigned = [
        t
        for t in (_timestamp(x) for x in lines if x.get("event") == "partitions_assigned")
        if t <= drained
    ]
    last = max(assigned)
    done_then = max([s["records"] for s in samples if s["t"] <= last], default=0)
    steady = None if done_then >= n else (n - done_then) / (drained - last)
    return {
        "window_records_per_s": window,
        "steady_records": n - done_then,
        "steady_s": drained - last,
        "steady_records_per_s": steady,
        "assignments": len(assigned),
    }


def _log_window(lines: list[dict[str, Any]], n: int) -> float | None:
    """Records/s from the first commit at or past 20 % of ``n`` to the first at or past 90 %."""
    done, points = 0, []
    for line in lines:
        if line.get("event") == "batch_committed":
            done += int(line["records"])
            points.append((_timestamp(line), done))
    at = [next(((t, c) for t, c in points if c >= q * n), None) for q in (0.2, 0.9)]
    if at[0] is None or at[1] is None or at[1][0] <= at[0][0]:
        return None
    return (at[1][1] - at[0][1]) / (at[1][0] - at[0][0])


def top_frames(raw: Path, top: int = 25) -> dict[str, Any]:
    """Own and total shares of the frames in a py-spy ``raw`` (collapsed stacks) file."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        threads[frames[0]] += count
        own[frames[-1] if len(frames) > 1 else "(no Python frame)"] += count
        for frame in set(frames[1:]):
            total[frame] += count
    share = {k: v / samples for k, v in own.most_common(top)}
    return {
        "samples": samples,
        "threads": {k: v / samples for k, v in threads.most_common(6)},
        "own": share,
        "total": {k: v / samples for k, v in total.most_common(top)},
    }


def _ordered(counts: list[T], round_: int) -> list[T]:
    return counts[::-1] if round_ % 2 else counts


def measure(args: argparse.Namespace) -> dict[str, Any]:
    dataset = generate(args.accounts, 0.05, args.seed)
    broker = (
        BenchBroker(args.bootstrap, f"given ({args.bootstrap})", lambda: None)
        if args.bootstrap
        else bench_broker()
    )
    work = Path(tempfile.mkdtemp(prefix="ncd-processes-"))
    inputs = f"in-{os.urandom(3).hex()}"
    out: dict[str, Any] = {"broker": broker.name, "work_dir": str(work), "args": vars(args)}
    codes = [None] if args.base is None else [None, args.base.resolve()]
    contenders = [
        Workers(
            broker.bootstrap,
            args.guarantee,
            args.partitions,
            work,
            t,
            inputs,
            processes=p,
            batch=b,
            code=c,
        )
        for r in range(args.rounds)
        for t in args.transports.split(",")
        for c in _ordered(codes, r)
        # Every other round in the reverse order: a drift in the machine's load is shared.
        for p in _ordered([int(x) for x in args.processes.split(",")], r)
        for b in _ordered([int(x) for x in args.max_batch_records.split(",")], r)
    ]
    try:
        create_inputs(broker.bootstrap, inputs, args.partitions)
        first = contenders[0]
        source = SourceDescriptor.model_validate(dataset.source)
        catalog = [CatalogEntry.model_validate(c) for c in dataset.catalog()]
        first.publish(lambda p: p.publish_source(source))
        first.publish(lambda p: p.publish_catalog(source.id, catalog))
        first.publish(
            lambda p: p.publish_aggregation(
                source.id, accounts(dataset.previous()), started_at=PREVIOUS_AT.strftime(ISO)
            )
        )
        base_ends = {tp: end for tp, (_, end) in first.aggregation_bounds().items()}
        for bench in contenders:
            bench.ensure_topics()
            run_sampled(bench, base_ends, {})
        starts, ends = publish_second(first, dataset, base_ends)
        n = out["second_records"] = sum(ends[tp] - starts[tp] for tp in ends)
        expected = dict(sorted(dataset.expected_counts().items()))
        out["runs"] = []
        profiled: set[str] = set()
        for bench in contenders:
            if args.profile and bench.processes == 1 and bench.transport not in profiled:
                profiled.add(bench.transport)
                bench.profile_to = work / f"profile-{bench.transport}.txt"
            mark = len(bench.log_lines())
            row = run_sampled(bench, ends, starts)
            row["started"] = bench.started
            lines = bench.log_lines()[mark:]
            row.update(steady_rate(row, lines, n))
            row["records"] = n
            row["records_per_s_from_process_start"] = n / row["from_process_start_s"]
            row.update(transport=bench.transport, processes=bench.processes, batch=bench.batch)
            row["code"] = "base" if bench.base else "this"
            row["tag"] = bench.tag
            row["events_by_type"] = dict(sorted(bench.count_events("events", "eventType").items()))
            row["dead_letters"] = count_topic(
                broker.bootstrap, bench.topic("dlq"), args.partitions, 1.0
            )
            row["exact"] = row["events_by_type"] == expected and row["dead_letters"] == 0
            # Its client's ceiling right after it: the machine's load drifts within a run.
            row["ceiling_after"] = n / CEILINGS[bench.transport](broker.bootstrap, starts, ends)
            row["samples"] = [(round(x["t"], 2), x["records"]) for x in row["samples"]]
            # Its state (GBs of LMDB at 100k accounts) is not needed again: logs and profiles stay.
            shutil.rmtree(bench.state_dir, ignore_errors=True)
            if bench.profile_to is not None:
                bench.spy.join(timeout=120)
                row["profile"] = top_frames(bench.profile_to)
                row["profile_file"] = str(bench.profile_to)
            out["runs"].append(row)
        out["expected_events_by_type"] = expected
        out["ceilings"] = {
            f"{client} consume only": n / fn(broker.bootstrap, starts, ends)
            for client, fn in CEILINGS.items()
        }
    finally:
        for bench in contenders:
            bench.kill_all()
        broker.stop()
    return out


def markdown(out: dict[str, Any]) -> str:
    ceil = out["ceilings"]
    rows = [
        f"Broker {out['broker']}; second aggregation {out['second_records']:,} records on "
        f"{out['args']['partitions']} partitions; {out['args']['guarantee']}.",
        "",
        "| transport | code | processes | batch | records/s, 20-90 % | after the last assignment "
        "| from process start | its client's consume-only right after | 20-90 % rate / that "
        "| exact events |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in out["runs"]:
        client = "confluent" if r["transport"] == "confluent" else "kafka-python"
        after = r.get("ceiling_after") or ceil[f"{client} consume only"]
        steady, window = r["steady_records_per_s"], r["window_records_per_s"]
        rows.append(
            f"| {r['transport']} | {r.get('code', 'this')} | {r['processes']} "
            f"| {r['batch'] or 'default'} "
            f"| {window or 0:,.0f} "
            f"| {'-' if steady is None else f'{steady:,.0f}'} "
            f"| {r['records_per_s_from_process_start']:,.0f} "
            f"| {after:,.0f} | {(window or 0) / after:.2f} | {r['exact']} |"
        )
    rows += ["", *(f"- {k}: {v:,.0f} records/s" for k, v in ceil.items())]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap", help="a running broker (default: start Apache Kafka)")
    parser.add_argument("--accounts", type=int, default=30_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--processes", default="1,2", help="process counts, comma-separated")
    parser.add_argument("--transports", default="kafka-python,confluent")
    parser.add_argument(
        "--max-batch-records", default="0", help="NCD_MAX_BATCH_RECORDS values (0: default)"
    )
    parser.add_argument("--guarantee", default="exactly_once")
    parser.add_argument("--rounds", type=int, default=1, help="each contender this many times")
    parser.add_argument("--profile", action="store_true", help="py-spy the 1-process workers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--base", type=Path, help="another checkout whose worker runs beside this one's"
    )
    args = parser.parse_args(argv)
    if args.profile and not Path(sys.executable).with_name("py-spy").exists():
        parser.error("--profile needs py-spy beside this Python: pip install py-spy")
    out = measure(args)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "processes.json").write_bytes(orjson.dumps(out, default=str, option=orjson.OPT_INDENT_2))
    print(markdown(out))
    with contextlib.suppress(KeyError):
        for r in out["runs"]:
            if "profile" in r:
                print(f"\nprofile {r['transport']}: {r['profile_file']}")
                for frame, share in list(r["profile"]["own"].items())[:15]:
                    print(f"  {share:6.1%}  {frame}")
    return 0 if all(r["exact"] for r in out["runs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
