"""The worker's handling of provisioning records: hold, race window, pending, failed, notFound."""

from __future__ import annotations

import json
from typing import Any

from processor.state import BatchOverlay
from processor.worker.partition import PartitionProcessor, Verdict
from tests.helpers import event_model
from tests.unit.test_partition import ACCOUNTS, SRC, Partition, _source, acct, events

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-02T00:00:00Z"  # an aggregation starts
T2 = "2026-01-02T01:00:00Z"  # provisioning completes while it runs
T3 = "2026-01-03T00:00:00Z"  # the next aggregation
U4 = "CN=user4,DC=example"


def prov(
    changes: list[dict[str, Any]], completed: str | None = T2, target: str = U4, **extra: Any
) -> dict[str, Any]:
    """A provisioning record for one account of the test source."""
    record: dict[str, Any] = {
        "sourceId": SRC,
        "input": {"key": {"simple": {"id": target}}, "changes": changes},
        **extra,
    }
    if completed is not None:
        record["completedAt"] = completed
    return record


ADD_G2_SET_LEAD = [
    {"op": "Add", "attribute": "memberOf", "value": "g2"},
    {"op": "Set", "attribute": "title", "value": "Lead"},
]


def with_user4(account: dict[str, Any]) -> list[dict[str, Any]]:
    """The 20 test accounts with user4 replaced."""
    return [*ACCOUNTS[:4], account, *ACCOUNTS[5:]]


def stored_keys(p: Partition, prefix: bytes) -> list[bytes]:
    """The keys of a namespace in the partition's committed store."""
    return [key for key, _ in BatchOverlay(p.store).scan(prefix)]


# --------------------------------------------------------------------------- hold


def test_record_for_an_unknown_account_is_held_and_applied_when_it_appears() -> None:
    """A record that arrives before its account waits, then lands on the account's state."""
    p = Partition()
    [held] = p.batch(prov(ADD_G2_SET_LEAD), provisioning=True)
    assert held.verdict == Verdict.HELD
    p.aggregation("a1", T1, ACCOUNTS)  # started before the record completed: pre-change read
    assert stored_keys(p, f"h/{SRC}/".encode()) == []
    provisioned = acct(4, title="Lead", groups=("g1", "g2"))
    assert events(p.aggregation("a2", T3, with_user4(provisioned))) == []


def test_held_record_survives_a_restart_of_the_processor() -> None:
    """Held records live in the state store, so a new processor on the same store applies them."""
    p = Partition()
    p.batch(prov(ADD_G2_SET_LEAD), provisioning=True)
    p.processor = PartitionProcessor(p.registry)
    p.aggregation("a1", T1, ACCOUNTS)
    provisioned = acct(4, title="Lead", groups=("g1", "g2"))
    assert events(p.aggregation("a2", T3, with_user4(provisioned))) == []


def test_held_record_is_dropped_when_the_account_was_read_after_it_completed() -> None:
    """An aggregation that started after the change already has it: the record is moot."""
    p = Partition()
    p.batch(prov(ADD_G2_SET_LEAD, completed=T0), provisioning=True)
    p.aggregation("a1", T1, ACCOUNTS)  # reads user4 without the change: a later native revert
    assert stored_keys(p, f"h/{SRC}/".encode()) == []
    assert events(p.aggregation("a2", T3, ACCOUNTS)) == []


def test_held_records_expire_after_the_hold() -> None:
    """A record whose account never appears is dropped once aggregations pass the hold."""
    p = Partition()
    p.processor = PartitionProcessor(p.registry, hold_s=60)
    p.batch(prov(ADD_G2_SET_LEAD, completed=None, target="CN=nobody"), provisioning=True)
    assert len(stored_keys(p, f"h/{SRC}/".encode())) == 1
    p.aggregation("a1", T1, ACCOUNTS)
    assert stored_keys(p, f"h/{SRC}/".encode()) == []


# --------------------------------------------------------------------------- applied, race window


