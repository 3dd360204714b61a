"""Targets, markdown and the throughput plot of the report (pure: no broker, no clock)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _row(rows: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    return next(r for r in rows if r["label"].startswith(prefix))


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per target of issue 6: value, target, met, and the margin."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, target: float, higher: bool, unit: str) -> None:
        if value is None:
            out.append(
                {
                    "target": name,
                    "value": None,
                    "goal": target,
                    "met": False,
                    "by": "not measured",
                    "unit": unit,
                }
            )
            return
        met = value >= target if higher else value <= target
        by = value / target if higher else target / value if value else float("inf")
        out.append(
            {"target": name, "value": value, "goal": target, "met": met, "by": by, "unit": unit}
        )

    core = r.get("core", {})
    if core:
        add(
            "diff core >= 50x DeepDiff on changed accounts",
            core["changed"]["core_vs_deepdiff"],
            50,
            True,
            "x",
        )
        if "unchanged" in core:
            add(
                "unchanged accounts >= 150,000/s on one core (diff core, decide_event)",
                _row(core["unchanged"]["rows"], "core decide_event")["per_s"],
                150_000,
                True,
                "/s",
            )
        add(
            "unchanged accounts >= 150,000/s on one core (worker path, from record bytes)",
            _row(r["worker_path"]["unchanged"]["rows"], "worker")["per_s"],
            150_000,
            True,
            "/s",
        )
    b = r.get("broker") or {}
    second = b.get("second", {})
    ceil = b.get("ceilings", {})
    consume = ceil.get("kafka-python consume only", {}).get("records_per_s")
    for row in second.values():
        if row["transport"] == "kafka-python" and consume:
            add(
                f"worker ({row['transport']}, {row['guarantee']}) >= 75% of kafka-python consume-only",
                row["records_per_s"] / consume,
                0.75,
                True,
                "ratio",
            )
    own_ceiling = {
        "kafka-python": consume,
        "confluent": ceil.get("confluent consume only", {}).get("records_per_s"),
    }
    for row in second.values():
        own = own_ceiling.get(row["transport"])
        if row["guarantee"] == "exactly_once" and own:
            add(
                f"worker ({row['transport']}, exactly_once) >= 0.40x its client's consume-only"
                " (issue 14)",
                row["records_per_s"] / own,
                0.40,
                True,
                "ratio",
            )
    peers = b.get("peer_second", {})
    for row in second.values():
        peer = peers.get(row["guarantee"].replace("_", "-"), {})
        if row["transport"] == "confluent":
            add(
                f"worker (confluent, {row['guarantee']}) >= 1.5x Quix peer",
                row["records_per_s"] / peer["records_per_s"] if peer.get("records_per_s") else None,
                1.5,
                True,
                "x",
            )
    if b and "confluent" not in b.get("transports", []):
        add("worker (confluent) >= 1.5x Quix peer", None, 1.5, True, "x")
    anon = r.get("state", {}).get("anon_mb_at_accounts")
    if anon:
        # The process's own memory (RssAnon). LMDB maps its file: the pages it touched also
        # count in VmRSS as RssFile, page cache the kernel reclaims under pressure (the
        # state section shows both).
        add(
            f"resident memory (RssAnon) < 400 MB with {r['state']['accounts']:,} accounts in state",
            anon,
            400,
            False,
            "MB",
        )
    lat = b.get("latency", {})
    if lat:
        p99 = lat.get("p99_ms")
        add(
            "p99 record-to-event latency < 1 s at half load",
            None if p99 is None else p99 / 1000,
            1.0,
            False,
            "s",
        )
    return out


def plot(r: dict[str, Any], path: Path) -> None:
    """Horizontal bars: records/s of every contender and ceiling of the broker run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = throughput_bars(r)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(bars) + 1.5))
    names = [n for n, _, _ in bars]
    values = [v for _, v, _ in bars]
    colors = [{"ceiling": "#999999", "worker": "#1f77b4", "peer": "#ff7f0e"}[k] for _, _, k in bars]
    ax.barh(names, values, color=colors)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("records/s, second aggregation (same records, same broker, same run)")
    ax.set_title("Worker and Quix peer against the client ceilings (grey)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def throughput_bars(r: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(name, records/s, kind) of every broker contender; kind: ceiling, worker or peer."""
    b = r.get("broker") or {}
    bars = [(name, c["records_per_s"], "ceiling") for name, c in b.get("ceilings", {}).items()]
    for row in b.get("second", {}).values():
        bars.append(
            (f"worker {row['transport']} {row['guarantee']}", row["records_per_s"], "worker")
        )
    for g, row in b.get("peer_second", {}).items():
        if row.get("records_per_s"):
            bars.append((f"Quix peer {g}", row["records_per_s"], "peer"))
    return bars


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:.2f}{'x' if unit == 'x' else ''}"


