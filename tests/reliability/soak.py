"""Load soak: the real worker under a steady stream of aggregations; throughput and memory.

A broker of its own (Apache Kafka from Maven, on disk with Kafka's retention, so a run of
millions of records does not fill memory as Tansu's memory storage did), the worker
subprocess (``python -m processor.cli run``, production batch settings) and a paced
producer publishing aggregations of the same A accounts again and again (a few percent
changed each time) at R records/s until N records. Every interval the
worker's throughput (from its group's committed offsets) and its memory (``VmRSS`` and
``RssAnon`` of /proc/<pid>/status: LMDB maps its file, so file-backed pages count in VmRSS
and are reclaimable; RssAnon is the heap) are printed, then a summary.

    python -m tests.reliability.soak --records 2000000 --rate 4000 --accounts 10000
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.generate import generate
from processor.models import Account, CatalogEntry, SourceDescriptor
from tests.integration.harness import WorkerEnv
from tests.reliability.common import Committed, own_broker_env

FIRST_STARTED_AT = datetime(2026, 1, 1, tzinfo=UTC)
#: Memory is compared from here on: the baseline aggregation and the next one have filled
#: the store, the caches and the interpreter's pools.
WARM_UP_AGGREGATIONS = 2
#: The pacing producer checks the clock every this many records.
PACE_EVERY = 50
SAMPLE_S = 0.5


class Workload:
    """The same A accounts aggregated again and again; each step changes a seeded few titles.

    Deterministic in ``seed``: two instances yield the same steps, so a test can replay
    them to compute the expected events.
    """

    def __init__(self, accounts: int, changed: float, seed: int) -> None:
        dataset = generate(accounts, 0.0, seed)
        self.source = SourceDescriptor.model_validate(dataset.source)
        self.catalog = [CatalogEntry.model_validate(c) for c in dataset.catalog()]
        self.accounts = [Account.model_validate(a) for a in dataset.previous()]
        self.changed = max(1, round(len(self.accounts) * changed))
        self._seed = seed

    def records_per_step(self, partitions: int) -> int:
        """Accounts plus a started and a completed marker on every partition."""
        return len(self.accounts) + 2 * partitions

    def steps(self) -> Iterator[tuple[int, list[Account], int]]:
        """``(step, snapshot, accounts changed since the previous step)``, step 0 the baseline."""
        current = list(self.accounts)
        yield 0, current, 0
        step = 0
        while True:
            step += 1
            rng = random.Random(self._seed * 1_000_003 + step)
            current = list(current)
            for i in rng.sample(range(len(current)), self.changed):
                attributes = {**current[i].attributes, "title": f"Title {step}-{i}"}
                current[i] = current[i].model_copy(update={"attributes": attributes})
            yield step, current, self.changed

    @staticmethod
    def started_at(step: int) -> str:
        return (FIRST_STARTED_AT + timedelta(minutes=step)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Sample:
    at_s: float
    produced: int
    committed: int
    vm_rss_kb: int
    rss_anon_kb: int


@dataclass
class SoakResult:
    produced: int = 0
    steps: int = 0
    expected_events: int = 0
    samples: list[Sample] = field(default_factory=list)
    worker_pid: int = 0

    def at_committed(self, records: int) -> Sample:
        """The first sample whose committed offsets reached ``records``."""
        return next(s for s in self.samples if s.committed >= records)


def memory_kb(pid: int) -> tuple[int, int]:
    """``(VmRSS, RssAnon)`` of a process in KiB, from /proc/<pid>/status."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon"):
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["RssAnon"]


class Stopped(Exception):
    """The soak was stopped before the producer was done."""


def paced(
    accounts: Iterable[Account], due: Callable[[], float], stop: threading.Event
) -> Iterator[Account]:
    """Yield accounts, sleeping until ``due()`` (when the next record is due) every few."""
    for n, account in enumerate(accounts):
        if n % PACE_EVERY == 0:
            if stop.is_set():
                raise Stopped
            ahead = due() - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        yield account


