"""End to end on a real broker: the platform's own change is not reported, a native one is
reported once and its remediation command reverts exactly that native change."""

from __future__ import annotations

from typing import Any

import pytest

from processor.core import SourcePolicy, apply_provisioning, detect_changes
from processor.core.catalog import EntitlementCatalog
from processor.models import Account, ProvisioningRecord
from tests.helpers import small_source
from tests.integration.harness import WorkerEnv

pytestmark = pytest.mark.broker

SOURCE = small_source(
    "src-prov",
    remediation={
        "mode": "propose",
        "revert": ["ATTRIBUTES_CHANGED", "ENTITLEMENTS_ADDED", "ENTITLEMENTS_REMOVED"],
    },
)
ANN = "CN=Ann,OU=Staff,DC=example,DC=com"


def _account(n: int, title: str = "Engineer", groups: tuple[str, ...] = ("CN=G1",)) -> Account:
    name = ANN if n == 0 else f"CN=user{n},OU=Staff,DC=example,DC=com"
    return Account.model_validate(
        {
            "nativeIdentity": name,
            "uuid": f"uuid-{n}",
            "attributes": {"title": title, "memberOf": list(groups)},
        }
    )


def test_provisioned_changes_are_silent_and_the_native_one_is_reverted(env: WorkerEnv) -> None:
    """Baseline, provisioning (Add a group, Set a title), a native change on top, next
    aggregation: one event for the native change, and one command reverting exactly it."""
    baseline = [_account(n) for n in range(6)]
    record = ProvisioningRecord.model_validate(
        {
            "sourceId": SOURCE.id,
            "input": {
                "key": {"simple": {"id": ANN}},
                "changes": [
                    {"op": "Add", "attribute": "memberOf", "value": "CN=Payroll"},
                    {"op": "Set", "attribute": "title", "value": "Team Lead"},
                ],
            },
            "output": {},
            "completedAt": "2026-11-22T08:30:00Z",
        }
    )
    provisioned = _account(0, "Team Lead", ("CN=G1", "CN=Payroll"))
    native = _account(0, "Team Lead", ("CN=G1", "CN=Payroll", "CN=Admins"))
    env.start()
    env.publish(SOURCE, baseline, started_at="2026-11-22T08:00:00Z")
    publisher, producer = env.publisher()
    try:
        uuids = {a.nativeIdentity: a.uuid for a in baseline}
        assert publisher.publish_provisioning([record], uuids.get) == 1
    finally:
        producer.close()
    env.wait_drained()
    env.publish(SOURCE, [native, *baseline[1:]], started_at="2026-11-22T09:00:00Z")
    env.wait_drained()

    events = env.events()
    assert len(events) == 1
    [event] = events
    assert event["eventType"] == "ACCOUNT_UPDATED"
    assert event["account"]["nativeIdentity"] == ANN
    assert event["singleValueAttributeChanges"] == []
    assert [
        (c["attributeName"], [r["value"] for r in c["added"]], c["removed"])
        for c in event["entitlementChanges"]
    ] == [("memberOf", ["CN=Admins"], [])]

    records = env.read_all("remediations")
    assert len(records) == 1
    command: dict[str, Any] = records[0].json()
    assert command["eventId"] == event["id"]
    assert records[0].key == f"{SOURCE.id}/uuid-0"
    headers = records[0].headers
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"].decode() == command["id"]
    assert headers["ce_source"].decode() == f"/sources/{SOURCE.id}"
    assert headers["ce_type"] == b"dev.ncd-processor.remediation.proposed"
    assert headers["ce_time"].decode().endswith("Z")
    assert headers["content-type"] == b"application/json"
    assert command["input"]["changes"] == [
        {"op": "Remove", "attribute": "memberOf", "value": "CN=Admins"}
    ]
    # Applied to the account as the source now has it, the command gives back the account
    # as it was after the platform's own change: exactly the native change is reverted.
    policy = SourcePolicy.from_source(SOURCE)
    revert = ProvisioningRecord.model_validate({"sourceId": SOURCE.id, "input": command["input"]})
    reverted = apply_provisioning(policy, native, revert)
    changes = detect_changes(
        policy, provisioned.attributes, reverted.attributes, EntitlementCatalog()
    )
    assert changes.is_empty
