"""Property tests of the core: no-op diffs, reproducible changes, order independence, no crash."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.core import (
    EntitlementCatalog,
    SourcePolicy,
    apply_provisioning,
    decide_event,
    detect_changes,
    diff_snapshots,
)
from processor.errors import InputError
from processor.models import (
    Account,
    AccountEvent,
    CatalogEntry,
    ProvisioningRecord,
    SourceDescriptor,
)
from tests.unit.conftest import ALL_OPERATIONS, SCHEMA, SOURCE_ID, make_account, make_source

PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

ENTITLEMENTS = ["memberOf", "profile"]
OTHERS = [
    "title",
    "department",
    "employeeNumber",
    "logonCount",
    "active",
    "hireDate",
    "accountFlags",
    "extra",
    "groups",
]
TEXTS = st.sampled_from(
    [
        *["a", "A", "b", "B", "5", "5.0", "6", " 5 ", "true", "TRUE", "false", "x y", ""],
        *["2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", "2026-01-02", "CN=A", "cn=a"],
    ]
)
FINITE_SCALARS = st.one_of(
    st.none(),
    TEXTS,
    st.integers(-3, 7),
    st.booleans(),
    st.sampled_from([5.0, 0.5, -0.0]),
)
#: Anything JSON can carry (so no NaN or infinity).
ANY_SCALARS = st.one_of(
    FINITE_SCALARS,
    st.text(max_size=8),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)
MOSTLY_TRUE = st.sampled_from([True, True, False])
ENTITLEMENT_SCALARS = st.one_of(st.none(), st.sampled_from(["CN=A", "cn=a", "CN=B", "CN=C", ""]))


def values(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An attribute value: a scalar or a short list of scalars."""
    return st.one_of(scalars, st.lists(scalars, max_size=4))


@st.composite
def attribute_maps(
    draw: st.DrawFn, scalars: st.SearchStrategy[Any] = FINITE_SCALARS
) -> dict[str, Any]:
    """Attributes of one account: entitlements hold strings, the others anything."""
    result: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(OTHERS + ENTITLEMENTS), unique=True, max_size=6)):
        pool = values(ENTITLEMENT_SCALARS) if name in ENTITLEMENTS else values(scalars)
        result[name] = draw(pool)
    return result


@st.composite
def sources(draw: st.DrawFn, *, updates: bool = False) -> SourceDescriptor:
    """A source with a random NCD config (updates monitored and enabled when asked)."""
    operations = draw(
        st.one_of(st.just(ALL_OPERATIONS), st.lists(st.sampled_from(ALL_OPERATIONS), unique=True))
    )
    if updates and "ACCOUNT_UPDATED" not in operations:
        operations = [*operations, "ACCOUNT_UPDATED"]
    return make_source(
        enabled=updates or draw(MOSTLY_TRUE),
        operations=operations,
        all_entitlements=draw(MOSTLY_TRUE),
        all_others=draw(MOSTLY_TRUE),
        selected_entitlements=draw(st.lists(st.sampled_from(ENTITLEMENTS), unique=True)),
        selected_others=draw(st.lists(st.sampled_from(OTHERS), unique=True)),
        case_insensitive=draw(st.booleans()),
        delete_threshold=draw(st.sampled_from([None, 0, 10, 50, 100])),
    )


@st.composite
def snapshots(draw: st.DrawFn, scalars: st.SearchStrategy[Any] = FINITE_SCALARS) -> list[Account]:
    """Accounts with distinct (case-folded) nativeIdentities and distinct uuids."""
    names = draw(
        st.lists(
            st.sampled_from(["CN=Ann", "CN=Bob", "CN=Cy", "CN=Dee", "CN=Eve", "CN=Fay"]),
            unique=True,
            max_size=5,
        )
    )
    accounts = []
    for name in names:
        uuid = draw(st.sampled_from([None, "u1", "u2", "u3", "u4", "u5", "u6"]))
        identity = draw(st.sampled_from([None, {"id": "i1", "name": "Ann", "manager": None}]))
        accounts.append(
            make_account(
                draw(st.sampled_from([name, name.upper()])),
                draw(attribute_maps(scalars)),
                uuid=uuid,
                identity=identity,
            )
        )
    seen: set[str] = set()
    unique = []
    for account in accounts:
        if account.uuid is None or account.uuid not in seen:
            seen.add(account.uuid or "")
            unique.append(account)
    return unique


