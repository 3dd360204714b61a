"""Runs the real worker process against the test broker, and reads what it wrote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from processor.models import Account, CatalogEntry, SourceDescriptor
from processor.publisher import Publisher, Topics
from processor.transport import ClientSettings, Transport
from tests.conftest import make_test_transport
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
# Generous: a loaded CI machine can be slow to start a Python process and join a group.
DRAIN_TIMEOUT_S = 120.0


@dataclass
class ReadRecord:
    key: str | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int

    def json(self) -> Any:
        assert self.value is not None
        return json.loads(self.value)


@dataclass
class WorkerEnv:
    """Unique topics, group and state directory for one test's workers."""

    bootstrap: str
    state_root: Path
    partitions: int = 3
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: The latest process of each instance name.
    instances: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Whether the broker hides aborted transactions from read_committed readers.
    hides_aborted: bool = True
    #: ``NCD_TRANSPORT`` of the workers; the harness publishes with the same transport.
    transport: str = "kafka-python"
    #: The metrics and health port of each instance started with ``http=True`` (latest start).
    http_ports: dict[str, int] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return f"t{self.tag}.{name}"

    @property
    def group(self) -> str:
        return f"g{self.tag}"

    def state_dir(self, instance: str) -> Path:
        return self.state_root / instance

    def env(self, instance: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "NCD_BOOTSTRAP_SERVERS": self.bootstrap,
                "NCD_STATE_DIR": str(self.state_dir(instance)),
                "NCD_GROUP_ID": self.group,
                "NCD_INSTANCE_ID": instance,
                "NCD_PARTITIONS": str(self.partitions),
                "NCD_SESSION_TIMEOUT_MS": "6000",
                "NCD_HEARTBEAT_INTERVAL_MS": "1000",
                "NCD_POLL_TIMEOUT_S": "0.2",
                "NCD_MAX_BATCH_RECORDS": "100",
                # A killed worker's open transaction holds read_committed readers back at
                # its first offset until the broker times it out (or the instance returns).
                "NCD_TRANSACTION_TIMEOUT_MS": "10000",
                "NCD_LOG_FORMAT": "json",
                "NCD_TRANSPORT": self.transport,
                # No metrics/health endpoint unless a test asks for one: workers share a host.
                "NCD_HTTP_PORT": "0",
            }
        )
        for name in (
            "sources",
            "entitlements",
            "aggregations",
            "provisioning",
            "events",
            "remediations",
            "dlq",
            "changelog",
        ):
            env[f"NCD_TOPIC_{name.upper()}"] = self.topic(name)
        env.update(self.extra_env)
        return env

    def start(self, instance: str = "w1", *, http: bool = False) -> subprocess.Popen[bytes]:
        """Start a worker process; its log goes to STATE_ROOT/<instance>.log.

        ``http=True`` gives it a metrics and health endpoint on a free loopback port, which
        :meth:`assigned` reads.
        """
        env = self.env(instance)
        if http:
            self.http_ports[instance] = free_port()
            env.update(
                {"NCD_HTTP_HOST": "127.0.0.1", "NCD_HTTP_PORT": str(self.http_ports[instance])}
            )
        log = (self.state_root / f"{instance}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "processor.cli", "run"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        self.procs.append(proc)
        self.instances[instance] = proc
        return proc

    def assigned(self, instance: str) -> list[int]:
        """The partitions a worker (started with ``http=True``) holds and has restored.

        Read from its /metrics: ``ncd_state_keys`` has a series for each partition from the
        end of its restore until it is revoked. ``[]`` while the endpoint does not answer.
        """
        url = f"http://127.0.0.1:{self.http_ports[instance]}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                text = reply.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return []
        return sorted(
            int(sample.labels["partition"])
            for family in text_string_to_metric_families(text)
            if family.name == "ncd_state_keys"
            for sample in family.samples
        )

    def log_text(self, instance: str = "w1") -> str:
        return (self.state_root / f"{instance}.log").read_text(errors="replace")

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
        if proc.poll() is None:
            proc.send_signal(sig)
        return proc.wait(timeout=60)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    # ---------------------------------------------------------------- publishing

    def client(self) -> ClientSettings:
        return ClientSettings(bootstrap_servers=self.bootstrap, client_id="ncd-test-publisher")

    def kafka(self) -> Transport:
        """The workers' transport, for publishing and creating topics."""
        return make_test_transport(self.transport, self.client())

    def publisher(self) -> tuple[Publisher, Any]:
        producer = self.kafka().producer()
        topics = Topics(
            self.topic("sources"),
            self.topic("entitlements"),
            self.topic("aggregations"),
            self.topic("provisioning"),
        )
        return Publisher(producer, self.partitions, topics), producer

    def ensure_topics(self) -> None:
        from processor.config import load_settings

        settings = load_settings(
            **{
                k[len("NCD_") :].lower(): v
                for k, v in self.env("setup").items()
                if k.startswith("NCD_")
            }
        )
        admin = self.kafka().admin()
        try:
            admin.ensure_topics(settings.topic_specs())
        finally:
            admin.close()

    def publish(
        self,
        source: SourceDescriptor,
        accounts: Iterable[Account],
        catalog: Iterable[CatalogEntry] = (),
        **kwargs: Any,
    ) -> str:
        publisher, producer = self.publisher()
        try:
            publisher.publish_source(source)
            entries = list(catalog)
            if entries:
                publisher.publish_catalog(source.id, entries)
            return publisher.publish_aggregation(source.id, accounts, **kwargs)
        finally:
            producer.close()

    def produce_raw(self, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        from processor.transport import OutRecord

        producer = self.kafka().producer()
        try:
            for key, value in records:
                producer.send(OutRecord(self.topic(topic), key, value))
            producer.flush()
        finally:
            producer.close()

    # ---------------------------------------------------------------- reading

    def _consumer(
        self, group: str | None = None, isolation: str = "read_committed"
    ) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            isolation_level=isolation,
            auto_offset_reset="earliest",
        )

    def input_end_offsets(self) -> dict[TopicPartition, int]:
        consumer = self._consumer()
        try:
            tps = [
                TopicPartition(self.topic(name), p)
                for name in ("aggregations", "provisioning")
                for p in range(self.partitions)
            ]
            return true_ends(consumer, tps)
        finally:
            consumer.close()

    def wait_drained(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Wait until the group has committed every input record published so far."""
        ends = self.input_end_offsets()
        consumer = self._consumer(self.group)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                done = all((consumer.committed(tp) or 0) >= end for tp, end in ends.items())
                if done:
                    return
                for instance, proc in self.instances.items():
                    if proc.poll() not in (None, 0, -signal.SIGTERM, -signal.SIGKILL):
                        tail = "\n".join(self.log_text(instance).splitlines()[-15:])
                        raise AssertionError(
                            f"worker {instance} exited with {proc.returncode}; log tail:\n{tail}"
                        )
                if time.monotonic() > deadline:
                    behind = {
                        f"{tp.topic}[{tp.partition}]": (consumer.committed(tp), end)
                        for tp, end in ends.items()
                        if (consumer.committed(tp) or 0) < end
                    }
                    tails = {
                        instance: "\n".join(self.log_text(instance).splitlines()[-15:])
                        for instance in self.instances
                    }
                    raise AssertionError(
                        f"not drained after {timeout_s:.0f} s: (committed, end) {behind}; "
                        f"log tails: {tails}"
                    )
                time.sleep(0.2)
        finally:
            consumer.close()

    def read_all(self, name: str, isolation: str = "read_committed") -> list[ReadRecord]:
        """Every committed record of a topic, read to its end offsets.

        ``isolation="read_uncommitted"`` also returns the records of aborted transactions.
        """
        consumer = self._consumer(isolation=isolation)
        try:
            topic = self.topic(name)
            tps = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
            ]
            ends = true_ends(consumer, tps)
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            out: list[ReadRecord] = []
            deadline = time.monotonic() + 60
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise AssertionError(f"could not read {topic} to its end")
                for tp, batch in consumer.poll(timeout_ms=500).items():
                    for r in batch:
                        out.append(
                            ReadRecord(
                                None if r.key is None else r.key.decode(),
                                r.value,
                                {k: v for k, v in r.headers},
                                tp.partition,
                                r.offset,
                            )
                        )
            return out
        finally:
            consumer.close()

    def events(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.read_all("events")]


def true_ends(consumer: KafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """End offsets, corrected by a fetch's high watermark.

    Tansu 0.6.0 under-reports ListOffsets after multi-record batches of a plain producer
    (docs/decisions.md); the high watermark of a fetch response is right, so fetch the last
    reported record of each partition and take the larger of the two.
    """
    listed = dict(consumer.end_offsets(tps))
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, max(listed[tp] - 1, 0))
    deadline = time.monotonic() + 30
    while any(consumer.highwater(tp) is None for tp in tps if listed[tp] > 0):
        if time.monotonic() > deadline:
            raise AssertionError("no high watermark from the broker")
        consumer.poll(timeout_ms=200)
    return {tp: max(listed[tp], consumer.highwater(tp) or 0) for tp in tps}


def without_id(event: dict[str, Any]) -> dict[str, Any]:
    """An event without its id (ids include the aggregation, ``diff`` has none)."""
    return {k: v for k, v in event.items() if k != "id"}


def canonical(events: Iterable[dict[str, Any]]) -> list[str]:
    """Events as sorted canonical JSON strings, ids left out."""
    return sorted(json.dumps(without_id(e), sort_keys=True) for e in events)
