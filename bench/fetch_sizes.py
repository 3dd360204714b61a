"""Consume-only ceilings with the clients' default fetch sizes and with the worker's (issue 14).

Writes ``--accounts`` account records of the benchmark data (~3.4 KB) to a fresh topic of
three partitions on a running broker, then reads them read_committed, side by side in one
run, alternating: kafka-python and confluent-kafka, each with its defaults and with the options
the worker builds from its settings (``NCD_MAX_PARTITION_FETCH_BYTES``,
``NCD_FETCH_MAX_BYTES``). Prints one JSON line: the best rate of each, and every rate;
the topic is deleted afterwards.

    python -m bench.fetch_sizes --bootstrap 127.0.0.1:19092 --accounts 20000
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.generate import generate
from bench.report.ceilings import confluent_consume_only
from bench.worker_bench import _create_topic, consume_only

PARTITIONS = 3


def _fill(bootstrap: str, topic: str, accounts: int) -> None:
    import orjson

    data = generate(accounts, 0.05, 7)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    try:
        for i in range(accounts):
            value = orjson.dumps({"type": "account", "account": data.account(i)})
            producer.send(topic, value=value, partition=i % PARTITIONS)
        producer.flush()
    finally:
        producer.close()


def _ends(bootstrap: str, tps: list[TopicPartition]) -> dict[Any, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return dict(consumer.end_offsets(tps))
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=1, help="each round reads 8 times")
    args = parser.parse_args()
    topic = f"bench-fetch-{uuid.uuid4().hex[:8]}"
    _create_topic(args.bootstrap, topic, PARTITIONS)
    try:
        result = _measure(args, topic)
    finally:
        _delete_topic(args.bootstrap, topic)
    print(json.dumps(result))


def _delete_topic(bootstrap: str, topic: str) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()


def _measure(args: argparse.Namespace, topic: str) -> dict[str, Any]:
    _fill(args.bootstrap, topic, args.accounts)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    start, ends = dict.fromkeys(tps, 0), _ends(args.bootstrap, tps)
    rows: dict[str, list[float]] = {}
    # Alternating (default, tuned, tuned, default, ...) so that neither always goes first.
    for tuned in [False, True, True, False] * args.rounds:
        name = "tuned" if tuned else "default"
        rows.setdefault(f"kafka-python {name}", []).append(
            args.accounts / consume_only(args.bootstrap, start, ends, tuned=tuned)
        )
        rows.setdefault(f"confluent {name}", []).append(
            args.accounts / confluent_consume_only(args.bootstrap, start, ends, tuned=tuned)
        )
    best = {name: max(rates) for name, rates in rows.items()}
    return {"topic": topic, "records": args.accounts, "best": best, "all": rows}


if __name__ == "__main__":
    main()
