"""Plain client loops over the same records as the worker: the ceilings of the report."""

from __future__ import annotations

import time
from typing import Any

from kafka import TopicPartition

from bench.worker_bench import consume_only, consume_produce
from processor.transport import ClientSettings


def kafka_python_consume_only(
    bootstrap: str, start: dict[TopicPartition, int], ends: dict[Any, int]
) -> float:
    """Seconds for a kafka-python read_committed consumer to read the range."""
    return consume_only(bootstrap, start, ends)


def kafka_python_consume_produce(
    bootstrap: str, start: dict[TopicPartition, int], ends: dict[Any, int], target: str
) -> float:
    """Seconds to read the range, produce every value to ``target`` and flush."""
    return consume_produce(bootstrap, start, ends, target)


def confluent_consume_only(
    bootstrap: str, start: dict[TopicPartition, int], ends: dict[Any, int], tuned: bool = True
) -> float:
    """Seconds for a confluent-kafka (librdkafka) read_committed consumer to read the range
    (``tuned=False``: librdkafka's default fetch sizes)."""
    from confluent_kafka import Consumer  # type: ignore[import-untyped]
    from confluent_kafka import TopicPartition as CTP  # type: ignore[import-untyped]

    from processor.transport.confluent._common import consumer_options

    # The worker's own consumer options (fetch sizes included), as the kafka-python ceilings.
    settings = ClientSettings(bootstrap_servers=bootstrap, client_id="ncd-bench")
    options = consumer_options(settings, "bench-ceiling-unused")
    if not tuned:
        del options["max.partition.fetch.bytes"], options["fetch.max.bytes"]
    consumer = Consumer(options)
    try:
        consumer.assign([CTP(tp.topic, tp.partition, off) for tp, off in start.items()])
        want = {tp.partition: ends[tp] for tp in start}
        seen = {p: start_off for p, start_off in ((tp.partition, o) for tp, o in start.items())}
        count, began = 0, time.perf_counter()
        deadline = time.monotonic() + 600
        while any(seen[p] < end for p, end in want.items()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"confluent consumer stalled at {seen}, want {want}")
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    continue
                p, off = msg.partition(), msg.offset()
                if off < want[p]:
                    count += 1
                seen[p] = max(seen[p], off + 1)
        elapsed = time.perf_counter() - began
    finally:
        consumer.close()
    wanted = sum(ends[tp] - start[tp] for tp in start)
    if count != wanted:
        raise RuntimeError(f"confluent read {count} records, expected {wanted}")
    return elapsed
