"""Section 1: the diff core on pre-built account pairs, next to DeepDiff and to decoding.

Pure (no broker): every figure is accounts per second of one loop over the same pairs,
measured one after the other in this process, so the ratios are the result.
"""

from __future__ import annotations

import gc
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from bench.generate import CURRENT_AT, PREVIOUS_AT, Dataset
from processor.core import EntitlementCatalog, SourcePolicy, decide_event
from processor.models import Account, CatalogEntry, SourceDescriptor
from processor.publisher import Publisher, Topics
from processor.state.overlay import BatchOverlay
from processor.state.store import InMemoryStateStore
from processor.transport.memory import MemoryBroker
from processor.worker import partition as partition_module
from processor.worker.partition import PartitionProcessor, Verdict
from processor.worker.registry import SourceRegistry
from processor.worker.state import k_account

TOPICS = Topics("b.sources", "b.entitlements", "b.aggregations", "b.provisioning")


@dataclass(frozen=True)
class Pairs:
    """(previous, current) of the same accounts as dicts, models and record bytes."""

    kind: str
    previous: list[dict[str, Any]]
    current: list[dict[str, Any]]
    previous_models: list[Account]
    current_models: list[Account]
    current_bytes: list[bytes]


def build_pairs(dataset: Dataset, kind: str, limit: int) -> Pairs:
    """Up to ``limit`` pairs of ``kind`` "changed" (natively changed) or "unchanged"."""
    if kind == "changed":
        indices = sorted(dataset.changed)
    else:
        skip = dataset.changed | dataset.deleted | dataset.provisioned | dataset.noisy
        indices = [i for i in range(dataset.n_accounts) if i not in skip]
    indices = indices[:limit]
    prev = [dataset.account(i) for i in indices]
    cur = [dataset.current_account(i) for i in indices]
    return Pairs(
        kind,
        prev,
        cur,
        [Account.model_validate(a) for a in prev],
        [Account.model_validate(a) for a in cur],
        [orjson.dumps(a) for a in cur],
    )


def rate(
    label: str, items: Sequence[Any], work: Callable[[Any], object], budget_s: float
) -> dict[str, Any]:
    """Accounts/s of ``work`` over ``items`` (repeated or cut to roughly ``budget_s``)."""
    gc.collect()
    done, began = 0, time.perf_counter()
    while True:
        for item in items:
            work(item)
            done += 1
            if done % 64 == 0 and time.perf_counter() - began > budget_s:
                break
        elapsed = time.perf_counter() - began
        if elapsed > budget_s or done >= 50 * len(items):
            break
    return {"label": label, "accounts": done, "seconds": elapsed, "per_s": done / elapsed}


def policy_and_catalog(dataset: Dataset) -> tuple[SourcePolicy, EntitlementCatalog]:
    source = SourceDescriptor.model_validate(dataset.source)
    catalog = EntitlementCatalog(CatalogEntry.model_validate(c) for c in dataset.catalog())
    return SourcePolicy.from_source(source), catalog


def measure_core(dataset: Dataset, limit: int, budget_s: float) -> dict[str, Any]:
    """decide_event, DeepDiff(ignore_order=True) and orjson.loads on the same pairs."""
    from deepdiff import DeepDiff

    policy, catalog = policy_and_catalog(dataset)
    out: dict[str, Any] = {}
    for kind in ("changed", "unchanged"):
        pairs = build_pairs(dataset, kind, limit)
        models = list(zip(pairs.previous_models, pairs.current_models, strict=True))
        dicts = list(zip(pairs.previous, pairs.current, strict=True))
        events = sum(
            1 for p, c in models if decide_event(policy, p, c, catalog, context="b") is not None
        )
        rows = [
            rate(
                "core decide_event (models)",
                models,
                lambda pc: decide_event(policy, pc[0], pc[1], catalog, context="b"),
                budget_s,
            ),
            rate(
                "core from bytes (orjson + validate + decide_event)",
                list(zip(pairs.previous_models, pairs.current_bytes, strict=True)),
                lambda pb: decide_event(
                    policy, pb[0], Account.model_validate(orjson.loads(pb[1])), catalog, context="b"
                ),
                budget_s,
            ),
            rate(
                "DeepDiff(ignore_order=True) (dicts)",
                dicts,
                lambda pc: DeepDiff(pc[0], pc[1], ignore_order=True),
                budget_s,
            ),
            rate("orjson.loads only (bytes)", pairs.current_bytes, orjson.loads, budget_s),
        ]
        core, deep = rows[0]["per_s"], rows[2]["per_s"]
        out[kind] = {
            "pairs": len(models),
            "events": events,
            "mean_bytes": sum(map(len, pairs.current_bytes)) / max(1, len(pairs.current_bytes)),
            "rows": rows,
            "core_vs_deepdiff": core / deep,
            "core_from_bytes_vs_deepdiff": rows[1]["per_s"] / deep,
            "core_from_bytes_vs_decode_only": rows[1]["per_s"] / rows[3]["per_s"],
        }
    return out


