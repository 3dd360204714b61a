"""End to end: the worker process's /metrics, /readyz and logs on a real broker."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from processor import codec
from tests.integration.harness import WorkerEnv
from tests.unit.conftest import make_account, make_source

pytestmark = pytest.mark.broker

SENTINEL = "SENTINEL-7f3a"
#: Generous: starting Python, joining the group and catching up can be slow on a busy host.
WAIT_S = 120.0


def get(port: int, path: str) -> tuple[int | None, str]:
    """Status and body of a GET; ``None`` while nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None, ""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics text, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def wait_ready(env: WorkerEnv, port: int) -> list[tuple[int | None, bool]]:
    """Probe /readyz until 200; returns (status, partitions held per /metrics) per probe."""
    probes: list[tuple[int | None, bool]] = []
    deadline = time.monotonic() + WAIT_S
    while True:
        status, _ = get(port, "/readyz")
        probes.append((status, bool(env.assigned("w1"))))
        if status == 200:
            return probes
        assert env.procs[-1].poll() is None, env.log_text()
        assert time.monotonic() < deadline, "the worker never became ready"
        time.sleep(0.05)


def test_readyz_turns_200_only_after_partitions_are_assigned(env: WorkerEnv) -> None:
    """/readyz answers 503 while the worker starts and 200 only after its assignment."""
    env.start(http=True)
    port = env.http_ports["w1"]
    probes = wait_ready(env, port)
    assert all(assigned for status, assigned in probes if status == 200)
    assert (503, False) in probes  # the endpoint was up, and not ready, before the join
    assert get(port, "/livez")[0] == 200


def test_metrics_endpoint_counts_an_aggregation_pair_and_never_shows_a_sentinel(
    env: WorkerEnv,
) -> None:
    """A scrape after two aggregations and poison records shows the counts they imply.

    Accounts carry a sentinel in identities and attribute values, and so do the poison
    records; neither the worker's log nor /metrics ever contains it.
    """
    parts = env.partitions
    n, changed = 12, 3
    source = make_source(delete_threshold=100)
    first = [make_account(f"{SENTINEL}-{i}", {"title": f"{SENTINEL} t"}) for i in range(n)]
    # The first `changed` accounts change, the last one is gone, one is new.
    second = [
        *(make_account(f"{SENTINEL}-{i}", {"title": f"{SENTINEL} new"}) for i in range(changed)),
        *first[changed : n - 1],
        make_account(f"{SENTINEL}-new", {"title": SENTINEL}),
    ]
    env.start(http=True)
    port = env.http_ports["w1"]
    wait_ready(env, port)
    env.publish(source, first, started_at="2026-11-22T08:00:00Z")
    env.publish(source, second, started_at="2026-11-22T09:00:00Z")
    poison = [
        b'{"type": "account", "account": {"attributes": {"title": "' + SENTINEL.encode(),
        codec.dumps({"type": SENTINEL, "sourceId": source.id}),
    ]
    env.produce_raw("aggregations", [(SENTINEL.encode(), value) for value in poison])
    env.wait_drained()

    expected_records = {
        "marker": 4 * parts - 1,  # the completion emitting the deletion counts as emitted
        "stored": n,
        "emitted": changed + 1 + 1,
        "unchanged": n - 1 - changed,
        "stale": 0,
        "applied": 0,
        "ignored": 0,
        "dead_lettered": len(poison),
    }
    deadline = time.monotonic() + WAIT_S
    while True:  # the commit is visible to the test a moment before the counters move
        status, text = get(port, "/metrics")
        assert status == 200
        got = samples(text)
        total = sum(v for (name, _), v in got.items() if name == "ncd_records_total")
        # Lag is sampled at most once a second, and a rebalance forgets a partition's gauge
        # until the next sample: wait for one of every partition too.
        lags = {label for name, label in got if name == "ncd_consumer_lag"}
        if total == sum(expected_records.values()) and len(lags) == parts:
            break
        assert time.monotonic() < deadline, f"records counted: {total}"
        time.sleep(0.2)
    for verdict, count in expected_records.items():
        assert got[("ncd_records_total", (("verdict", verdict),))] == count, verdict
    assert got[("ncd_events_total", (("type", "ACCOUNT_CREATED"),))] == 1
    assert got[("ncd_events_total", (("type", "ACCOUNT_UPDATED"),))] == changed
    assert got[("ncd_events_total", (("type", "ACCOUNT_DELETED"),))] == 1
    assert got[("ncd_dead_letters_total", ())] == len(poison)
    assert got[("ncd_stale_records_total", ())] == 0
    assert got[("ncd_delete_guard_trips_total", ())] == 0
    assert got[("ncd_remediations_total", ())] == 0
    assert got[("ncd_restore_records_total", ())] == 0
    assert got[("ncd_ready", ())] == 1
    assert got[("ncd_batch_duration_seconds_count", ())] >= 1
    for p in range(parts):
        label = (("partition", str(p)),)
        assert got[("ncd_consumer_lag", label)] >= 0
        assert got[("ncd_restore_remaining", label)] == 0
        assert got[("ncd_state_keys", label)] > 0
    assert SENTINEL not in text

    assert env.stop(env.procs[-1]) == 0
    log = env.log_text()
    assert '"aggregation_summary"' in log and '"record_dead_lettered"' in log
    assert SENTINEL not in log