def markdown(r: dict[str, Any]) -> str:
    """The whole report as markdown."""
    m = r["meta"]
    lines = [
        "# Benchmark report (issue 6)",
        "",
        f"Generated by `{m['command']}` on {m['when']} ({m['seconds']:.0f} s). Machine: "
        f"{m['nproc']} vCPU {m['cpu']}, Python {m['python']}; shared with other jobs, so "
        "absolute figures move 20-30 % between runs and **ratios measured side by side are "
        "the result**. Data: `bench/generate.py` seed "
        f"{m['seed']}, ~3.3 KB AD-like accounts, 5-60 groups, 5 % changed per aggregation.",
        "",
        "## Targets",
        "",
        "| target | measured | goal | met | margin |",
        "|---|---|---|---|---|",
    ]
    for t in r["targets"]:
        by = t["by"] if isinstance(t["by"], str) else f"{t['by']:.2f}x of goal"
        lines.append(
            f"| {t['target']} | {_fmt(t['value'], t['unit'])} | {_fmt(t['goal'], t['unit'])} "
            f"| {'met' if t['met'] else '**missed**'} | {by} |"
        )
    lines += ["", *r.get("notes", []), ""]
    core = r.get("core")
    if core:
        lines += ["## 1. Diff core (pure, pre-built pairs, one core)", ""]
        for kind in ("changed", "unchanged"):
            c = core[kind]
            lines += [
                f"**{kind}** ({c['pairs']} pairs, {c['mean_bytes']:,.0f} B/account, {c['events']} events): "
                f"core / DeepDiff = **{c['core_vs_deepdiff']:.1f}x**; from bytes / DeepDiff = "
                f"{c['core_from_bytes_vs_deepdiff']:.1f}x; from bytes / decode-only = "
                f"{c['core_from_bytes_vs_decode_only']:.2f}.",
                "",
                "| loop | accounts/s |",
                "|---|---:|",
                *[f"| {row['label']} | {row['per_s']:,.0f} |" for row in c["rows"]],
                "",
            ]
        wp = r["worker_path"]
        lines += [
            f"Worker's per-record path (`PartitionProcessor.process` on record bytes, in-memory store holding a baseline of {wp['baseline_accounts']:,}):",
            "",
        ]
        lines += ["| records | loop | records/s |", "|---|---|---:|"]
        for kind in ("unchanged", "changed"):
            for row in wp[kind]["rows"]:
                lines.append(
                    f"| {kind} ({wp[kind]['records']}) | {row['label']} | {row['per_s']:,.0f} |"
                )
        lines.append("")
    b = r.get("broker")
    if b:
        lines += _broker_md(b)
    st = r.get("state")
    if st:
        lines += _state_md(st)
    prof = r.get("profile")
    if prof:
        lines += [
            "## Profile of the hot path (pyinstrument)",
            "",
            f"In-process `Runner` on the memory transport, second aggregation of {prof['records']:,} "
            f"records: {prof['records_per_s_profiled']:,.0f} records/s under the profiler. "
            f"Verdicts: {prof['verdicts']}. Top frames by own time:",
            "",
            "| frame | own s | share |",
            "|---|---:|---:|",
            *[
                f"| `{f['frame']}` | {f['self_s']:.3f} | {f['share']:.1%} |"
                for f in prof["top_self"]
            ],
            "",
            "<details><summary>call tree</summary>",
            "",
            "```",
            prof["text"].strip(),
            "```",
            "</details>",
            "",
        ]
    lines += [*r.get("suggestions", []), ""]
    return "\n".join(lines)


