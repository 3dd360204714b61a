"""Throughput of the streaming worker next to plain kafka-python loops, on one Tansu broker.

For each guarantee (exactly_once, at_least_once) on its own set of topics: publish the
source, the catalog and a baseline aggregation; run the real worker (``python -m
processor.cli run``) until its group has committed the baseline, stop it (SIGTERM); publish
the provisioning records and the second aggregation; start the worker again and time it
until the group's committed offsets reach the end offsets. The worker's rate counts from
when it is ready (``ready_at``: partitions assigned and restored; process start, group
join and state restore left out); the rate from process start is reported too. Then, on
the same broker and the same second-aggregation records: (b) a kafka-python consume-only
loop and (c) a consume-and-produce loop. Prints a markdown table and writes
``bench/out/worker_bench.json``.

    python -m bench.worker_bench --accounts 20000
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as ``python bench/worker_bench.py``: repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.generate import CURRENT_AT, PREVIOUS_AT, Dataset, generate
from processor.config import load_settings
from processor.models import Account, CatalogEntry, ProvisioningRecord, SourceDescriptor
from processor.publisher import Publisher, Topics
from processor.transport import ClientSettings
from processor.transport.kafka import KafkaTransport
from processor.transport.kafka._common import consumer_options
from tests.broker import bench_broker

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
TOPIC_NAMES = (
    "sources",
    "entitlements",
    "aggregations",
    "provisioning",
    "events",
    "remediations",
    "dlq",
    "changelog",
)
DRAIN_TIMEOUT_S = 600.0
DRAIN_POLL_S = 0.05


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Bench:
    """One guarantee's topics, group, state and worker processes on a shared broker."""

    def __init__(self, bootstrap: str, guarantee: str, partitions: int, work: Path) -> None:
        self.bootstrap = bootstrap
        self.guarantee = guarantee
        self.partitions = partitions
        self.tag = f"{guarantee}-{uuid.uuid4().hex[:6]}"
        self.work = work
        self.procs: list[subprocess.Popen[bytes]] = []
        #: The checkout whose worker runs (``python -m processor.cli`` imports from its cwd).
        self.code = ROOT
        #: End offsets of the input topic after the baseline: where the second one begins.
        self.second_starts: dict[TopicPartition, int] = {}
        self.second_ends: dict[TopicPartition, int] = {}

    def topic(self, name: str) -> str:
        return f"bench.{self.tag}.{name}"

    @property
    def group(self) -> str:
        return f"bench-{self.tag}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NCD_")}
        env.update(
            {
                "NCD_BOOTSTRAP_SERVERS": self.bootstrap,
                "NCD_STATE_DIR": str(self.work / self.tag / "state"),
                "NCD_GROUP_ID": self.group,
                "NCD_INSTANCE_ID": "w1",
                "NCD_PARTITIONS": str(self.partitions),
                "NCD_SESSION_TIMEOUT_MS": "6000",
                "NCD_HEARTBEAT_INTERVAL_MS": "1000",
                "NCD_LOG_FORMAT": "json",
                "NCD_GUARANTEE": self.guarantee,
            }
        )
        env.update({f"NCD_TOPIC_{n.upper()}": self.topic(n) for n in TOPIC_NAMES})
        return env

    def client(self) -> ClientSettings:
        return ClientSettings(bootstrap_servers=self.bootstrap, client_id="ncd-bench")

    def ensure_topics(self) -> None:
        settings = load_settings(
            bootstrap_servers=self.bootstrap,
            partitions=self.partitions,
            **{f"topic_{n}": self.topic(n) for n in TOPIC_NAMES},
        )
        admin = KafkaTransport(self.client()).admin()
        try:
            admin.ensure_topics(settings.topic_specs())
        finally:
            admin.close()

    def publish(self, action: Any) -> Any:
        """Run ``action(publisher)`` with a fresh producer, closed afterwards."""
        producer = KafkaTransport(self.client()).producer()
        topics = Topics(*(self.topic(n) for n in TOPIC_NAMES[:4]))
        try:
            return action(Publisher(producer, self.partitions, topics))
        finally:
            producer.close()

    def log_path(self) -> Path:
        return self.work / self.tag / "worker.log"

    def start_worker(self) -> tuple[subprocess.Popen[bytes], float]:
        self.log_path().parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path().open("ab")
        started = time.time()
        proc = subprocess.Popen(
            [sys.executable, "-m", "processor.cli", "run"],
            env=self.env(),
            cwd=self.code,
            stdout=log,
            stderr=log,
        )
        log.close()
        self.procs.append(proc)
        return proc, started

    def stop_worker(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        if code != 0:
            raise RuntimeError(f"worker exited {code}; log: {self.log_path()}")

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    def consumer(self, group: str | None = None) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )

    def input_tps(self) -> list[TopicPartition]:
        return [TopicPartition(self.topic("aggregations"), p) for p in range(self.partitions)]

    def aggregation_bounds(
        self, begin: dict[TopicPartition, int] | None = None
    ) -> dict[TopicPartition, tuple[int, int]]:
        """(started marker offset, completed marker offset + 1) of the first aggregation
        at or after ``begin`` on every input partition, found by reading the records.

        Not ``end_offsets()``: Tansu 0.6 answers ListOffsets(latest) with less than the
        offset after the last record, so only the markers say where an aggregation ends.
        """
        tps = self.input_tps()
        consumer = self.consumer()
        found: dict[TopicPartition, list[int]] = {tp: [] for tp in tps}
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        try:
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, (begin or {}).get(tp, 0))
            while any(len(marks) < 2 for marks in found.values()):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"aggregation markers not found: {found}")
                for tp, batch in consumer.poll(timeout_ms=500).items():
                    for record in batch:
                        head = record.value[:40]
                        started = b'"aggregation.started"' in head and not found[tp]
                        completed = b'"aggregation.completed"' in head and found[tp]
                        if (started or completed) and len(found[tp]) < 2:
                            found[tp].append(record.offset + (1 if completed else 0))
            return {tp: (marks[0], marks[1]) for tp, marks in found.items()}
        finally:
            consumer.close()

    def count_events(self, name: str, key: str | None, idle_s: float = 3.0) -> Counter[str]:
        """Every committed record of a topic, counted by the JSON field ``key`` (all under
        ``"records"`` when ``key`` is None); read until nothing new arrives for ``idle_s``
        (end offsets are not reliable on Tansu)."""
        consumer = self.consumer()
        counts: Counter[str] = Counter()
        try:
            tps = [TopicPartition(self.topic(name), p) for p in range(self.partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < idle_s:
                for batch in consumer.poll(timeout_ms=500).values():
                    quiet_since = time.monotonic()
                    if key is None:
                        counts["records"] += len(batch)
                        continue
                    for record in batch:
                        counts[str(orjson.loads(record.value).get(key))] += 1
            return counts
        finally:
            consumer.close()

    def wait_drained(self, proc: subprocess.Popen[bytes], ends: dict[TopicPartition, int]) -> float:
        """Wall time (epoch s) when the group's committed offsets first reach ``ends``."""
        consumer = self.consumer(self.group)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        try:
            while True:
                if all((consumer.committed(tp) or 0) >= end for tp, end in ends.items()):
                    return time.time()
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited {proc.returncode}; log: {self.log_path()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not drain in {DRAIN_TIMEOUT_S}s")
                time.sleep(DRAIN_POLL_S)
        finally:
            consumer.close()

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path().read_bytes().splitlines():
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
        return out


def _timestamp(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


def ready_at(lines: list[dict[str, Any]]) -> float | None:
    """When the worker was ready: its last assignment's partitions all restored.

    The restore runs from the loop after ``partitions_assigned`` (it used to run inside
    the rebalance callback, before that line), so the rate counts from here, as before.
    """
    assigned = [i for i, x in enumerate(lines) if x.get("event") == "partitions_assigned"]
    if not assigned:
        return None
    last = assigned[-1]
    partitions = set(lines[last].get("partitions") or [])
    restored = [x for x in lines[last:] if x.get("event") == "state_restored"]
    if {x.get("partition") for x in restored} < partitions:
        return None
    return max([_timestamp(lines[last]), *(_timestamp(x) for x in restored)])


def first_batch_at(lines: list[dict[str, Any]]) -> float | None:
    """When the worker began its first batch: the first ``batch_committed`` line's time less
    that batch's duration. Counting from here leaves start-up out the same way for every
    guarantee: exactly-once spends it restoring (before "ready"), at-least-once has nothing
    to restore and spends it (the config's settle) after "ready", before its first batch.
    """
    for line in lines:
        if line.get("event") == "batch_committed":
            return _timestamp(line) - float(line.get("duration_ms", 0.0)) / 1000
    return None


def run_worker_mode(
    bench: Bench, dataset: Dataset, models: dict[str, Any], n_records: int
) -> dict[str, Any]:
    """Baseline, then the timed second aggregation, for one guarantee."""
    source: SourceDescriptor = models["source"]
    bench.ensure_topics()
    bench.publish(lambda p: p.publish_source(source))
    bench.publish(lambda p: p.publish_catalog(source.id, models["catalog"]))
    bench.publish(
        lambda p: p.publish_aggregation(source.id, models["previous"], started_at=_iso(PREVIOUS_AT))
    )
    first = bench.aggregation_bounds()
    baseline_ends = {tp: end for tp, (_, end) in first.items()}
    proc, baseline_started = bench.start_worker()
    baseline_s = bench.wait_drained(proc, baseline_ends) - baseline_started
    bench.stop_worker(proc)
    changelog_baseline = bench.count_events("changelog", None, idle_s=1.0)["records"]
    # Keyed like the account (by uuid), so each record reaches its account's partition.
    uuids = {a.nativeIdentity: a.uuid for a in models["previous"]}
    bench.publish(lambda p: p.publish_provisioning(models["provisioning"], uuids.get))
    bench.publish(
        lambda p: p.publish_aggregation(source.id, models["current"], started_at=_iso(CURRENT_AT))
    )
    second = bench.aggregation_bounds(baseline_ends)
    bench.second_starts = {tp: begin for tp, (begin, _) in second.items()}
    ends = bench.second_ends = {tp: end for tp, (_, end) in second.items()}
    published = sum(end - begin for begin, end in second.values())
    if published != n_records:
        raise RuntimeError(f"second aggregation has {published} records, expected {n_records}")
    log_mark = len(bench.log_lines())
    proc, started = bench.start_worker()
    drained = bench.wait_drained(proc, ends)
    bench.stop_worker(proc)
    lines = bench.log_lines()[log_mark:]
    ready = ready_at(lines)
    if ready is None:
        raise RuntimeError(f"no restored assignment in {bench.log_path()}")
    stopped = next((x for x in lines if x.get("event") == "worker_stopped"), {})
    events = bench.count_events("events", "eventType")
    dead = sum(bench.count_events("dlq", None, idle_s=1.0).values())
    changelog = bench.count_events("changelog", None, idle_s=1.0)["records"] - changelog_baseline
    expected = dict(sorted(dataset.expected_counts().items()))
    processing_s = drained - ready
    return {
        "guarantee": bench.guarantee,
        "records": n_records,
        "baseline_wall_s": baseline_s,
        "from_process_start_s": drained - started,
        "from_ready_s": processing_s,
        "records_per_s": n_records / processing_s,
        "records_per_s_from_process_start": n_records / (drained - started),
        "events_by_type": dict(sorted(events.items())),
        "expected_events_by_type": expected,
        "counts_match": dict(sorted(events.items())) == expected,
        "dead_letters": dead,
        "changelog_records": changelog,
        "restart_rebuilt_stores": sum(1 for x in lines if x.get("event") == "state_store_rebuilt"),
        "worker_summary": {k: stopped.get(k) for k in ("verdicts", "events", "aborted_batches")},
        "log": str(bench.log_path()),
    }


def _seek_second(consumer: KafkaConsumer, start: dict[TopicPartition, int]) -> None:
    consumer.assign(list(start))
    for tp, offset in start.items():
        consumer.seek(tp, offset)


def tuned_consumer(bootstrap: str, tuned: bool = True) -> KafkaConsumer:
    """A group-less kafka-python consumer with the worker's own options (fetch sizes included:
    the ceilings are measured with the settings the worker runs with); ``tuned=False``: the
    client's defaults, read_committed."""
    if not tuned:
        return KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
        )
    settings = ClientSettings(bootstrap_servers=bootstrap, client_id="ncd-bench")
    return KafkaConsumer(**consumer_options(settings), group_id=None)


def consume_only(
    bootstrap: str, start: dict[TopicPartition, int], ends: dict[Any, int], tuned: bool = True
) -> float:
    """Seconds for a plain read_committed consumer to read [start, ends) of every partition."""
    consumer = tuned_consumer(bootstrap, tuned)
    try:
        _seek_second(consumer, start)
        count, began = 0, time.perf_counter()
        while any(consumer.position(tp) < ends[tp] for tp in start):
            for tp, batch in consumer.poll(timeout_ms=500).items():
                count += sum(1 for r in batch if r.offset < ends[tp])
        elapsed = time.perf_counter() - began
    finally:
        consumer.close()
    _check_count(count, start, ends)
    return elapsed


def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create ``topic`` (brokers like ours do not create topics on first use)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def consume_produce(
    bootstrap: str, start: dict[TopicPartition, int], ends: dict[Any, int], target: str
) -> float:
    """Seconds to read [start, ends), produce every value to ``target`` and flush."""
    _create_topic(bootstrap, target, len({tp.partition for tp in start}))
    consumer = tuned_consumer(bootstrap)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    try:
        _seek_second(consumer, start)
        count, began = 0, time.perf_counter()
        while any(consumer.position(tp) < ends[tp] for tp in start):
            for tp, batch in consumer.poll(timeout_ms=500).items():
                for record in batch:
                    if record.offset < ends[tp]:
                        producer.send(target, key=record.key, value=record.value)
                        count += 1
        producer.flush()
        elapsed = time.perf_counter() - began
    finally:
        producer.close()
        consumer.close()
    _check_count(count, start, ends)
    return elapsed


def _check_count(count: int, start: dict[TopicPartition, int], ends: dict[Any, int]) -> None:
    wanted = sum(ends[tp] - start[tp] for tp in start)
    if count != wanted:
        raise RuntimeError(f"read {count} records, expected {wanted}")


def build_models(dataset: Dataset) -> dict[str, Any]:
    """Every input as the pydantic models the publisher takes."""

    def accounts(records: Iterable[dict[str, Any]]) -> list[Account]:
        return [Account.model_validate(r) for r in records]

    return {
        "source": SourceDescriptor.model_validate(dataset.source),
        "catalog": [CatalogEntry.model_validate(r) for r in dataset.catalog()],
        "provisioning": [ProvisioningRecord.model_validate(r) for r in dataset.provisioning()],
        "previous": accounts(dataset.previous()),
        "current": accounts(dataset.current()),
    }


def measure(accounts: int, partitions: int, seed: int) -> dict[str, Any]:
    dataset = generate(accounts, 0.05, seed)
    models = build_models(dataset)
    n_records = len(models["current"]) + 2 * partitions  # accounts plus both markers
    results: dict[str, Any] = {
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
        },
        "accounts_previous": accounts,
        "accounts_current": len(models["current"]),
        "partitions": partitions,
        "second_aggregation_records": n_records,
    }
    broker = bench_broker()
    work = Path(tempfile.mkdtemp(prefix="ncd-worker-bench-"))
    benches = [
        Bench(broker.bootstrap, g, partitions, work) for g in ("exactly_once", "at_least_once")
    ]
    try:
        results["worker"] = [run_worker_mode(b, dataset, models, n_records) for b in benches]
        first = benches[0]
        start, ends = first.second_starts, first.second_ends
        results["consume_only_s"] = consume_only(broker.bootstrap, start, ends)
        target = first.topic("copy")
        results["consume_produce_s"] = consume_produce(broker.bootstrap, start, ends, target)
    finally:
        for bench in benches:
            bench.kill_all()
        broker.stop()
    results["consume_only_records_per_s"] = n_records / results["consume_only_s"]
    results["consume_produce_records_per_s"] = n_records / results["consume_produce_s"]
    for row in results["worker"]:
        row["ratio_to_consume_only"] = row["records_per_s"] / results["consume_only_records_per_s"]
        row["ratio_to_consume_produce"] = (
            row["records_per_s"] / results["consume_produce_records_per_s"]
        )
    results["work_dir"] = str(work)
    return results


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def markdown(results: dict[str, Any]) -> str:
    """The result as a markdown table."""
    n = results["second_aggregation_records"]
    lines = [
        f"Second aggregation: {n:,} records ({results['accounts_current']:,} accounts + markers) "
        f"on {results['partitions']} partitions; baseline {results['accounts_previous']:,} "
        "accounts.",
        "",
        "| loop | seconds | records/s | worker ratio to (b) | worker ratio to (c) |",
        "|---|---|---|---|---|",
    ]
    for row in results["worker"]:
        lines.append(
            f"| (a) worker, {row['guarantee']} (from ready) "
            f"| {row['from_ready_s']:.2f} | {row['records_per_s']:,.0f} "
            f"| {row['ratio_to_consume_only']:.2f} | {row['ratio_to_consume_produce']:.2f} |"
        )
        lines.append(
            f"| (a) worker, {row['guarantee']} (from process start) "
            f"| {row['from_process_start_s']:.2f} "
            f"| {row['records_per_s_from_process_start']:,.0f} | | |"
        )
    lines.append(
        f"| (b) kafka-python consume only | {results['consume_only_s']:.2f} "
        f"| {results['consume_only_records_per_s']:,.0f} | | |"
    )
    lines.append(
        f"| (c) kafka-python consume + produce + flush | {results['consume_produce_s']:.2f} "
        f"| {results['consume_produce_records_per_s']:,.0f} | | |"
    )
    lines += [
        "",
        "| guarantee | events | expected | match | dead letters | changelog records "
        "| stores rebuilt at restart | verdicts | baseline s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["worker"]:
        lines.append(
            f"| {row['guarantee']} | {row['events_by_type']} | {row['expected_events_by_type']} "
            f"| {row['counts_match']} | {row['dead_letters']} | {row['changelog_records']:,} "
            f"| {row['restart_rebuilt_stores']} "
            f"| {row['worker_summary']['verdicts']} | {row['baseline_wall_s']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=20_000, help="baseline accounts")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    results = measure(args.accounts, args.partitions, args.seed)
    print(markdown(results))
    (OUT / "worker_bench.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"\nwritten to {OUT / 'worker_bench.json'}")
    ok = all(row["counts_match"] and row["dead_letters"] == 0 for row in results["worker"])
    if not ok:
        print("PROBLEM: the worker's event counts differ from the expected counts")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
