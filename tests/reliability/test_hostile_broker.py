"""Hostile records on the real aggregations topic: dead-lettered with a reason, nothing stalls."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.integration.harness import WorkerEnv
from tests.reliability.common import chain, check_exact
from tests.reliability.hostile import lone_surrogate, nested

pytestmark = [pytest.mark.broker, pytest.mark.slow]

#: Tansu 0.6.0 and kafka-python accept records of 32 MiB once the producer's
#: ``max_request_size`` (1 MiB by default) is raised; the worker's consumer reads them with
#: its defaults (a fetch returns at least one whole batch).
TEN_MB = 10 * 1024 * 1024
#: The largest record the worker can dead-letter now: its producer keeps kafka-python's
#: 1 MiB ``max_request_size`` (key, value and headers count).
DLQ_LIMIT = 1_000_000
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
        ("huge record", key, b'{"type": "account", "pad": "' + b"x" * big + b'"}'),
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


@pytest.mark.parametrize(
    "big",
    [
        DLQ_LIMIT,
        pytest.param(
            TEN_MB,
            marks=pytest.mark.xfail(
                strict=True,
                raises=AssertionError,
                reason="the worker's producer refuses the > 1 MiB dead letter: "
                "'send failed: MessageSizeTooLargeError', exit 2 (RELIABILITY.md, open problems)",
            ),
        ),
    ],
    ids=["1MB", "10MB"],
)
def test_hostile_records_are_dead_lettered_and_partitions_keep_flowing(
    env: WorkerEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str], big: int
) -> None:
    """Hostile records between aggregations: each dead-lettered with a reason, events exact."""
    steps = chain(90, 3, SEED)
    hostile = _hostile(steps.source.id, big)
    worker = env.start()
    steps.publish(env, 0)
    _produce(env, hostile[: len(hostile) // 2])
    steps.publish(env, 1)
    _produce(env, hostile[len(hostile) // 2 :])
    steps.publish(env, 2)
    env.wait_drained()
    assert worker.poll() is None, "the worker exited"
    dead = env.read_all("dlq")
    assert sorted(d.value or b"" for d in dead) == sorted(value for _, _, value in hostile)
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