def _records(
    dataset: Dataset, accounts: Iterable[dict[str, Any]], started: str
) -> list[tuple[bytes, bytes]]:
    """One aggregation as the publisher writes it: (key, value) of every record."""
    broker = MemoryBroker(default_partitions=1)
    publisher = Publisher(broker.producer(), 1, TOPICS, clock=lambda: started)
    publisher.publish_aggregation(
        dataset.source["id"], (Account.model_validate(a) for a in accounts), started_at=started
    )
    return [(r.key or b"", r.value or b"") for r in broker.records(TOPICS.aggregations)]


def _iso(moment: Any) -> str:
    return str(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))


@contextmanager
def _without_byte_path() -> Iterator[None]:
    """The worker as before the byte path (issue 14): every record decoded, the canonical
    input digest compared; to measure both side by side in one run."""
    saved = partition_module.account_bytes, partition_module.compact_account
    partition_module.account_bytes = partition_module.compact_account = lambda value: None
    try:
        yield
    finally:
        partition_module.account_bytes, partition_module.compact_account = saved


def measure_worker_path(dataset: Dataset, limit: int, budget_s: float) -> dict[str, Any]:
    """``PartitionProcessor.process`` on record bytes against an in-memory store holding
    the baseline: unchanged records (digest compare) and changed ones; next to orjson.loads
    of the same bytes and to a no-decode ceiling (blake2b of the record bytes + one get)."""
    registry = SourceRegistry()
    policy_source = SourceDescriptor.model_validate(dataset.source)
    registry.put_source(policy_source)
    for entry in dataset.catalog():
        registry.catalog(policy_source.id).put(CatalogEntry.model_validate(entry))
    store = InMemoryStateStore()
    proc = PartitionProcessor(registry)
    base = _records(dataset, dataset.previous(), _iso(PREVIOUS_AT))
    overlay = BatchOverlay(store)
    proc.begin_batch()
    for _, value in base:
        outcome = proc.process(value, overlay)
        if outcome.verdict == Verdict.DEAD_LETTERED:
            raise RuntimeError(f"baseline record dead-lettered: {outcome.reason}")
    proc.end_batch(overlay, 0)
    store.apply(overlay.writes, None)
    second = _records(dataset, dataset.current(), _iso(CURRENT_AT))
    overlay = BatchOverlay(store)
    proc.begin_batch()
    proc.process(second[0][1], overlay)  # aggregation.started
    verdicts: dict[str, list[tuple[bytes, bytes]]] = {"unchanged": [], "changed": []}
    probe = BatchOverlay(store)
    for key, value in second[1:-1]:
        outcome = proc.process(value, probe)  # classify only; the probe overlay is dropped
        kind = "unchanged" if outcome.verdict == Verdict.UNCHANGED else "changed"
        if outcome.verdict in (Verdict.UNCHANGED, Verdict.EMITTED):
            verdicts[kind].append((key, value))
    out: dict[str, Any] = {"baseline_accounts": dataset.n_accounts}
    for kind, records in verdicts.items():
        records = records[:limit]
        values = [v for _, v in records]

        def one(value: bytes) -> None:
            proc.process(value, BatchOverlay(store))

        def fast(record: tuple[bytes, bytes]) -> None:
            source_id, _, ident = record[0].decode().partition("/")
            raw = store.get(k_account(source_id, f"u:{ident}"))
            _ = hashlib.blake2b(record[1], digest_size=16).digest() == (raw or b"")[9:25]

        with _without_byte_path():
            before = rate(
                "PartitionProcessor.process without the byte path (canonical digest only)",
                values,
                one,
                budget_s,
            )
        out[kind] = {
            "records": len(records),
            "rows": [
                rate("worker PartitionProcessor.process (bytes)", values, one, budget_s),
                before,
                rate("orjson.loads only (bytes)", values, orjson.loads, budget_s),
                rate(
                    "ceiling without decoding: blake2b(record bytes) + store.get",
                    records,
                    fast,
                    budget_s,
                ),
            ],
        }
        rows = out[kind]["rows"]
        out[kind]["process_vs_decode_only"] = rows[0]["per_s"] / rows[2]["per_s"]
        out[kind]["byte_path_vs_without"] = rows[0]["per_s"] / rows[1]["per_s"]
    return out
