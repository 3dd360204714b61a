"""The embedded default: the whole streaming pipeline on one machine, no external service.

Starts an embedded Kafka-protocol broker, runs the worker in this process, publishes the
bundled example (a source, its catalog, a baseline aggregation, one provisioning record of
the platform's own, a second aggregation), and prints the events the worker published.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from processor import codec
from processor.config import load_settings
from processor.embedded import EmbeddedBroker
from processor.errors import ProcessorError
from processor.files import read_document, read_lines
from processor.models import Account, CatalogEntry, ProvisioningRecord, SourceDescriptor
from processor.publisher import Publisher, Topics
from processor.runner import Runner
from processor.state import LmdbStoreFactory
from processor.transport import TP, Transport
from processor.transport.factory import make_transport

DEMO_PARTITIONS = 3
# Group joins on the embedded broker take about half the session timeout.
DEMO_SESSION_TIMEOUT_MS = 6_000
# The whole demo normally takes seconds; this only bounds a stuck run.
DEMO_STEP_TIMEOUT_S = 120.0


def default_examples() -> Path:
    """The bundled ``examples/`` directory (next to the package in a source checkout)."""
    return Path(__file__).resolve().parent.parent / "examples"


@dataclass(frozen=True, slots=True)
class _Examples:
    """The example's records, read and checked before the broker starts."""

    source: SourceDescriptor
    previous: list[Account]
    current: list[Account]
    catalog: list[CatalogEntry]
    provisioning: list[ProvisioningRecord]


def _read_examples(examples: Path) -> _Examples:
    return _Examples(
        read_document(examples / "source.json", SourceDescriptor, "source descriptor"),
        [x.record for x in read_lines(examples / "previous.jsonl", Account, "account")],
        [x.record for x in read_lines(examples / "current.jsonl", Account, "account")],
        [x.record for x in read_lines(examples / "catalog.jsonl", CatalogEntry, "entry")],
        [
            x.record
            for x in read_lines(examples / "provisioning.jsonl", ProvisioningRecord, "provisioning")
        ],
    )


def run_demo(examples: Path, out: TextIO, *, as_json: bool = False) -> int:
    """Run the pipeline on ``examples`` and print the events; returns how many."""
    records = _read_examples(examples)
    out.write("Starting an embedded Kafka-protocol broker (Tansu)...\n")
    out.flush()
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="ncd-demo-") as state:
        settings = load_settings(
            bootstrap_servers=broker.bootstrap,
            state_dir=Path(state),
            instance_id="demo",
            partitions=DEMO_PARTITIONS,
            session_timeout_ms=DEMO_SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=1_000,
            poll_timeout_s=0.2,
            log_level="warning",
            # librdkafka: kafka-python 2.3's transactional producer cannot initialise on
            # Tansu (InitProducerId answers UnknownError), librdkafka's can.
            transport="confluent",
        )
        transport = make_transport(settings)
        runner = Runner(settings, transport, LmdbStoreFactory(settings.state_dir, "aggregations"))
        stop = threading.Event()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                runner.run(stop)
            except BaseException as exc:  # reported by the main thread
                failure.append(exc)

        thread = threading.Thread(target=work, name="ncd-worker", daemon=True)
        thread.start()
        producer = transport.producer()
        topics = Topics(
            settings.topic_sources,
            settings.topic_entitlements,
            settings.topic_aggregations,
            settings.topic_provisioning,
        )
        try:
            _publish(Publisher(producer, DEMO_PARTITIONS, topics), records, runner, failure, out)
        finally:
            producer.close()
            stop.set()
            thread.join(timeout=DEMO_STEP_TIMEOUT_S)
        if failure:
            raise failure[0]
        events = _read_events(transport, settings.topic_events)
    for event in sorted(events, key=lambda e: (e["account"]["nativeIdentity"], e["eventType"])):
        out.write(codec.dumps(event).decode() + "\n" if as_json else describe(event))
    out.write(f"\n{len(events)} event(s) published to {settings.topic_events}.\n")
    return len(events)


