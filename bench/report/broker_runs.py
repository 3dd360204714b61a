"""Sections 2-5 on one broker (Apache Kafka from Maven; Tansu without a JDK): worker,
ceilings, the Quix peer, state, latency.

One set of input topics is shared by every contender (each has its own group, output
topics and state), so all of them read the very same records: the baseline is published
once and processed by each contender in turn, then the second aggregation is published
and each contender is timed on it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from bench.generate import CURRENT_AT, PREVIOUS_AT, Dataset
from bench.report import ceilings
from bench.worker_bench import ROOT, Bench, _timestamp, first_batch_at, ready_at
from processor.models import Account, CatalogEntry, ProvisioningRecord, SourceDescriptor
from tests.broker import bench_broker

INPUTS = ("sources", "entitlements", "aggregations", "provisioning")
#: Tansu reports no retention.ms; Quix needs it on the input topic.
RETENTION = {"retention.ms": str(7 * 24 * 3600 * 1000), "retention.bytes": "-1"}
ISO = "%Y-%m-%dT%H:%M:%SZ"


def transports() -> list[str]:
    """kafka-python always; confluent when ``processor.transport.factory`` exists (checked now)."""
    found = importlib.util.find_spec("processor.transport.factory") is not None
    return ["kafka-python", "confluent"] if found else ["kafka-python"]


class Contender(Bench):
    """A worker with its own group, outputs and state, reading the shared input topics."""

    def __init__(
        self,
        bootstrap: str,
        guarantee: str,
        partitions: int,
        work: Path,
        transport: str,
        inputs: str,
    ) -> None:
        super().__init__(bootstrap, guarantee, partitions, work)
        self.transport = transport
        self.inputs = inputs
        self.tag = f"{transport}-{guarantee}-{self.tag.rsplit('-', 1)[1]}"

    def topic(self, name: str) -> str:
        if name in INPUTS:
            return f"bench.{self.inputs}.{name}"
        return f"bench.{self.tag}.{name}"

    def env(self) -> dict[str, str]:
        env = super().env()
        env["NCD_TRANSPORT"] = self.transport
        return env

    @property
    def state_dir(self) -> Path:
        return self.work / self.tag / "state"


def rss_kb(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of a process (kB), from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[name] = int(rest.split()[0])
    return out


def create_inputs(bootstrap: str, inputs: str, partitions: int) -> None:
    """The shared input topics; aggregations with explicit retention (for Quix)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    compact = {"cleanup.policy": "compact"}
    try:
        admin.create_topics(
            [
                NewTopic(f"bench.{inputs}.sources", 1, 1, topic_configs=compact),
                NewTopic(f"bench.{inputs}.entitlements", 1, 1, topic_configs=compact),
                NewTopic(f"bench.{inputs}.aggregations", partitions, 1, topic_configs=RETENTION),
                NewTopic(f"bench.{inputs}.provisioning", partitions, 1, topic_configs=RETENTION),
            ]
        )
    finally:
        admin.close()


def accounts(records: Iterator[dict[str, Any]]) -> Iterator[Account]:
    for record in records:
        yield Account.model_validate(record)


def committed_total(
    bench: Contender, consumer: KafkaConsumer, starts: dict[TopicPartition, int]
) -> int:
    return sum(
        (consumer.committed(tp) or starts.get(tp, 0)) - starts.get(tp, 0)
        for tp in bench.input_tps()
    )


def run_sampled(
    bench: Contender, ends: dict[TopicPartition, int], starts: dict[TopicPartition, int]
) -> dict[str, Any]:
    """Start the worker, sample (records committed, RSS) every 0.5 s until it has committed
    ``ends``, read its final RSS, stop it. The rate counts from its first batch
    (``first_batch_at``: start-up left out alike for both guarantees); the times from ready
    (``ready_at``) and from process start are kept beside it."""
    mark = len(bench.log_lines()) if bench.log_path().exists() else 0
    proc, started = bench.start_worker()
    consumer = bench.consumer(bench.group)
    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + 3600
    try:
        while True:
            done = committed_total(bench, consumer, starts)
            with contextlib.suppress(FileNotFoundError):
                samples.append({"t": time.time(), "records": done, **rss_kb(proc.pid)})
            if all((consumer.committed(tp) or 0) >= end for tp, end in ends.items()):
                drained = time.time()
                break
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited {proc.returncode}; log: {bench.log_path()}")
            if time.monotonic() > deadline:
                raise RuntimeError("worker did not drain in an hour")
            time.sleep(0.5)
        time.sleep(0.5)  # let the last store write settle before the final reading
        final = rss_kb(proc.pid)
    finally:
        consumer.close()
    bench.stop_worker(proc)
    lines = bench.log_lines()[mark:]
    restored = [x for x in lines if x.get("event") == "state_restored"]
    stopped = next((x for x in lines if x.get("event") == "worker_stopped"), {})
    first = ready_at(lines) or started
    began = first_batch_at(lines) or first
    records = sum(end - starts.get(tp, 0) for tp, end in ends.items())
    return {
        "records": records,
        "from_ready_s": drained - first,
        "from_first_batch_s": drained - began,
        "from_process_start_s": drained - started,
        "records_per_s": records / (drained - began),
        "rss_final_kb": final,
        "samples": samples,
        "restored_records": sum(int(x.get("records", 0)) for x in restored),
        "restore_s": sum(float(x.get("duration_s", 0.0)) for x in restored),
        "verdicts": stopped.get("verdicts"),
    }


