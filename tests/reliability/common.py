"""Data and checks shared by the reliability tests: chains of snapshots and exact-set checks."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.generate import generate
from processor.diffing import run_diff
from processor.models import Account, CatalogEntry, SourceDescriptor
from tests.apache_kafka import KafkaServer, start_kafka
from tests.broker import SessionBroker, require_exactly_once
from tests.integration.harness import WorkerEnv, canonical

#: Generous bound on waits for the worker to make progress on a loaded 2-core machine.
PROGRESS_TIMEOUT_S = 120.0


@dataclass
class Chain:
    """A source and a sequence of snapshots; each step's expected events come from ``diff``."""

    source: SourceDescriptor
    catalog: list[CatalogEntry]
    snapshots: list[list[dict[str, Any]]]

    def accounts(self, step: int) -> list[Account]:
        return [Account.model_validate(a) for a in self.snapshots[step]]

    def started_at(self, step: int) -> str:
        return f"2026-11-22T{8 + step:02d}:00:00Z"

    def expected(self, step: int, workdir: Path) -> list[dict[str, Any]]:
        """What ``ncd-processor diff`` gives from snapshot ``step - 1`` to ``step``."""
        workdir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, records in (
            ("previous", self.snapshots[step - 1]),
            ("current", self.snapshots[step]),
            ("catalog", [c.model_dump(mode="json") for c in self.catalog]),
        ):
            paths[name] = workdir / f"{name}-{step}.jsonl"
            paths[name].write_text("".join(json.dumps(r) + "\n" for r in records))
        source = workdir / "source.json"
        source.write_text(self.source.model_dump_json())
        text = run_diff(
            source_path=source,
            previous_path=paths["previous"],
            current_path=paths["current"],
            catalog_path=paths["catalog"],
        )
        return [json.loads(line) for line in text.splitlines()]

    def expected_upto(self, last: int, workdir: Path) -> list[dict[str, Any]]:
        return [e for step in range(1, last + 1) for e in self.expected(step, workdir)]

    def publish(self, env: WorkerEnv, step: int) -> str:
        return env.publish(
            self.source, self.accounts(step), self.catalog, started_at=self.started_at(step)
        )


def chain(n_accounts: int, steps: int, seed: int) -> Chain:
    """Snapshot 0 and 1 from the benchmark generator, then ``steps - 2`` seeded title changes."""
    dataset = generate(n_accounts, 0.1, seed)
    snapshots = [list(dataset.previous()), list(dataset.current())]
    rng = random.Random(seed)
    while len(snapshots) < steps:
        step = len(snapshots)
        nxt = json.loads(json.dumps(snapshots[-1]))
        for account in rng.sample(nxt, max(1, len(nxt) // 10)):
            account["attributes"]["title"] = f"Title {step}-{rng.randrange(1000)}"
        snapshots.append(nxt)
    return Chain(
        SourceDescriptor.model_validate(dataset.source),
        [CatalogEntry.model_validate(c) for c in dataset.catalog()],
        snapshots,
    )


def check_exact(env: WorkerEnv, expected: list[dict[str, Any]]) -> str:
    """Assert the committed events are exactly ``expected``, each once; return a note.

    Strict: read with read_committed, no event may repeat and none may be missing. A
    broker that shows aborted transactions (Tansu, used only where no JDK exists) cannot
    judge that, so there the test is skipped with a loud reason instead.
    """
    require_exactly_once(env.hides_aborted)
    events = env.events()
    ids = [e["id"] for e in events]
    repeated = len(ids) - len(set(ids))
    assert repeated == 0, f"{repeated} events were delivered twice"
    assert canonical(events) == canonical(expected)
    return f"strict: {len(events)} events, every one exactly once"


class Committed:
    """Reads the group's committed offsets on the aggregations topic with one client."""

    def __init__(self, env: WorkerEnv) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self._consumer = KafkaConsumer(bootstrap_servers=env.bootstrap, group_id=env.group)
        self._tps = [TopicPartition(env.topic("aggregations"), p) for p in range(env.partitions)]

    def total(self) -> int:
        """Committed offsets summed over partitions."""
        return sum(self._consumer.committed(tp) or 0 for tp in self._tps)

    def close(self) -> None:
        self._consumer.close()


def log_events(env: WorkerEnv, instance: str, name: str) -> list[dict[str, Any]]:
    """The JSON log lines of a worker whose event is ``name``."""
    out = []
    for line in env.log_text(instance).splitlines():
        if f'"{name}"' in line:
            entry = json.loads(line)
            if entry.get("event") == name:
                out.append(entry)
    return out


def own_broker_env(tmp_path: Path, partitions: int = 3) -> tuple[KafkaServer, WorkerEnv]:
    """A fresh Apache Kafka for one test (the caller stops it) and a WorkerEnv on it."""
    broker = start_kafka(tmp_path / "kafka")
    env = WorkerEnv(broker.bootstrap, tmp_path, partitions=partitions)
    env.extra_env["NCD_HTTP_PORT"] = "0"
    env.ensure_topics()
    return broker, env


def session_env(broker: SessionBroker, tmp_path: Path, partitions: int = 3) -> WorkerEnv:
    env = WorkerEnv(broker.bootstrap, tmp_path, partitions=partitions)
    env.hides_aborted = broker.hides_aborted
    env.extra_env["NCD_HTTP_PORT"] = "0"  # several workers share the machine
    env.ensure_topics()
    return env