def test_race_window_hides_touched_attributes_from_an_older_aggregation() -> None:
    """An aggregation started before the change neither reports nor rolls back its attributes."""
    p = Partition()
    p.aggregation("a0", T0, ACCOUNTS)
    [applied] = p.batch(prov(ADD_G2_SET_LEAD), provisioning=True)
    assert applied.verdict == Verdict.APPLIED
    # a1 started before the provisioning completed: it read the old title and groups, plus
    # native changes on top: department (untouched) and g3 (in a touched attribute).
    native = acct(4, groups=("g1", "g3"))
    native["attributes"]["department"] = "Ops"
    outcomes = p.aggregation("a1", T1, with_user4(native))
    [event] = [event_model(e) for o in outcomes for e in o.events]
    assert [c.name for c in event.singleValueAttributeChanges] == ["department"]
    assert event.entitlementChanges == []
    # The baseline was not rolled back; the next aggregation compares normally: it reports
    # the native g3 and nothing of the platform's own change.
    latest = acct(4, title="Lead", groups=("g1", "g2", "g3"))
    latest["attributes"]["department"] = "Ops"
    [event] = [
        event_model(e) for o in p.aggregation("a2", T3, with_user4(latest)) for e in o.events
    ]
    assert event.singleValueAttributeChanges == []
    [change] = event.entitlementChanges
    assert ([r.value for r in change.added], change.removed) == (["g3"], [])


def test_after_the_race_window_attributes_compare_normally() -> None:
    """The next aggregation reports a native revert of a provisioned attribute."""
    p = Partition()
    p.aggregation("a0", T0, ACCOUNTS)
    p.batch(prov(ADD_G2_SET_LEAD), provisioning=True)
    p.aggregation("a1", T1, ACCOUNTS)
    outcomes = p.aggregation("a2", T3, ACCOUNTS)  # title and groups back to the old values
    [event] = [event_model(e) for o in outcomes for e in o.events]
    assert [(c.oldValue, c.newValue) for c in event.singleValueAttributeChanges] == [
        ("Lead", "Engineer")
    ]
    assert stored_keys(p, f"t/{SRC}/".encode()) == []


def test_record_older_than_the_stored_state_is_not_applied() -> None:
    """A change completed before the stored aggregation started is already in it."""
    p = Partition()
    p.aggregation("a0", T3, ACCOUNTS)
    [late] = p.batch(prov(ADD_G2_SET_LEAD, completed=T2), provisioning=True)
    assert late.verdict == Verdict.IGNORED


# --------------------------------------------------------------------------- pending, failed


def test_pending_changes_shown_by_an_aggregation_are_absorbed() -> None:
    """An aggregation showing exactly a PENDING record's changes reports only the rest."""
    p = Partition()
    p.aggregation("a0", T0, ACCOUNTS)
    [held] = p.batch(prov(ADD_G2_SET_LEAD, status="PENDING"), provisioning=True)
    assert held.verdict == Verdict.HELD
    shown = acct(4, title="Lead", groups=("g1", "g2"), name="renamed-display")
    shown["attributes"]["department"] = "Ops"
    outcomes = p.aggregation("a1", T1, with_user4(shown))
    [event] = [event_model(e) for o in outcomes for e in o.events]
    assert [c.name for c in event.singleValueAttributeChanges] == ["department"]
    assert event.entitlementChanges == []
    assert stored_keys(p, f"q/{SRC}/".encode()) == []


def test_pending_changes_not_shown_exactly_are_reported() -> None:
    """A title that differs from the pending one is a native change, reported in full."""
    p = Partition()
    p.aggregation("a0", T0, ACCOUNTS)
    p.batch(prov(ADD_G2_SET_LEAD, status="PENDING"), provisioning=True)
    outcomes = p.aggregation("a1", T1, with_user4(acct(4, title="Other", groups=("g1", "g2"))))
    [event] = [event_model(e) for o in outcomes for e in o.events]
    assert [c.name for c in event.singleValueAttributeChanges] == ["title"]
    assert [r.value for c in event.entitlementChanges for r in c.added] == ["g2"]