@dataclass
class PeerRun:
    bootstrap: str
    inputs: str
    guarantee: str
    work: Path
    tag: str = field(default_factory=lambda: os.urandom(3).hex())

    def phase(self, ends: dict[TopicPartition, int], fresh_state: bool = False) -> dict[str, Any]:
        """Run the peer until ``ends``. ``fresh_state`` deletes its local state first: Tansu
        under-reports the changelog's high watermark, so a restarted Quix app finds its store
        ahead of the changelog and stops (InvalidStoreChangelogOffset); it then restores
        from the changelog instead (not timed: the rate counts from the first message)."""
        if fresh_state:
            shutil.rmtree(self.work / f"quix-{self.tag}", ignore_errors=True)
        cmd = [
            sys.executable, "-m", "bench.quix_peer",
            "--bootstrap", self.bootstrap,
            "--input", f"bench.{self.inputs}.aggregations",
            "--output", f"bench.quix-{self.tag}.events",
            "--group", f"quix-{self.guarantee}-{self.tag}",
            "--guarantee", self.guarantee,
            "--state-dir", str(self.work / f"quix-{self.tag}"),
            "--ends", json.dumps({str(tp.partition): end for tp, end in ends.items()}),
        ]  # fmt: skip
        log = self.work / f"quix-{self.tag}.log"
        with log.open("ab") as err:
            done = subprocess.run(
                cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, timeout=3600, check=False
            )
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-3000:]
            return {"error": f"exit {done.returncode}", "log_tail": tail}
        return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def count_topic(bootstrap: str, topic: str, partitions: int, idle_s: float = 2.0) -> int:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        count, quiet = 0, time.monotonic()
        while time.monotonic() - quiet < idle_s:
            for batch in consumer.poll(timeout_ms=300).values():
                count += len(batch)
                quiet = time.monotonic()
        return count
    finally:
        consumer.close()


def restore_run(bench: Contender) -> dict[str, Any]:
    """Delete the worker's state directory, start it, time the changelog restore."""
    shutil.rmtree(bench.state_dir, ignore_errors=True)
    mark = len(bench.log_lines())
    proc, started = bench.start_worker()
    deadline = time.monotonic() + 1800
    try:
        while True:
            lines = bench.log_lines()[mark:]
            if ready_at(lines) is not None:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"restore did not finish; log {bench.log_path()}")
            time.sleep(0.2)
        rss = rss_kb(proc.pid)
    finally:
        bench.stop_worker(proc)
    restored = [x for x in lines if x.get("event") == "state_restored"]
    records = sum(int(x.get("records", 0)) for x in restored)
    seconds = sum(float(x.get("duration_s", 0.0)) for x in restored)
    return {
        "restored_records": records,
        "restore_s": seconds,
        "records_per_s": records / seconds if seconds else 0.0,
        "partitions": len(restored),
        "rss_after_restore_kb": rss,
        "from_process_start_s": _timestamp(lines[-1]) - started if lines else None,
    }