def _publish(
    publisher: Publisher,
    records: _Examples,
    runner: Runner,
    failure: list[BaseException],
    out: TextIO,
) -> None:
    """Publish the example step by step, each step once the worker has processed the last."""
    source, previous, current = records.source, records.previous, records.current
    _wait(lambda: runner.ready.is_set(), failure, "the worker to start")
    publisher.publish_source(source)
    publisher.publish_catalog(source.id, records.catalog)
    expected = _processed(runner)
    out.write(f"Worker started. Publishing the baseline ({len(previous)} accounts)...\n")
    publisher.publish_aggregation(source.id, previous, started_at="2026-11-21T08:00:00Z")
    expected += len(previous) + 2 * DEMO_PARTITIONS
    _wait(lambda: _processed(runner) >= expected, failure, "the baseline")
    provisioning = records.provisioning
    out.write(f"Publishing {len(provisioning)} provisioning record(s) of the platform...\n")
    uuids = {a.nativeIdentity: a.uuid for a in previous}
    publisher.publish_provisioning(provisioning, uuids.get)
    expected += len(provisioning)
    _wait(lambda: _processed(runner) >= expected, failure, "the provisioning")
    out.write(f"Publishing the next aggregation ({len(current)} accounts)...\n\n")
    publisher.publish_aggregation(source.id, current, started_at="2026-11-22T08:00:00Z")
    expected += len(current) + 2 * DEMO_PARTITIONS
    _wait(lambda: _processed(runner) >= expected, failure, "the second aggregation")


def _processed(runner: Runner) -> int:
    return sum(runner.stats.verdicts.values())


def _wait(done: Callable[[], bool], failure: list[BaseException], what: str) -> None:
    deadline = time.monotonic() + DEMO_STEP_TIMEOUT_S
    while not done():
        if failure:
            raise failure[0]
        if time.monotonic() > deadline:
            raise ProcessorError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _read_events(transport: Transport, topic: str) -> list[dict[str, Any]]:
    reader = transport.partition_reader()
    try:
        tps = reader.partitions_for(topic)
        ends = reader.end_offsets(tps)
        reader.assign(dict.fromkeys(tps))
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + DEMO_STEP_TIMEOUT_S
        while any(reader.position(tp) < ends[TP(tp.topic, tp.partition)] for tp in tps):
            if time.monotonic() > deadline:
                raise ProcessorError("timed out reading the events")
            events.extend(codec.loads(r.value) for r in reader.poll(0.5, 1000) if r.value)
        return events
    finally:
        reader.close()


def describe(event: dict[str, Any]) -> str:
    """A readable, multi-line rendering of one event."""
    account = event["account"]
    who = event["identity"]["name"] or "?"
    lines = [
        f"{event['eventType']:<16} {account['nativeIdentity']}",
        f"    identity {who}{'' if account['correlated'] else ' (uncorrelated)'}; "
        f"changes: {', '.join(event['accountChangeTypes'])}",
    ]
    for change in event["singleValueAttributeChanges"]:
        lines.append(
            f"    {change['name']}: {_show(change['oldValue'])} -> {_show(change['newValue'])}"
        )
    for change in event["multiValueAttributeChanges"]:
        parts = [f"+{_show(v)}" for v in change["addedValues"]]
        parts += [f"-{_show(v)}" for v in change["removedValues"]]
        lines.append(f"    {change['name']}: {' '.join(parts)}")
    for change in event["entitlementChanges"]:
        parts = [f"+{ref['name']}" for ref in change["added"]]
        parts += [f"-{ref['name']}" for ref in change["removed"]]
        lines.append(f"    {change['attributeName']} (entitlements): {' '.join(parts)}")
    return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    return "null" if value is None else codec.dumps(value).decode()