@st.composite
def provisioning_records(draw: st.DrawFn) -> list[ProvisioningRecord]:
    """Records of Set/Add/Remove changes (or complete outputs) for the snapshot's names."""
    records = []
    for _ in range(draw(st.integers(0, 4))):
        change = {
            "op": draw(st.sampled_from(["Set", "Add", "Remove"])),
            "attribute": draw(st.sampled_from(OTHERS + ENTITLEMENTS)),
            "value": draw(values(FINITE_SCALARS)),
        }
        output = draw(st.sampled_from([{}, {"attributes": {"title": "out"}, "disabled": True}]))
        records.append(
            ProvisioningRecord.model_validate(
                {
                    "sourceId": draw(st.sampled_from([SOURCE_ID, "other"])),
                    "input": {
                        "key": {"simple": {"id": draw(st.sampled_from(["CN=Ann", "cn=bob"]))}},
                        "changes": [change],
                    },
                    "output": output,
                    "completedAt": draw(
                        st.sampled_from(
                            [
                                None,
                                "2026-01-01T00:00:00Z",
                                "2026-01-01T01:00:00+01:00",
                                "2026-01-01T00:00:00.1234567Z",
                            ]
                        )
                    ),
                    "status": draw(st.sampled_from(["COMPLETED", "PENDING"])),
                }
            )
        )
    return records


CATALOG = EntitlementCatalog(
    [
        CatalogEntry(attribute="memberOf", value="CN=A", id="ea", name="A"),
        CatalogEntry(attribute="profile", value="CN=B", id="eb", name="B"),
    ]
)


def dumps(events: list[AccountEvent]) -> bytes:
    """Events as the bytes ``diff`` would write (one JSON document per line)."""
    return b"".join(event.model_dump_json().encode() + b"\n" for event in events)


def assert_ordered(policy: SourcePolicy, event: AccountEvent) -> None:
    """R5/R12: change lists sorted by name, values ascending by their normalised keys."""
    names = [c.name for c in event.singleValueAttributeChanges]
    assert names == sorted(names)
    names = [c.name for c in event.multiValueAttributeChanges]
    assert names == sorted(names)
    names = [c.attributeName for c in event.entitlementChanges]
    assert names == sorted(names)
    for multi in event.multiValueAttributeChanges:
        key = policy.normaliser(multi.name)
        for found in (multi.addedValues, multi.removedValues):
            assert [key(v) for v in found] == sorted({key(v) for v in found})
    for ent in event.entitlementChanges:
        key = policy.normaliser(ent.attributeName)
        for refs in (ent.added, ent.removed):
            assert [key(r.value) for r in refs] == sorted({key(r.value) for r in refs})


def reverting_changes(event: AccountEvent) -> list[dict[str, Any]]:
    """The reported changes of an event as provisioning changes (Remove before Add)."""
    changes: list[dict[str, Any]] = [
        {"op": "Set", "attribute": c.name, "value": c.newValue}
        for c in event.singleValueAttributeChanges
    ]
    for multi in event.multiValueAttributeChanges:
        changes.append({"op": "Remove", "attribute": multi.name, "value": multi.removedValues})
        changes.append({"op": "Add", "attribute": multi.name, "value": multi.addedValues})
    for ent in event.entitlementChanges:
        changes.append(
            {
                "op": "Remove",
                "attribute": ent.attributeName,
                "value": [r.value for r in ent.removed],
            }
        )
        changes.append(
            {"op": "Add", "attribute": ent.attributeName, "value": [r.value for r in ent.added]}
        )
    return changes