class _Capture:
    """A Producer that keeps the records the publisher would send."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def send(self, record: Any) -> None:
        self.records.append(record)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def third_aggregation(bench: Contender, dataset: Dataset, limit: int) -> list[Any]:
    """Records of an aggregation that reverts the changed accounts (5 % give events)."""
    from processor.publisher import Publisher, Topics

    order = dataset.current_order()[:limit]
    picked = (
        dataset.account(i) if i in dataset.changed else dataset.current_account(i) for i in order
    )
    capture = _Capture()
    topics = Topics(*(bench.topic(n) for n in INPUTS))
    Publisher(capture, bench.partitions, topics).publish_aggregation(
        dataset.source["id"], accounts(picked), started_at="2026-11-23T02:00:00Z"
    )
    return capture.records


def latency_run(bench: Contender, dataset: Dataset, rate: float, seconds: float) -> dict[str, Any]:
    """Record-to-event latency with a paced producer at ``rate`` records/s."""
    records = third_aggregation(bench, dataset, max(10, int(rate * seconds)))
    proc, _ = bench.start_worker()
    received: list[tuple[float, int]] = []
    stop = threading.Event()
    t0_ms = int(time.time() * 1000)

    def listen() -> None:
        consumer = bench.consumer()
        tps = [TopicPartition(bench.topic("events"), p) for p in range(bench.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        while not stop.is_set():
            for batch in consumer.poll(timeout_ms=50).values():
                now = time.time() * 1000
                received.extend((now, r.timestamp) for r in batch if r.timestamp >= t0_ms)
        consumer.close()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        mark = len(bench.log_lines())
        while not any(
            x.get("event") == "partitions_assigned" for x in bench.log_lines()[mark - 1 :]
        ):
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited; log {bench.log_path()}")
            time.sleep(0.2)
        time.sleep(1.0)
        producer = KafkaProducer(bootstrap_servers=bench.bootstrap, linger_ms=2, acks="all")
        futures = []
        began = time.perf_counter()
        for i, record in enumerate(records):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(
                producer.send(
                    record.topic, key=record.key, value=record.value, partition=record.partition
                )
            )
        producer.flush()
        sent_s = time.perf_counter() - began
        ends: dict[TopicPartition, int] = {}
        for future in futures:
            meta = future.get(timeout=30)
            tp = TopicPartition(meta.topic, meta.partition)
            ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
        producer.close()
        bench.wait_drained(proc, ends)
        time.sleep(2.0)
    finally:
        stop.set()
        listener.join(timeout=10)
        bench.stop_worker(proc)
    lat = sorted(now - ts for now, ts in received)
    return {
        "target_rate": rate,
        "achieved_rate": len(records) / sent_s,
        "records": len(records),
        "events": len(lat),
        "p50_ms": percentile(lat, 0.50),
        "p99_ms": percentile(lat, 0.99),
        "max_ms": lat[-1] if lat else None,
    }


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile of sorted ``values`` (None when empty)."""
    if not values:
        return None
    rank = max(0, min(len(values) - 1, round(q * len(values) + 0.5) - 1))
    return values[rank]