def _broker_md(b: dict[str, Any]) -> list[str]:
    lines = [
        f"## 2-3. Worker, ceilings and the Quix peer on one broker: {b.get('broker', 'Tansu')}",
        "",
        f"Second aggregation: {b['second_records']:,} records on {b['partitions']} partitions, "
        f"read by every contender from the same topic. Transports: {', '.join(b['transports'])}.",
        "",
        "| contender | records/s | vs kafka-python consume-only | note |",
        "|---|---:|---:|---|",
    ]
    consume = b["ceilings"]["kafka-python consume only"]["records_per_s"]
    for name, c in b["ceilings"].items():
        lines.append(
            f"| {name} | {c['records_per_s']:,.0f} | {c['records_per_s'] / consume:.2f} | ceiling |"
        )
    for row in b["second"].values():
        match = row["events_by_type"] == row["expected_events_by_type"]
        lines.append(
            f"| worker {row['transport']} {row['guarantee']} | {row['records_per_s']:,.0f} | "
            f"{row['records_per_s'] / consume:.2f} | from its first batch; "
            f"{row.get('from_ready_s', 0):.1f} s from ready (assigned, restored), "
            f"{row['from_process_start_s']:.1f} s from process start; events "
            f"{row['events_by_type']} ({'as expected' if match else 'expected ' + str(row['expected_events_by_type'])}); "
            f"dead letters {row['dead_letters']} |"
        )
    for g, row in b["peer_second"].items():
        if row.get("records_per_s"):
            lines.append(
                f"| Quix peer {g} | {row['records_per_s']:,.0f} | {row['records_per_s'] / consume:.2f} | "
                f"first to last message; {row['records_per_s_to_stop']:,.0f}/s to stop; events {row.get('events')} |"
            )
        else:
            lines.append(f"| Quix peer {g} | - | - | failed: {row.get('error')} |")
    lat = b.get("latency", {})
    rs = b.get("restore", {})
    lines += [
        "",
        "## 4-5. Restore and latency",
        "",
        f"- Restore from the changelog after deleting the state directory ({b['second'] and next(iter(b['second']))}): "
        f"{rs.get('restored_records', 0):,} records in {rs.get('restore_s', 0):.2f} s = "
        f"**{rs.get('records_per_s', 0):,.0f} records/s**.",
        f"- Record-to-event latency at half the worker's measured rate ({lat.get('contender')}): target "
        f"{lat.get('target_rate', 0):,.0f}/s, achieved {lat.get('achieved_rate', 0):,.0f}/s over "
        f"{lat.get('records', 0):,} records, {lat.get('events', 0)} events: "
        f"p50 **{_ms(lat.get('p50_ms'))}**, p99 **{_ms(lat.get('p99_ms'))}**, max {_ms(lat.get('max_ms'))} "
        "(event seen by a read_committed consumer minus the input record's CreateTime, which the "
        "worker copies into the event record).",
        "",
        "![throughput](throughput.png)",
        "",
    ]
    return lines


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f} ms"


def _state_md(st: dict[str, Any]) -> list[str]:
    lines = [
        "## 4. Resident memory of the worker while it loads the baseline",
        "",
        f"{st['contender']}: RSS sampled every 0.5 s against accounts committed (LMDB pages it "
        "touched count in RssFile; they are page cache the kernel can drop).",
        "",
        "| accounts committed | VmRSS MB | RssAnon MB | RssFile MB |",
        "|---:|---:|---:|---:|",
        *[
            f"| {p['records']:,} | {p['VmRSS'] / 1024:,.0f} | {p['RssAnon'] / 1024:,.0f} | {p['RssFile'] / 1024:,.0f} |"
            for p in st["points"]
        ],
        "",
        f"Slope of RssAnon: {st['anon_kb_per_1k_accounts']:.1f} kB per 1,000 accounts; of VmRSS: "
        f"{st['rss_kb_per_1k_accounts']:.1f} kB per 1,000 accounts.",
        "",
    ]
    rs = st.get("restore")
    if rs:
        lines += [
            f"After the baseline the state directory was deleted and the worker restarted: it "
            f"restored {rs.get('restored_records', 0):,} changelog records in "
            f"{rs.get('restore_s', 0):.1f} s = **{rs.get('records_per_s', 0):,.0f} records/s** "
            f"(RSS after restore: {rs.get('rss_after_restore_kb', {}).get('VmRSS', 0) / 1024:,.0f} MB"
            f" VmRSS, {rs.get('rss_after_restore_kb', {}).get('RssAnon', 0) / 1024:,.0f} MB RssAnon).",
            "",
        ]
    return lines


def state_summary(contender: str, samples: list[dict[str, Any]], accounts: int) -> dict[str, Any]:
    """RSS at about 25/50/75/100 % of the baseline and the slope between first and last."""
    usable = [s for s in samples if "VmRSS" in s and s["records"] > 0]
    if not usable:
        return {}
    points = []
    for q in (0.25, 0.5, 0.75, 1.0):
        goal = q * usable[-1]["records"]
        points.append(min(usable, key=lambda s: abs(s["records"] - goal)))
    a, z = points[0], points[-1]
    span = max(1, z["records"] - a["records"]) / 1000
    return {
        "contender": contender,
        "accounts": accounts,
        "points": points,
        "anon_kb_per_1k_accounts": (z["RssAnon"] - a["RssAnon"]) / span,
        "rss_kb_per_1k_accounts": (z["VmRSS"] - a["VmRSS"]) / span,
        "rss_mb_at_accounts": z["VmRSS"] / 1024,
        "anon_mb_at_accounts": z["RssAnon"] / 1024,
    }
