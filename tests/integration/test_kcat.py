"""What a client nobody here wrote sees: kcat (librdkafka's CLI) reads the event topic."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.broker import SessionBroker, require_exactly_once
from tests.integration.harness import canonical
from tests.reliability.common import chain, session_env

pytestmark = pytest.mark.broker

#: The CloudEvents type of each event type, as the README documents it.
CE_TYPES = {
    "ACCOUNT_CREATED": "dev.ncd-processor.account.created",
    "ACCOUNT_UPDATED": "dev.ncd-processor.account.updated",
    "ACCOUNT_DELETED": "dev.ncd-processor.account.deleted",
}


def _kcat() -> str:
    """kcat's path; fails in CI (scripts/test.sh installs it there), skips elsewhere."""
    path = shutil.which("kcat")
    if path is None:
        message = "kcat is not installed (Debian package kcat): the output is not read by it"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _read_with_kcat(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every record kcat returns from ``topic`` with read_committed, as its JSON envelope."""
    command = [_kcat(), "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q"]
    command += ["-J", "-X", "isolation.level=read_committed"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def _abort_one_transaction(bootstrap: str, topic: str) -> None:
    """A producer writes a record to ``topic`` in a transaction and aborts it."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"abort-{topic}")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(topic, key=b"aborted", value=b'{"aborted": true}').get(timeout=30)
        producer.abort_transaction()
    finally:
        producer.close()


def test_kcat_reads_exactly_the_events_with_their_cloudevents_headers(
    kafka_broker: SessionBroker, tmp_path: Path
) -> None:
    """kcat with read_committed sees exactly ``diff``'s events, each once, none of an aborted
    transaction, and every record carries CloudEvents headers that agree with its body."""
    require_exactly_once(kafka_broker.hides_aborted)
    env = session_env(kafka_broker, tmp_path)
    steps = chain(120, 2, 91)
    try:
        _abort_one_transaction(env.bootstrap, env.topic("events"))
        worker = env.start()
        steps.publish(env, 0)
        steps.publish(env, 1)
        env.wait_drained()
        assert env.stop(worker) == 0
    finally:
        env.stop_all()
    records = _read_with_kcat(env.bootstrap, env.topic("events"))
    events = [json.loads(r["payload"]) for r in records]
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "kcat read an event twice"
    assert canonical(events) == canonical(steps.expected(1, tmp_path / "expected"))
    for record, event in zip(records, events, strict=True):
        pairs = record["headers"]
        headers = dict(zip(pairs[::2], pairs[1::2], strict=True))
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_id"] == event["id"]
        assert headers["ce_type"] == CE_TYPES[event["eventType"]]
        assert headers["ce_source"] == f"/sources/{event['source']['id']}"
        assert headers["content-type"] == "application/json"
        assert headers["ce_time"].endswith("Z")
        assert record["key"] == f"{event['source']['id']}/{event['account']['uuid']}"
