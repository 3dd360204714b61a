"""The worker's byte path over unchanged records, with R1's uuid key computed by the GUID
pattern alone (as before the shortcut for braced lower case) and as now, alternated in one
process; best of each, in records per second (BENCHMARKS.md, "R1's uuid key")::

    python -m bench.uuid_key
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import processor.keys
import processor.worker.state
from bench.generate import generate
from bench.report.core_bench import CURRENT_AT, PREVIOUS_AT, _iso, _records
from processor.core.match import _GUID_RE, uuid_key
from processor.models import SourceDescriptor
from processor.state.overlay import BatchOverlay
from processor.state.store import InMemoryStateStore
from processor.worker.partition import PartitionProcessor, Verdict
from processor.worker.registry import SourceRegistry

ROUNDS = 15


def pattern_only(uuid: str) -> str:
    """R1's uuid key by the pattern alone (the body before the shortcut)."""
    found: re.Match[str] | None = _GUID_RE.fullmatch(uuid)
    return uuid if found is None else "{" + found.group(2).lower() + "}"


def main() -> None:
    dataset = generate(4000, 0.05, 7)
    registry = SourceRegistry()
    registry.put_source(SourceDescriptor.model_validate(dataset.source))
    store = InMemoryStateStore()
    proc = PartitionProcessor(registry)
    first = _records(dataset, dataset.previous(), _iso(PREVIOUS_AT))
    second = _records(dataset, dataset.current(), _iso(CURRENT_AT))
    for batch, values in enumerate(([v for _, v in first], [second[0][1]])):
        overlay = BatchOverlay(store)
        proc.begin_batch()
        for value in values:
            proc.process(value, overlay)
        proc.end_batch(overlay, batch)
        store.apply(overlay.writes, None)
    probe = BatchOverlay(store)
    proc.begin_batch()
    unchanged = [v for _, v in second[1:-1] if proc.process(v, probe).verdict == Verdict.UNCHANGED][
        :2000
    ]

    def run() -> None:
        overlay = BatchOverlay(store)
        proc.begin_batch()
        for value in unchanged:
            proc.process(value, overlay)

    variants: dict[str, Callable[[str], str]] = {"pattern only": pattern_only, "now": uuid_key}
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(ROUNDS):
        for name, variant in variants.items():
            processor.worker.state.uuid_key = processor.keys.uuid_key = variant
            began = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - began)
    processor.worker.state.uuid_key = processor.keys.uuid_key = uuid_key
    for name, seconds in best.items():
        print(f"{name}: {len(unchanged) / seconds:,.0f} unchanged records/s")
    print(f"ratio: {best['pattern only'] / best['now']:.2f}x")


if __name__ == "__main__":
    main()
