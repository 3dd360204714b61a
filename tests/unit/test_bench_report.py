"""Smoke tests of the benchmark report's pure pieces on tiny data (no broker, no timings)."""

from __future__ import annotations

from pathlib import Path

from bench.generate import generate
from bench.quix_peer import diff_accounts
from bench.report import render
from bench.report.core_bench import build_pairs, measure_core, measure_worker_path


def test_pairs_split_changed_and_unchanged() -> None:
    """Changed pairs differ and unchanged pairs are equal, from the same dataset plan."""
    data = generate(200, 0.05, 7)
    changed = build_pairs(data, "changed", 5)
    same = build_pairs(data, "unchanged", 5)
    assert len(changed.previous) == 5
    assert all(p != c for p, c in zip(changed.previous, changed.current, strict=True))
    assert all(p == c for p, c in zip(same.previous, same.current, strict=True))


def test_core_measure_counts_one_event_per_changed_pair() -> None:
    """The core section reports an event for every changed pair and none for unchanged ones."""
    data = generate(200, 0.05, 7)
    result = measure_core(data, 4, 0.01)
    assert result["changed"]["events"] == result["changed"]["pairs"] == 4
    assert result["unchanged"]["events"] == 0
    assert {row["label"].split(" ")[0] for row in result["changed"]["rows"]} >= {
        "core",
        "DeepDiff(ignore_order=True)",
    }


def test_worker_path_classifies_unchanged_records() -> None:
    """The worker-path section finds the unchanged records of the second aggregation."""
    data = generate(200, 0.05, 7)
    result = measure_worker_path(data, 50, 0.01)
    assert result["unchanged"]["records"] == 50
    assert result["changed"]["records"] >= 1


def test_peer_diff_ignores_order_and_reports_changes() -> None:
    """The peer's hand-written diff ignores list order and names changed attributes."""
    prev = {"nativeIdentity": "a", "attributes": {"memberOf": ["x", "y"], "title": "t"}}
    assert (
        diff_accounts(prev, {**prev, "attributes": {"memberOf": ["y", "x"], "title": "t"}}) is None
    )
    event = diff_accounts(prev, {**prev, "attributes": {"memberOf": ["x"], "title": "u"}})
    assert event is not None
    assert [c["attribute"] for c in event["changes"]] == ["memberOf", "title"]
    assert diff_accounts(None, prev) == {"eventType": "ACCOUNT_CREATED", "account": "a"}


def test_targets_and_markdown_from_a_synthetic_result(tmp_path: Path) -> None:
    """Targets compare against their goals and the markdown and plot render from a result."""
    rows = [{"label": "worker x", "per_s": 200_000.0}]
    result = {
        "meta": {
            "command": "c",
            "when": "w",
            "seconds": 1.0,
            "nproc": 2,
            "cpu": "c",
            "python": "3",
            "seed": 7,
        },
        "core": {"changed": {"core_vs_deepdiff": 40.0}},
        "worker_path": {"unchanged": {"rows": rows}},
        "broker": {
            "transports": ["kafka-python"],
            "ceilings": {"kafka-python consume only": {"records_per_s": 1000.0}},
            "second": {
                "w": {
                    "transport": "kafka-python",
                    "guarantee": "exactly_once",
                    "records_per_s": 800.0,
                }
            },
            "peer_second": {"exactly-once": {"records_per_s": 400.0}},
        },
    }
    got = {t["target"].split(" ")[0]: t["met"] for t in render.targets(result)}
    assert got["diff"] is False
    assert got["unchanged"] is True
    assert any(t["met"] for t in render.targets(result) if "consume-only" in t["target"])
    bars = render.throughput_bars(result)
    assert [kind for _, _, kind in bars] == ["ceiling", "worker", "peer"]
    render.plot(result, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0


def test_state_summary_slope() -> None:
    """The state summary gives the RSS slope per thousand accounts between 25 % and 100 %."""
    samples = [
        {"records": n, "VmRSS": 100_000 + n, "RssAnon": 50_000, "RssFile": 50_000 + n}
        for n in range(0, 40_001, 1000)
    ]
    summary = render.state_summary("w", samples, 40_000)
    assert summary["anon_kb_per_1k_accounts"] == 0
    assert summary["rss_kb_per_1k_accounts"] == 1000


def test_rate_counts_from_the_first_batch_not_from_ready() -> None:
    """The report's worker rate starts at the first batch (its commit time less its
    duration), so start-up spent after "ready" is left out like start-up spent restoring."""
    from bench.worker_bench import first_batch_at, ready_at

    lines = [
        {
            "event": "partitions_assigned",
            "timestamp": "2026-11-26T10:00:00.000000Z",
            "partitions": [0],
        },
        {"event": "state_restored", "partition": 0, "timestamp": "2026-11-26T10:00:00.100000Z"},
        {"event": "config_loaded", "timestamp": "2026-11-26T10:00:01.000000Z"},
        {
            "event": "batch_committed",
            "records": 10,
            "duration_ms": 250.0,
            "timestamp": "2026-11-26T10:00:02.000000Z",
        },
        {
            "event": "batch_committed",
            "records": 10,
            "duration_ms": 900.0,
            "timestamp": "2026-11-26T10:00:03.000000Z",
        },
    ]
    began, ready = first_batch_at(lines), ready_at(lines)
    assert began is not None and ready is not None
    assert round(began - ready, 3) == 1.65
    assert first_batch_at(lines[:3]) is None