def test_failed_record_withdraws_the_pending_one() -> None:
    """After FAILED, the declared changes showing up are native and reported."""
    p = Partition()
    p.aggregation("a0", T0, ACCOUNTS)
    p.batch(prov(ADD_G2_SET_LEAD, status="PENDING"), provisioning=True)
    [failed] = p.batch(prov(ADD_G2_SET_LEAD, status="FAILED"), provisioning=True)
    assert failed.verdict == Verdict.IGNORED
    assert stored_keys(p, f"q/{SRC}/".encode()) == []
    outcomes = p.aggregation("a1", T1, with_user4(acct(4, title="Lead", groups=("g1", "g2"))))
    assert events(outcomes) == [("ACCOUNT_UPDATED", U4)]


def test_record_without_status_is_completed() -> None:
    """No status means COMPLETED: the record is applied."""
    p = Partition()
    p.aggregation("a0", T0, ACCOUNTS)
    [outcome] = p.batch(prov(ADD_G2_SET_LEAD), provisioning=True)
    assert outcome.verdict == Verdict.APPLIED


# --------------------------------------------------------------------------- notFound

NOT_FOUND: dict[str, Any] = {"status": "FAILED", "error": {"type": "notFound"}}


def test_not_found_reports_the_deletion_at_once_and_only_once() -> None:
    """notFound emits ACCOUNT_DELETED now; neither a repeat nor the next FULL one repeats it."""
    p = Partition()
    p.aggregation("a0", T0, ACCOUNTS)
    [gone] = p.batch(prov(ADD_G2_SET_LEAD, **NOT_FOUND), provisioning=True)
    assert [(e.operation, e.native_identity) for e in gone.events] == [("ACCOUNT_DELETED", U4)]
    [again] = p.batch(prov(ADD_G2_SET_LEAD, **NOT_FOUND), provisioning=True)
    assert again.verdict == Verdict.IGNORED and again.events == []
    without = [a for a in ACCOUNTS if a["nativeIdentity"] != U4]
    assert events(p.aggregation("a1", T3, without)) == []


def test_older_aggregation_cannot_bring_a_not_found_account_back() -> None:
    """Records of an aggregation that started before the notFound answer do not recreate it."""
    p = Partition()
    p.aggregation("a0", T0, ACCOUNTS)
    p.batch(prov(ADD_G2_SET_LEAD, **NOT_FOUND), provisioning=True)
    assert events(p.aggregation("a1", T1, ACCOUNTS)) == []
    assert events(p.aggregation("a2", T3, [a for a in ACCOUNTS if a["nativeIdentity"] != U4])) == []


def test_not_found_without_a_monitored_delete_drops_the_account_silently() -> None:
    """When ACCOUNT_DELETED is not monitored no event is emitted, and none comes later."""
    source = _source()
    config = source.nativeChangeDetectionConfig.model_copy(update={"operations": []})
    p = Partition(source.model_copy(update={"nativeChangeDetectionConfig": config}))
    p.aggregation("a0", T0, ACCOUNTS)
    [gone] = p.batch(prov(ADD_G2_SET_LEAD, **NOT_FOUND), provisioning=True)
    assert gone.events == [] and gone.verdict == Verdict.APPLIED


# --------------------------------------------------------------------------- remediation


def test_native_events_carry_remediation_when_the_source_asks() -> None:
    """A source with remediation gets one command per native event; others get none."""
    asking = Partition(_source(remediation={"mode": "propose", "revert": ["ENTITLEMENTS_ADDED"]}))
    silent = Partition()
    changed = with_user4(acct(4, title="Boss", groups=("g1", "g9")))
    for p in (asking, silent):
        p.aggregation("a0", T0, ACCOUNTS)
    [emitted] = [o for o in asking.aggregation("a1", T1, changed) if o.events]
    [command] = emitted.remediations
    assert command.eventId == emitted.events[0].id
    assert [c.model_dump(mode="json") for c in command.input.changes] == [
        {"op": "Remove", "attribute": "memberOf", "value": "g9"}
    ]
    assert all(not o.remediations for o in silent.aggregation("a1", T1, changed))


