"""The runner meets account records with the provisioning records already in their partition."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from processor.models import Account, ProvisioningRecord
from processor.transport import LAG_UNKNOWN, TP
from processor.transport.memory import MemoryGroupConsumer
from tests.unit.conftest import make_account, make_source
from tests.unit.memory_worker import MemoryWorker

N = 12


def _accounts(title_of_3: str) -> list[Account]:
    return [
        make_account(f"CN=u{i}", {"title": title_of_3 if i == 3 else "Engineer"}, uuid=f"id-{i}")
        for i in range(N)
    ]


def _events(worker: MemoryWorker) -> list[tuple[str, str]]:
    logs = worker.broker.logs.get(worker.settings.topic_events, [])
    records = [slot.record for log in logs for slot in log if slot.record is not None]
    values = [r.value for r in records if r.value is not None]
    return sorted(
        (e["eventType"], e["account"]["nativeIdentity"]) for e in map(orjson.loads, values)
    )


def test_provisioning_behind_in_the_fetch_is_applied_before_the_accounts(tmp_path: Path) -> None:
    """Polls that hand out aggregation records first still apply earlier provisioning first."""
    # Small polls: the in-memory consumer returns the aggregations topic before provisioning,
    # so without waiting the account would be diffed before the platform's own change.
    worker = MemoryWorker(tmp_path, max_batch_records=4)
    source = make_source()
    worker.publish(source, _accounts("Engineer"), started_at="2026-01-01T00:00:00Z")
    worker.run(worker.runner())
    provisioning = ProvisioningRecord.model_validate(
        {
            "sourceId": source.id,
            "input": {
                "key": {"simple": {"id": "CN=u3"}},
                "changes": [{"op": "Set", "attribute": "title", "value": "Lead"}],
            },
            "completedAt": "2026-01-01T06:00:00Z",
        }
    )
    publisher = worker.publisher()
    publisher.publish_provisioning([provisioning], lambda native: "id-3")
    publisher.publish_aggregation(source.id, _accounts("Lead"), started_at="2026-01-02T00:00:00Z")
    runner = worker.runner()
    worker.run(runner)
    assert _events(worker) == []
    assert runner.stats.held_back > 0
    assert runner.stats.verdicts["applied"] == 1
    aggregations = TP(worker.settings.topic_aggregations, 0)
    assert worker.broker.group_offsets[(worker.settings.group_id, aggregations)] == (
        worker.broker.end_offset(aggregations)
    )


def test_an_unknown_provisioning_lag_holds_aggregations_until_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any fetch has told the provisioning high watermark, aggregation records wait."""
    original = MemoryGroupConsumer.lag
    calls = {"n": 0}

    def lag(self: MemoryGroupConsumer) -> dict[TP, int]:
        calls["n"] += 1
        known = original(self)
        if calls["n"] > 2:
            return known
        return {tp: LAG_UNKNOWN if "provisioning" in tp.topic else n for tp, n in known.items()}

    monkeypatch.setattr(MemoryGroupConsumer, "lag", lag)
    worker = MemoryWorker(tmp_path)
    worker.publish(make_source(), _accounts("Engineer"))
    runner = worker.runner()
    worker.run(runner)
    assert runner.stats.held_back > 0
    assert runner.stats.verdicts["stored"] == N