class _Producer(threading.Thread):
    """Publishes the workload's steps at a steady rate until ``records`` are out."""

    def __init__(self, env: WorkerEnv, workload: Workload, records: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.env, self.workload, self.records, self.rate = env, workload, records, rate
        self.produced = 0
        self.steps = 0
        self.expected_events = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self._publish()
        except Stopped:
            pass
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def _publish(self) -> None:
        publisher, producer = self.env.publisher()
        markers = 2 * self.env.partitions
        started = time.monotonic()

        def due() -> float:  # when the next record is due
            return started + self.produced / self.rate

        def count(_n: int) -> None:
            self.produced += 1

        try:
            publisher.publish_source(self.workload.source)
            publisher.publish_catalog(self.workload.source.id, self.workload.catalog)
            for step, snapshot, changed in self.workload.steps():
                if self.produced >= self.records:
                    break
                publisher.publish_aggregation(
                    self.workload.source.id,
                    paced(snapshot, due, self.stop),
                    started_at=Workload.started_at(step),
                    progress=count,
                )
                self.produced += markers
                self.steps = step + 1
                self.expected_events += changed
        finally:
            producer.close()


def run_soak(
    env: WorkerEnv,
    workload: Workload,
    records: int,
    rate: float,
    *,
    interval_s: float = 10.0,
    out: Callable[[str], None] = print,
    drain_timeout_s: float = 600.0,
) -> SoakResult:
    """Start the worker, publish ``records`` (whole aggregations) at ``rate``, sample until
    the group has committed everything; the worker is left running for the caller."""
    env.extra_env.update({"NCD_MAX_BATCH_RECORDS": "2000", "NCD_BATCH_LINGER_MS": "100"})
    worker = env.start()
    result = SoakResult(worker_pid=worker.pid)
    producer = _Producer(env, workload, records, rate)
    committed = Committed(env)
    started = time.monotonic()
    next_report = interval_s
    last: Sample | None = None
    try:
        producer.start()
        while True:
            if worker.poll() is not None:
                raise AssertionError(f"worker exited with {worker.returncode}")
            if producer.error is not None:
                raise AssertionError(f"producer failed: {producer.error!r}")
            rss, anon = memory_kb(worker.pid)
            now = time.monotonic() - started
            sample = Sample(now, producer.produced, committed.total(), rss, anon)
            result.samples.append(sample)
            if now >= next_report:
                out(_interval_line(last, sample))
                last, next_report = sample, next_report + interval_s
            if not producer.is_alive() and sample.committed >= producer.produced:
                break
            if now > drain_timeout_s + records / rate:
                raise AssertionError(f"not drained: {sample}")
            time.sleep(SAMPLE_S)
        out(_interval_line(last, result.samples[-1]))
    finally:
        producer.stop.set()
        producer.join(timeout=60)
        committed.close()
    result.produced, result.steps = producer.produced, producer.steps
    result.expected_events = producer.expected_events
    return result


def _interval_line(last: Sample | None, now: Sample) -> str:
    t0, c0 = (last.at_s, last.committed) if last else (0.0, 0)
    rate = (now.committed - c0) / max(now.at_s - t0, 1e-9)
    return (
        f"t={now.at_s:7.1f}s produced={now.produced:>9} committed={now.committed:>9} "
        f"lag={now.produced - now.committed:>7} throughput={rate:8.0f}/s "
        f"VmRSS={now.vm_rss_kb / 1024:6.1f}MB RssAnon={now.rss_anon_kb / 1024:6.1f}MB"
    )


def summary(result: SoakResult, warm_up_records: int, interval_s: float) -> list[str]:
    """First vs last interval throughput; memory growth after warm-up."""
    rates = []
    t, c = 0.0, 0
    for s in result.samples:
        if s.at_s - t >= interval_s:
            rates.append((s.committed - c) / (s.at_s - t))
            t, c = s.at_s, s.committed
    # Leave out start-up (the intervals up to the first with a commit) and the drain (last).
    started = next((i for i, r in enumerate(rates) if r > 0), 0)
    full = rates[started + 1 : -1] or rates
    warm = result.at_committed(warm_up_records)
    end = result.samples[-1]
    million = max(end.committed - warm.committed, 1) / 1e6
    anon_growth = (end.rss_anon_kb - warm.rss_anon_kb) / 1024
    rss_growth = (end.vm_rss_kb - warm.vm_rss_kb) / 1024
    return [
        f"records {result.produced} in {result.steps} aggregations, {end.at_s:.0f} s; "
        f"expected events {result.expected_events}",
        f"throughput per {interval_s:.0f} s interval: first {full[0]:.0f}/s, "
        f"last {full[-1]:.0f}/s, median {statistics.median(full):.0f}/s, "
        f"min {min(full):.0f}/s, max {max(full):.0f}/s",
        f"RssAnon after warm-up ({warm.committed} records) {warm.rss_anon_kb / 1024:.1f} MB -> "
        f"end {end.rss_anon_kb / 1024:.1f} MB ({anon_growth:+.1f} MB, "
        f"{anon_growth / million:+.2f} MB per million records); "
        f"max {max(s.rss_anon_kb for s in result.samples) / 1024:.1f} MB",
        f"VmRSS after warm-up {warm.vm_rss_kb / 1024:.1f} MB -> end {end.vm_rss_kb / 1024:.1f} MB "
        f"({rss_growth:+.1f} MB; file-backed LMDB pages included)",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="records per second")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--changed", type=float, default=0.02, help="share changed per step")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds per report line")
    parser.add_argument("--transport", default="kafka-python")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    workload = Workload(args.accounts, args.changed, args.seed)
    with tempfile.TemporaryDirectory(prefix="ncd-soak-") as work:
        broker, env = own_broker_env(Path(work), partitions=args.partitions)
        env.transport = args.transport
        try:
            result = run_soak(env, workload, args.records, args.rate, interval_s=args.interval)
            events = env.events()
            dead = len(env.read_all("dlq"))
        finally:
            env.stop_all()
            broker.stop()
    warm_up = WARM_UP_AGGREGATIONS * workload.records_per_step(args.partitions)
    for line in summary(result, warm_up, args.interval):
        print(line)
    distinct = len({e["id"] for e in events})
    print(f"events {len(events)} ({distinct} distinct ids), dead letters {dead}")
    ok = distinct == result.expected_events and dead == 0
    print("OK" if ok else "MISMATCH: events or dead letters differ from the expected")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