# --------------------------------------------------------------------------- what is looked up

NEW = "CN=user99,DC=example"
T1B = "2026-01-02T00:30:00Z"  # another aggregation starts, still before the record completed


def marker(agg: str, started: str | None = None) -> dict[str, Any]:
    """The start (with ``started``) or the completion of a DELTA aggregation."""
    base = {"sourceId": SRC, "aggregationId": agg}
    if started is None:
        return {"type": "aggregation.completed", **base, "status": "COMPLETED"}
    return {"type": "aggregation.started", **base, "startedAt": started, "mode": "DELTA"}


def test_held_record_whose_expiry_aborted_is_still_applied() -> None:
    """A batch that dropped an expired held record but never committed leaves it in force."""
    p = Partition()
    p.processor = PartitionProcessor(p.registry, hold_s=60)
    p.aggregation("a0", T0, ACCOUNTS)
    p.batch(prov(ADD_G2_SET_LEAD, target=NEW), provisioning=True)
    aborted = BatchOverlay(p.store)
    p.processor.begin_batch()
    for record in (marker("a9", T3), marker("a9")):
        p.processor.process(json.dumps(record).encode(), aborted)
    assert [key for key, _ in aborted.scan(f"h/{SRC}/".encode())] == []  # expired there
    p.aggregation("a1", T1, [*ACCOUNTS, acct(99)])  # read before the record completed
    provisioned = acct(99, title="Lead", groups=("g1", "g2"))
    assert events(p.aggregation("a2", T3, [*ACCOUNTS, provisioned])) == []


def test_held_record_after_the_partition_looked_for_held_ones_is_applied() -> None:
    """A record held after created accounts were already checked for held records applies."""
    p = Partition()
    p.aggregation("a0", T0, ACCOUNTS)
    p.aggregation("a1", "2026-01-01T12:00:00Z", [*ACCOUNTS, acct(98)])  # a created account
    p.batch(prov(ADD_G2_SET_LEAD, target=NEW), provisioning=True)
    p.aggregation("a2", T1, [*ACCOUNTS, acct(98), acct(99)])
    provisioned = acct(99, title="Lead", groups=("g1", "g2"))
    assert events(p.aggregation("a3", T3, [*ACCOUNTS, acct(98), provisioned])) == []


def test_pending_record_after_the_partition_looked_for_pending_ones_is_absorbed() -> None:
    """A PENDING record that comes after changed accounts were checked for one is absorbed."""
    p = Partition()
    p.aggregation("a0", T0, ACCOUNTS)
    assert events(p.aggregation("a1", T1, with_user4(acct(4, title="Boss")))) != []
    p.batch(prov(ADD_G2_SET_LEAD, status="PENDING"), provisioning=True)
    shown = acct(4, title="Lead", groups=("g1", "g2"))
    assert events(p.aggregation("a2", T3, with_user4(shown))) == []


def test_race_window_follows_an_account_that_gains_a_uuid() -> None:
    """A window opened on an account stored by nativeIdentity still shields it by uuid."""
    p = Partition()
    p.aggregation("a0", T0, with_user4({k: v for k, v in acct(4).items() if k != "uuid"}))
    p.batch(prov(ADD_G2_SET_LEAD), provisioning=True)  # applied: the window opens
    p.batch(marker("a1", T1), marker("a1b", T1B))  # both read user4 before the change
    read = {"type": "account", "sourceId": SRC, "account": acct(4)}  # now with its uuid
    p.batch({**read, "aggregationId": "a1"})  # stored by uuid from here on
    [outcome] = p.batch({**read, "aggregationId": "a1b"})
    assert outcome.verdict == Verdict.UNCHANGED
