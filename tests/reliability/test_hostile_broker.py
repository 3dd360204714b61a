"""Hostile records on the real aggregations topic: dead-lettered with a reason, nothing stalls."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
from kafka import KafkaProducer

from processor.config import Settings
from tests.integration.harness import ReadRecord, WorkerEnv
from tests.reliability.common import Chain, chain, check_exact
from tests.reliability.hostile import lone_surrogate, nested, poison_records

pytestmark = [pytest.mark.broker, pytest.mark.slow]

#: Tansu 0.6.0 and kafka-python accept records of 32 MiB once the producer's
#: ``max_request_size`` (1 MiB by default) is raised; the worker's consumer reads them with
#: its defaults (a fetch returns at least one whole batch).
TEN_MB = 10 * 1024 * 1024
#: Input records over ``NCD_MAX_RECORD_BYTES`` (default) are dead-lettered without their
#: value: the worker's producer keeps the 1 MiB ``max_request_size``.
MAX_RECORD_BYTES: int = Settings.model_fields["max_record_bytes"].default
SEED = 41


def _hostile(source_id: str, big: int) -> list[tuple[str, bytes | None, bytes]]:
    """``(name, key, value)`` of each hostile record; keys of the source, values broken."""
    rng = random.Random(SEED)
    account = {
        "type": "account",
        "sourceId": source_id,
        "aggregationId": "agg-hostile",
        "account": {"nativeIdentity": "CN=hostile", "attributes": {"title": "x"}},
        "deleted": False,
    }
    whole = json.dumps(account).encode()
    wrong_types = {**account, "account": {"nativeIdentity": 7, "attributes": ["title"]}}
    key = f"{source_id}/CN=hostile".encode()
    return [
        ("random bytes", key, rng.randbytes(300)),
        ("truncated json", key, whole[: len(whole) // 2]),
        ("deep nesting", key, nested(100_000)),
        ("wrong types", key, json.dumps(wrong_types).encode()),
        ("deleted not a bool", key, json.dumps({**account, "deleted": "yes"}).encode()),
        ("lone surrogate", key, lone_surrogate()),
        ("rtl override and nul", None, "\u202e{\x00}".encode()),
        ("bom before json", key, b"\xef\xbb\xbf" + whole),
        ("huge record", key, (b'{"type": "account", "pad": "' + b"x" * big)[: big - 2] + b'"}'),
    ]


def _produce(env: WorkerEnv, records: list[tuple[str, bytes | None, bytes]]) -> None:
    """Write ``records`` round-robin over the partitions with a producer that allows 11 MiB."""
    producer = KafkaProducer(
        bootstrap_servers=env.bootstrap, acks="all", max_request_size=TEN_MB + 1024 * 1024
    )
    try:
        for i, (_, key, value) in enumerate(records):
            partition = i % env.partitions
            producer.send(env.topic("aggregations"), value, key, partition=partition).get(60)
    finally:
        producer.close()


def _copied(value: bytes) -> bytes:
    """What the dead letter of ``value`` holds: the value, or a note of its size if too big."""
    return value if len(value) <= MAX_RECORD_BYTES else b"omitted %d" % len(value)


def _dead_value(value: bytes | None, headers: dict[str, bytes]) -> bytes:
    omitted = headers.get("ncd_value_omitted")
    if omitted is not None:
        assert value is None, "a value was both copied and marked omitted"
        return b"omitted " + omitted
    return value or b""


#: ``(name, key, value)`` of records written to the aggregations topic.
Named = list[tuple[str, bytes | None, bytes]]


def _between_steps(
    env: WorkerEnv,
    steps: Chain,
    worker: subprocess.Popen[bytes],
    records: Named,
) -> list[ReadRecord]:
    """Write half of ``records`` before step 1 of the chain and half before step 2; once the
    worker has drained (and is still up), return the dead letters."""
    _produce(env, records[: len(records) // 2])
    steps.publish(env, 1)
    _produce(env, records[len(records) // 2 :])
    steps.publish(env, 2)
    env.wait_drained()
    assert worker.poll() is None, "the worker exited"
    return env.read_all("dlq")


def _dead_names(dead: list[ReadRecord], records: Named) -> list[str]:
    """The names of the records that were dead-lettered, sorted ("unknown" for any other).

    Values over NCD_MAX_RECORD_BYTES are left out of the dead letter, their size in a header.
    """
    names = {_copied(value): name for name, _, value in records}
    return sorted(names.get(_dead_value(d.value, d.headers), "unknown") for d in dead)


@pytest.mark.parametrize("big", [MAX_RECORD_BYTES, TEN_MB], ids=["at-limit", "10MB"])
def test_hostile_records_are_dead_lettered_and_partitions_keep_flowing(
    env: WorkerEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str], big: int
) -> None:
    """Hostile records between aggregations: each dead-lettered with a reason, events exact."""
    steps = chain(90, 3, SEED)
    hostile = _hostile(steps.source.id, big)
    worker = env.start()
    steps.publish(env, 0)
    dead = _between_steps(env, steps, worker, hostile)
    got = _dead_names(dead, hostile)
    assert got == sorted(name for name, _, _ in hostile), ", ".join(got)
    for d in dead:
        assert d.headers["ncd_error"], "a dead letter without a reason"
        assert d.headers["ncd_original_topic"] == env.topic("aggregations").encode()
        assert b"x" * 50 not in d.headers["ncd_error"], "the reason echoes the value"
    note = check_exact(env, steps.expected_upto(2, tmp_path / "expected"))
    flowing = {r.partition for r in env.read_all("events")}
    assert flowing == set(range(env.partitions)), f"events only on partitions {flowing}"
    with capsys.disabled():
        reasons = sorted({d.headers["ncd_error"].decode()[:60] for d in dead})
        print(f"\n[hostile-broker] {len(dead)} dead letters (largest {big} B); {note}")
        print("[hostile-broker] reasons: " + " | ".join(reasons))


def test_poison_records_are_dead_lettered_and_never_stop_the_worker(
    env: WorkerEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nesting 200-1,100 deep, odd ids, huge values, wrong types: the worker stays up."""
    steps = chain(90, 3, SEED)
    poison_source = steps.source.model_copy(update={"id": "src-poison"})
    poison = poison_records(poison_source.id, "p1", MAX_RECORD_BYTES)
    started = {"type": "aggregation.started", "sourceId": poison_source.id, "aggregationId": "p1"}
    marker = json.dumps({**started, "startedAt": steps.started_at(0)}).encode()
    worker = env.start()
    steps.publish(env, 0)
    publisher, producer = env.publisher()
    try:
        publisher.publish_source(poison_source)
    finally:
        producer.close()
    _produce(env, [("marker", b"src-poison/p1", marker)] * env.partitions)
    records = [(p.name, p.key, p.value) for p in poison]
    dead = _between_steps(env, steps, worker, records)
    assert _dead_names(dead, records) == sorted(p.name for p in poison if p.dead)
    assert all(d.headers["ncd_error"] for d in dead), "a dead letter without a reason"
    note = check_exact(env, steps.expected_upto(2, tmp_path / "expected"))
    with capsys.disabled():
        print(f"\n[poison-broker] {len(poison)} poison records, {len(dead)} dead letters; {note}")