@PROPERTY_SETTINGS
@given(source=sources(), accounts=snapshots())
def test_identical_snapshots_give_no_events(
    source: SourceDescriptor, accounts: list[Account]
) -> None:
    """Diffing a snapshot against itself (or a re-parsed copy of it) gives no event."""
    copy = [
        Account.model_validate_json(account.model_dump_json()) for account in reversed(accounts)
    ]
    result = diff_snapshots(source, accounts, copy, CATALOG)
    assert result.events == []
    assert result.would_delete == 0 and not result.deletes_suppressed


@PROPERTY_SETTINGS
@given(source=sources(updates=True), before=attribute_maps(), after=attribute_maps())
def test_applying_reported_changes_reproduces_the_monitored_current_state(
    source: SourceDescriptor, before: dict[str, Any], after: dict[str, Any]
) -> None:
    """Applying an update's reported changes to the previous account leaves no monitored change."""
    policy = SourcePolicy.from_source(source)
    previous = make_account("CN=Ann", before)
    current = make_account("CN=Ann", after)
    event = decide_event(policy, previous, current, CATALOG)
    if event is not None:
        assert_ordered(policy, event)
    if event is None:
        assert detect_changes(policy, before, after, CATALOG).is_empty
        return
    record = ProvisioningRecord.model_validate(
        {
            "sourceId": SOURCE_ID,
            "input": {"identity": "CN=Ann", "changes": reverting_changes(event)},
        }
    )
    rebuilt = apply_provisioning(policy, previous, record)
    assert detect_changes(policy, rebuilt.attributes, after, CATALOG).is_empty
    assert detect_changes(policy, after, rebuilt.attributes, CATALOG).is_empty


@PROPERTY_SETTINGS
@given(
    source=sources(),
    previous=snapshots(),
    current=snapshots(),
    records=provisioning_records(),
    data=st.data(),
)
def test_permuting_input_lines_changes_nothing(
    source: SourceDescriptor,
    previous: list[Account],
    current: list[Account],
    records: list[ProvisioningRecord],
    data: st.DataObject,
) -> None:
    """Any order of the snapshot and provisioning lines gives byte-identical output."""
    try:
        expected = diff_snapshots(source, previous, current, CATALOG, records)
    except InputError:
        return
    shuffled = diff_snapshots(
        source,
        data.draw(st.permutations(previous)),
        data.draw(st.permutations(current)),
        CATALOG,
        data.draw(st.permutations(records)),
    )
    assert dumps(shuffled.events) == dumps(expected.events)
    assert (shuffled.would_delete, shuffled.deletes_suppressed) == (
        expected.would_delete,
        expected.deletes_suppressed,
    )


@PROPERTY_SETTINGS
@given(
    source=sources(),
    previous=snapshots(ANY_SCALARS),
    current=snapshots(ANY_SCALARS),
    records=provisioning_records(),
    case_schema=st.sampled_from(SCHEMA),
)
def test_no_input_of_the_declared_shape_crashes_the_core(
    source: SourceDescriptor,
    previous: list[Account],
    current: list[Account],
    records: list[ProvisioningRecord],
    case_schema: dict[str, Any],
) -> None:
    """Any valid input diffs without error (or an InputError), into events the models accept."""
    try:
        result = diff_snapshots(source, previous, current, CATALOG, records)
    except InputError:
        return
    policy = SourcePolicy.from_source(source)
    for event in result.events:
        assert_ordered(policy, event)
        data = event.model_dump(mode="json")
        again = type(event).model_validate_json(json.dumps(data))
        assert again.model_dump(mode="json") == data
    for account in previous + current:
        for other in (None, *current[:1]):
            decide_event(policy, account, other, CATALOG, context=case_schema["name"])
