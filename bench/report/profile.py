"""The worker's hot path under pyinstrument: the in-process Runner on the memory transport.

A baseline aggregation is processed first (not profiled); the second aggregation is then
processed by a fresh Runner on the same stores under the profiler. The wall rate of that
run (records/s, profiler overhead included) is reported next to the top frames.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog

from bench.generate import CURRENT_AT, PREVIOUS_AT, Dataset
from processor.config import load_settings
from processor.models import Account, CatalogEntry, SourceDescriptor
from processor.publisher import Publisher, Topics
from processor.runner import Runner
from processor.state.store import InMemoryStoreFactory
from processor.transport.memory import MemoryBroker

PARTITIONS = 3


def _quiet_logs() -> None:
    def drop(*_: Any) -> Any:
        raise structlog.DropEvent

    structlog.configure(processors=[drop])


def _run_until(runner: Runner, records: int, timeout_s: float) -> float:
    """Run ``runner`` in this thread until it has decided ``records`` records; seconds."""
    stop = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while sum(runner.stats.verdicts.values()) < records and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()

    watcher = threading.Thread(target=watch, daemon=True)
    began = time.perf_counter()
    watcher.start()
    runner.run(stop)
    watcher.join()
    return time.perf_counter() - began


def profile_worker(dataset: Dataset, top: int = 25, timeout_s: float = 600.0) -> dict[str, Any]:
    """Top frames (by own time) of the Runner processing the second aggregation."""
    from pyinstrument import Profiler

    _quiet_logs()
    broker = MemoryBroker(default_partitions=PARTITIONS)
    settings = load_settings(partitions=PARTITIONS, group_id="prof", instance_id="p1")
    topics = Topics(
        settings.topic_sources,
        settings.topic_entitlements,
        settings.topic_aggregations,
        settings.topic_provisioning,
    )
    broker.admin().ensure_topics(settings.topic_specs())
    publisher = Publisher(broker.producer(), PARTITIONS, topics)
    source = SourceDescriptor.model_validate(dataset.source)
    publisher.publish_source(source)
    publisher.publish_catalog(
        source.id, (CatalogEntry.model_validate(c) for c in dataset.catalog())
    )
    iso = "%Y-%m-%dT%H:%M:%SZ"
    publisher.publish_aggregation(
        source.id,
        (Account.model_validate(a) for a in dataset.previous()),
        started_at=PREVIOUS_AT.strftime(iso),
    )
    stores = InMemoryStoreFactory()
    first = dataset.n_accounts + 2 * PARTITIONS
    _run_until(Runner(settings, broker, stores), first, timeout_s)
    current = [Account.model_validate(a) for a in dataset.current()]
    publisher.publish_aggregation(source.id, current, started_at=CURRENT_AT.strftime(iso))
    second = len(current) + 2 * PARTITIONS
    runner = Runner(settings, broker, stores)
    profiler = Profiler(interval=0.001)
    profiler.start()
    seconds = _run_until(runner, second, timeout_s)
    profiler.stop()
    return {
        "records": second,
        "seconds_profiled": seconds,
        "records_per_s_profiled": second / seconds,
        "verdicts": {str(k): v for k, v in runner.stats.verdicts.items()},
        "top_self": top_frames(profiler, top),
        "text": profiler.output_text(unicode=False, color=False, show_all=False),
    }


def top_frames(profiler: Any, top: int) -> list[dict[str, Any]]:
    """Functions by own (self) time, summed over the call tree, largest first."""
    session = profiler.last_session
    root = session.root_frame()
    total = root.time if root is not None else 0.0
    own: dict[str, float] = {}
    stack = [root] if root is not None else []
    while stack:
        frame = stack.pop()
        stack.extend(frame.children)
        if frame.identifier.startswith("["):  # [self]: already in the parent's self time
            continue
        name = f"{frame.function} ({_short(frame.file_path_short or '')}:{frame.line_no})"
        own[name] = own.get(name, 0.0) + frame.total_self_time
    ranked = sorted(own.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return [{"frame": n, "self_s": s, "share": s / total if total else 0.0} for n, s in ranked]


def _short(path: str) -> str:
    for marker in ("site-packages/", "main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path