def publish_second(
    first: Contender, dataset: Dataset, base_ends: dict[TopicPartition, int]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Publish the provisioning records and the second aggregation to the shared inputs;
    (start, end) offsets of that aggregation on every input partition."""
    source_id = dataset.source["id"]
    uuids = {a["nativeIdentity"]: a.get("uuid") for a in dataset.previous()}
    first.publish(
        lambda p: p.publish_provisioning(
            (ProvisioningRecord.model_validate(r) for r in dataset.provisioning()), uuids.get
        )
    )
    first.publish(
        lambda p: p.publish_aggregation(
            source_id, accounts(dataset.current()), started_at=CURRENT_AT.strftime(ISO)
        )
    )
    second = first.aggregation_bounds(base_ends)
    return {tp: b for tp, (b, _) in second.items()}, {tp: e for tp, (_, e) in second.items()}


def measure_broker(
    dataset: Dataset, partitions: int, latency_s: float, guarantees: tuple[str, ...]
) -> dict[str, Any]:
    """Everything that needs the broker, in one run on one broker."""
    broker = bench_broker()
    work = Path(tempfile.mkdtemp(prefix="ncd-report-"))
    inputs = f"in-{os.urandom(3).hex()}"
    out: dict[str, Any] = {
        "work_dir": str(work),
        "broker": broker.name,
        "transports": transports(),
        "partitions": partitions,
    }
    contenders = [
        Contender(broker.bootstrap, g, partitions, work, t, inputs)
        for t in out["transports"]
        for g in guarantees
    ]
    try:
        create_inputs(broker.bootstrap, inputs, partitions)
        first = contenders[0]
        source = SourceDescriptor.model_validate(dataset.source)
        began = time.perf_counter()
        first.publish(lambda p: p.publish_source(source))
        first.publish(
            lambda p: p.publish_catalog(
                source.id, (CatalogEntry.model_validate(c) for c in dataset.catalog())
            )
        )
        first.publish(
            lambda p: p.publish_aggregation(
                source.id, accounts(dataset.previous()), started_at=PREVIOUS_AT.strftime(ISO)
            )
        )
        out["publish_baseline_s"] = time.perf_counter() - began
        bounds = first.aggregation_bounds()
        base_ends = {tp: end for tp, (_, end) in bounds.items()}
        out["baseline"] = {}
        for bench in contenders:
            bench.ensure_topics()
            out["baseline"][bench.tag] = run_sampled(bench, base_ends, {})
        peers = {
            g: PeerRun(broker.bootstrap, inputs, g, work) for g in ("at-least-once", "exactly-once")
        }
        out["peer_baseline"] = {g: peer.phase(base_ends) for g, peer in peers.items()}
        starts, ends = publish_second(first, dataset, base_ends)
        n = sum(ends[tp] - starts[tp] for tp in ends)
        out["second_records"] = n
        out["second"] = {}
        for bench in contenders:
            row = run_sampled(bench, ends, {})
            row["records"] = n
            row["records_per_s"] = n / row["from_first_batch_s"]
            row["transport"], row["guarantee"] = bench.transport, bench.guarantee
            row["events_by_type"] = dict(sorted(bench.count_events("events", "eventType").items()))
            row["expected_events_by_type"] = dict(sorted(dataset.expected_counts().items()))
            row["dead_letters"] = count_topic(broker.bootstrap, bench.topic("dlq"), partitions, 1.0)
            out["second"][bench.tag] = row
        out["peer_second"] = {}
        for g, peer in peers.items():
            res = peer.phase(ends, fresh_state=True)
            if "first_message" in res and res.get("last_message"):
                res["records_per_s"] = n / (res["last_message"] - res["first_message"])
                res["records_per_s_to_stop"] = n / (res["stopped"] - res["first_message"])
                res["events"] = count_topic(
                    broker.bootstrap, f"bench.quix-{peer.tag}.events", partitions
                )
            out["peer_second"][g] = res
        ceil: dict[str, Any] = {}
        ceil["kafka-python consume only"] = ceilings.kafka_python_consume_only(
            broker.bootstrap, starts, ends
        )
        ceil["kafka-python consume + produce"] = ceilings.kafka_python_consume_produce(
            broker.bootstrap, starts, ends, first.topic("copy")
        )
        ceil["confluent consume only"] = ceilings.confluent_consume_only(
            broker.bootstrap, starts, ends
        )
        out["ceilings"] = {k: {"seconds": s, "records_per_s": n / s} for k, s in ceil.items()}
        out["restore"] = restore_run(first)
        rate = out["second"][first.tag]["records_per_s"] / 2
        out["latency"] = latency_run(first, dataset, rate, latency_s)
        out["latency"]["contender"] = first.tag
    finally:
        for bench in contenders:
            bench.kill_all()
        broker.stop()
    return out


def measure_state(dataset: Dataset, partitions: int) -> dict[str, Any]:
    """Section 4 at full size: one worker (exactly-once) takes a baseline of
    every account of ``dataset`` while its RSS is sampled, then its state directory is
    deleted and the restore from the changelog is timed."""
    broker = bench_broker()
    work = Path(tempfile.mkdtemp(prefix="ncd-state-"))
    inputs = f"in-{os.urandom(3).hex()}"
    # librdkafka when installed: the baseline of a million accounts is mostly changelog
    # writes, which it produces about twice as fast (section 2); the state is the same.
    transport = "confluent" if "confluent" in transports() else "kafka-python"
    bench = Contender(broker.bootstrap, "exactly_once", partitions, work, transport, inputs)
    try:
        create_inputs(broker.bootstrap, inputs, partitions)
        bench.ensure_topics()
        source = SourceDescriptor.model_validate(dataset.source)
        began = time.perf_counter()
        bench.publish(lambda p: p.publish_source(source))
        bench.publish(
            lambda p: p.publish_aggregation(
                source.id, accounts(dataset.previous()), started_at=PREVIOUS_AT.strftime(ISO)
            )
        )
        published_s = time.perf_counter() - began
        bounds = bench.aggregation_bounds()
        row = run_sampled(bench, {tp: end for tp, (_, end) in bounds.items()}, {})
        row["publish_s"] = published_s
        row["accounts"] = dataset.n_accounts
        row["restore"] = restore_run(bench)
        row["contender"] = bench.tag
        return row
    finally:
        bench.kill_all()
        broker.stop()
