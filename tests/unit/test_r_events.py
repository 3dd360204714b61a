"""Rules R6-R9 and R11-R14: monitoring, the three events, change types, order, refs, identity."""

from __future__ import annotations

from typing import Any

import pytest

from processor import codec
from processor.core import EntitlementCatalog, SourcePolicy, decide_event, system_identity_id
from processor.models import (
    AccountCreatedEvent,
    AccountDeletedEvent,
    AccountUpdatedEvent,
    CatalogEntry,
    ChangeType,
    Operation,
    SourceDescriptor,
    event_class,
)
from tests.helpers import event_model
from tests.unit.conftest import (
    ANN_IDENTITY,
    SOURCE_ID,
    dump,
    make_account,
    make_catalog,
    make_policy,
    make_source,
    update_event,
)

BEFORE = {"title": "Manager", "department": "Sales", "memberOf": ["CN=A"], "profile": "basic"}
AFTER = {"title": "Lead", "department": "Support", "memberOf": ["CN=B"], "profile": "admin"}


def changed_names(event: Any) -> list[str]:
    """Names of every attribute an event reports."""
    data = dump(event)
    assert data is not None
    return (
        [c["name"] for c in data["singleValueAttributeChanges"]]
        + [c["name"] for c in data["multiValueAttributeChanges"]]
        + [c["attributeName"] for c in data["entitlementChanges"]]
    )


# --------------------------------------------------------------------------- R6


def test_r6_disabled_source_gives_no_events() -> None:
    """enabled: false gives no event for any operation."""
    policy = make_policy(enabled=False)
    account = make_account(attributes=AFTER)
    catalog = EntitlementCatalog()
    assert decide_event(policy, make_account(attributes=BEFORE), account, catalog) is None
    assert decide_event(policy, None, account, catalog) is None
    assert decide_event(policy, account, None, catalog) is None
    assert not policy.operation_monitored(Operation.ACCOUNT_UPDATED)


def test_r6_all_flags_monitor_every_attribute() -> None:
    """allEntitlements and allNonEntitlementAttributes monitor everything."""
    assert changed_names(update_event(BEFORE, AFTER)) == [
        "department",
        "title",
        "memberOf",
        "profile",
    ]


def test_r6_selected_lists_monitor_only_the_named_attributes() -> None:
    """Without the all-flags, only the selected attributes of each class are monitored."""
    event = update_event(
        BEFORE,
        AFTER,
        all_entitlements=False,
        all_others=False,
        selected_entitlements=["profile"],
        selected_others=["title"],
    )
    assert changed_names(event) == ["title", "profile"]


def test_r6_selection_is_per_class() -> None:
    """An entitlement named only in the non-entitlement selection is not monitored."""
    event = update_event(
        BEFORE,
        AFTER,
        all_entitlements=False,
        all_others=False,
        selected_others=["memberOf", "title"],
    )
    assert changed_names(event) == ["title"]


def test_r6_config_defaults_monitor_nothing() -> None:
    """The API defaults (false / empty) monitor no operation and no attribute."""
    document = make_source().model_dump()
    del document["nativeChangeDetectionConfig"]
    policy = SourcePolicy.from_source(SourceDescriptor.model_validate(document))
    event = decide_event(
        policy,
        make_account(attributes=BEFORE),
        make_account(attributes=AFTER),
        EntitlementCatalog(),
    )
    assert event is None
    assert not policy.monitored("title", policy.kind("title", None, None))


# --------------------------------------------------------------------------- R7


def test_r7_update_lists_only_changed_monitored_attributes() -> None:
    """Unchanged and unmonitored attributes are left out of ACCOUNT_UPDATED."""
    event = update_event(
        {"title": "A", "department": "D", "memberOf": ["CN=A"]},
        {"title": "B", "department": "D", "memberOf": ["CN=A"], "unwatched": "x"},
        all_others=False,
        selected_others=["title", "department"],
    )
    assert event is not None and isinstance(event_model(event), AccountUpdatedEvent)
    assert changed_names(event) == ["title"]


def test_r7_unmonitored_change_gives_no_event() -> None:
    """A change of an unmonitored attribute alone gives nothing."""
    assert update_event({"x": "1"}, {"x": "2"}, all_others=False, selected_others=["title"]) is None


def test_r7_update_operation_not_monitored_gives_no_event() -> None:
    """ACCOUNT_UPDATED needs its operation in the config."""
    assert update_event(BEFORE, AFTER, operations=["ACCOUNT_CREATED", "ACCOUNT_DELETED"]) is None


def test_r7_seed_example_shape() -> None:
    """The seed's update: title changed, one group swapped, a flag added."""
    catalog = make_catalog(
        {"value": "CN=AccountsPayable", "id": "2c9180", "name": "Accounts Payable"},
        {"value": "CN=AccountsReceivable", "id": "d04705", "name": "AccountsReceivable"},
    )
    event = dump(
        update_event(
            {"title": "Call Center Manager", "memberOf": ["CN=AccountsReceivable"]},
            {
                "title": "Call Center Representative",
                "memberOf": ["CN=AccountsPayable"],
                "accountFlags": ["User Account is Disabled"],
            },
            catalog=catalog,
        )
    )
    assert event is not None
    assert event["accountChangeTypes"] == [
        "ATTRIBUTES_CHANGED",
        "ENTITLEMENTS_ADDED",
        "ENTITLEMENTS_REMOVED",
    ]
    assert event["singleValueAttributeChanges"] == [
        {
            "name": "title",
            "oldValue": "Call Center Manager",
            "newValue": "Call Center Representative",
        }
    ]
    assert event["multiValueAttributeChanges"] == [
        {"name": "accountFlags", "addedValues": ["User Account is Disabled"], "removedValues": []}
    ]
    assert event["entitlementChanges"] == [
        {
            "attributeName": "memberOf",
            "added": [
                {
                    "id": "2c9180",
                    "name": "Accounts Payable",
                    "value": "CN=AccountsPayable",
                    "owner": None,
                }
            ],
            "removed": [
                {
                    "id": "d04705",
                    "name": "AccountsReceivable",
                    "value": "CN=AccountsReceivable",
                    "owner": None,
                }
            ],
        }
    ]


# --------------------------------------------------------------------------- R8 / R9


def test_r8_created_reports_every_monitored_value_as_new() -> None:
    """ACCOUNT_CREATED: oldValue null, only addedValues, only added; empty values left out."""
    policy = make_policy()
    account = make_account(
        attributes={
            "title": "Lead",
            "department": "",
            "accountFlags": ["b", "a"],
            "memberOf": "CN=A",
        }
    )
    event = decide_event(policy, None, account, EntitlementCatalog())
    assert event is not None and isinstance(event_model(event), AccountCreatedEvent)
    data = dump(event)
    assert data is not None
    assert data["accountChangeTypes"] == ["ATTRIBUTES_CHANGED", "ENTITLEMENTS_ADDED"]
    assert data["singleValueAttributeChanges"] == [
        {"name": "title", "oldValue": None, "newValue": "Lead"}
    ]
    assert data["multiValueAttributeChanges"] == [
        {"name": "accountFlags", "addedValues": ["a", "b"], "removedValues": []}
    ]
    assert data["entitlementChanges"][0]["removed"] == []
    assert [ref["value"] for ref in data["entitlementChanges"][0]["added"]] == ["CN=A"]


def test_r8_created_without_monitored_values_gives_no_event() -> None:
    """A new account with no monitored value (or only empty ones) gives nothing."""
    policy = make_policy(all_others=False, selected_others=["title"])
    catalog = EntitlementCatalog()
    assert decide_event(policy, None, make_account(attributes={"x": "1"}), catalog) is None
    assert decide_event(policy, None, make_account(attributes={"title": ""}), catalog) is None


def test_r8_created_needs_its_operation() -> None:
    """ACCOUNT_CREATED is only emitted when monitored."""
    policy = make_policy(operations=["ACCOUNT_UPDATED"])
    assert decide_event(policy, None, make_account(attributes=AFTER), EntitlementCatalog()) is None


def test_r9_deleted_mirrors_created() -> None:
    """ACCOUNT_DELETED: newValue null, only removedValues, only removed."""
    policy = make_policy()
    account = make_account(attributes={"title": "Lead", "accountFlags": "x", "memberOf": ["CN=A"]})
    event = decide_event(policy, account, None, EntitlementCatalog())
    assert event is not None and isinstance(event_model(event), AccountDeletedEvent)
    data = dump(event)
    assert data is not None
    assert data["accountChangeTypes"] == ["ATTRIBUTES_CHANGED", "ENTITLEMENTS_REMOVED"]
    assert data["singleValueAttributeChanges"] == [
        {"name": "title", "oldValue": "Lead", "newValue": None}
    ]
    assert data["multiValueAttributeChanges"] == [
        {"name": "accountFlags", "addedValues": [], "removedValues": ["x"]}
    ]
    assert data["entitlementChanges"][0]["added"] == []


def test_r9_deleted_needs_its_operation_and_a_value() -> None:
    """No ACCOUNT_DELETED when the operation is off or nothing monitored had a value."""
    catalog = EntitlementCatalog()
    off = make_policy(operations=["ACCOUNT_UPDATED", "ACCOUNT_CREATED"])
    assert decide_event(off, make_account(attributes=BEFORE), None, catalog) is None
    assert (
        decide_event(make_policy(), make_account(attributes={"title": None}), None, catalog) is None
    )


# --------------------------------------------------------------------------- R11


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({"title": "a"}, {"title": "b"}, [ChangeType.ATTRIBUTES_CHANGED]),
        ({"accountFlags": "a"}, {"accountFlags": "b"}, [ChangeType.ATTRIBUTES_CHANGED]),
        ({}, {"memberOf": "CN=A"}, [ChangeType.ENTITLEMENTS_ADDED]),
        ({"memberOf": "CN=A"}, {}, [ChangeType.ENTITLEMENTS_REMOVED]),
        (
            {"memberOf": "CN=A", "title": "a"},
            {"memberOf": "CN=B", "title": "b"},
            [
                ChangeType.ATTRIBUTES_CHANGED,
                ChangeType.ENTITLEMENTS_ADDED,
                ChangeType.ENTITLEMENTS_REMOVED,
            ],
        ),
        ({"profile": "x"}, {"profile": "y", "accountFlags": "f"}, list(ChangeType)),
    ],
)
def test_r11_change_types_follow_the_changes_in_order(
    before: dict[str, Any], after: dict[str, Any], expected: list[ChangeType]
) -> None:
    """ATTRIBUTES_CHANGED, ENTITLEMENTS_ADDED, ENTITLEMENTS_REMOVED: present when due, in order."""
    event = update_event(before, after)
    assert event is not None
    assert event_model(event).accountChangeTypes == expected


# --------------------------------------------------------------------------- R12


def test_r12_change_lists_are_sorted_by_name() -> None:
    """Every change list is sorted by name / attributeName whatever the attribute order."""
    names = ["zeta", "alpha", "Mid", "beta"]
    schema = [{"name": f"e{n}", "isEntitlement": True, "isMulti": True} for n in names]
    before = (
        {n: "1" for n in names} | {f"l{n}": ["1"] for n in names} | {f"e{n}": "1" for n in names}
    )
    after = {n: "2" for n in reversed(names)} | {f"l{n}": ["2"] for n in names}
    after |= {f"e{n}": "2" for n in names}
    data = dump(update_event(before, after, schema=schema))
    assert data is not None
    singles = [c["name"] for c in data["singleValueAttributeChanges"]]
    multis = [c["name"] for c in data["multiValueAttributeChanges"]]
    ents = [c["attributeName"] for c in data["entitlementChanges"]]
    assert singles == sorted(names)
    assert multis == sorted(f"l{n}" for n in names)
    assert ents == sorted(f"e{n}" for n in names)


def test_r12_same_inputs_give_the_same_event_and_id() -> None:
    """The event, its id included, is a function of the inputs and the context."""
    first = update_event(BEFORE, AFTER)
    second = update_event(dict(reversed(BEFORE.items())), dict(reversed(AFTER.items())))
    assert first is not None and second is not None
    assert first == second
    assert codec.dumps(first.body) == codec.dumps(second.body)
    policy = make_policy()
    previous, current = make_account(attributes=BEFORE), make_account(attributes=AFTER)
    catalog = EntitlementCatalog()
    one = decide_event(policy, previous, current, catalog, context="agg-1")
    other = decide_event(policy, previous, current, catalog, context="agg-2")
    assert one is not None and other is not None
    assert one.id != other.id
    assert one.id != first.id
    assert {**one.body, "id": ""} == {**other.body, "id": ""}


def test_r12_different_changes_give_different_ids() -> None:
    """Two events that differ in a change have different ids."""
    one = update_event({"title": "a"}, {"title": "b"})
    other = update_event({"title": "a"}, {"title": "c"})
    assert one is not None and other is not None
    assert one.id != other.id


def test_r12_events_validate_against_their_models() -> None:
    """Events built as plain data pass the models' own validation and dump back the same."""
    event = update_event(BEFORE, AFTER)
    assert event is not None
    model = event_class(event.operation).model_validate(event.body)
    assert codec.dumps(model.model_dump(mode="json")) == codec.dumps(event.body)


# --------------------------------------------------------------------------- R13


def test_r13_catalog_hit_gives_the_catalog_ref() -> None:
    """A value in the catalog gives its id, name and owner."""
    catalog = make_catalog(
        {"value": "CN=A", "id": "ent-a", "name": "Group A", "owner": {"id": "o1", "name": "Olga"}}
    )
    data = dump(update_event({}, {"memberOf": "CN=A"}, catalog=catalog))
    assert data is not None
    assert data["entitlementChanges"][0]["added"] == [
        {
            "id": "ent-a",
            "name": "Group A",
            "value": "CN=A",
            "owner": {"id": "o1", "name": "Olga", "type": "IDENTITY"},
        }
    ]


def test_r13_catalog_miss_gives_a_ref_named_after_the_value() -> None:
    """A value missing from the catalog gives id null, name = value, owner null."""
    catalog = make_catalog({"value": "CN=A", "id": "ent-a", "name": "Group A"})
    ref = catalog.ref("memberOf", "CN=B", case_insensitive=False)
    assert ref == {"id": None, "name": "CN=B", "value": "CN=B", "owner": None}
    assert catalog.ref("other", "CN=A", case_insensitive=False)["id"] is None


def test_r13_catalog_matches_case_insensitively_only_when_the_source_does() -> None:
    """A differently cased value hits only for caseInsensitive sources; exact hits win."""
    catalog = make_catalog(
        {"value": "CN=A", "id": "upper", "name": "A"}, {"value": "cn=a", "id": "lower", "name": "a"}
    )
    assert catalog.ref("memberOf", "Cn=A", case_insensitive=False)["id"] is None
    assert catalog.ref("memberOf", "Cn=A", case_insensitive=True)["id"] == "upper"
    assert catalog.ref("memberOf", "cn=a", case_insensitive=True)["id"] == "lower"


def test_r13_catalog_follows_put_and_remove() -> None:
    """put replaces an entry, remove forgets it (and its folded alias)."""
    catalog = make_catalog({"value": "CN=A", "id": "v1", "name": "A"})
    catalog.put(CatalogEntry(attribute="memberOf", value="CN=A", id="v2", name="A2"))
    catalog.put(CatalogEntry(attribute="memberOf", value="cn=b", id="b"))
    assert catalog.ref("memberOf", "CN=A", case_insensitive=False)["id"] == "v2"
    assert catalog.ref("memberOf", "CN=B", case_insensitive=True)["name"] == "CN=B"
    catalog.remove("memberOf", "CN=A")
    catalog.remove("memberOf", "CN=missing")
    assert catalog.ref("memberOf", "cn=a", case_insensitive=True)["id"] is None
    assert len(catalog) == 1


def test_r13_refs_asked_before_a_put_or_remove_follow_it() -> None:
    """A ref asked for, then changed by put or remove, is given as the catalog now says."""
    catalog = make_catalog({"value": "CN=A", "id": "v1", "name": "A"})
    assert catalog.ref("memberOf", "CN=A", case_insensitive=False)["id"] == "v1"
    assert catalog.ref("memberOf", "cn=b", case_insensitive=True)["id"] is None
    catalog.put(CatalogEntry(attribute="memberOf", value="CN=A", id="v2", name="A2"))
    catalog.put(CatalogEntry(attribute="memberOf", value="CN=B", id="b"))
    assert catalog.ref("memberOf", "CN=A", case_insensitive=False)["id"] == "v2"
    assert catalog.ref("memberOf", "cn=b", case_insensitive=True)["id"] == "b"
    catalog.remove("memberOf", "CN=A")
    assert catalog.ref("memberOf", "CN=A", case_insensitive=False)["id"] is None


# --------------------------------------------------------------------------- R14


def test_r14_correlated_account_carries_its_identity() -> None:
    """The identity and manager come from the account; correlated defaults to true."""
    policy = make_policy()
    account = make_account(
        attributes=AFTER, identity=ANN_IDENTITY, id="acc-1", uuid="{u-1}", name="Ann"
    )
    event = decide_event(policy, None, account, EntitlementCatalog())
    assert event is not None
    data = dump(event)
    assert data is not None
    assert data["identity"] == {
        "id": ANN_IDENTITY["id"],
        "name": "Ann English",
        "alias": "Ann.English",
        "type": "IDENTITY",
        "email": "",
        "manager": {
            "id": ANN_IDENTITY["manager"]["id"],
            "name": "Martena Heath",
            "type": "IDENTITY",
            "email": "",
        },
    }
    assert data["account"] == {
        "id": "acc-1",
        "name": "Ann",
        "type": "ACCOUNT",
        "uuid": "{u-1}",
        "correlated": True,
        "nativeIdentity": account.nativeIdentity,
    }
    assert data["source"] == {
        "id": SOURCE_ID,
        "name": "Active Directory",
        "alias": "Active Directory [source]",
        "type": "SOURCE",
        "owner": {
            "id": "2c9180867a7c46d0017a7ca099d50531",
            "name": "Aaron Andrew",
            "type": "IDENTITY",
            "email": "",
        },
        "governanceGroup": {"id": "fd0d1393", "name": "AD Owners", "type": "GOVERNANCE_GROUP"},
    }


def test_r14_uncorrelated_account_gets_a_deterministic_system_identity() -> None:
    """No identity: correlated false and a placeholder derived from source and uuid."""
    policy = make_policy()
    account = make_account(attributes={"title": "x"}, uuid="{u-9}", correlated=True)
    event = decide_event(policy, None, account, EntitlementCatalog())
    assert event is not None
    model = event_model(event)
    assert model.account.correlated is False
    assert model.identity.id == system_identity_id(SOURCE_ID, account)
    assert len(model.identity.id) == 32
    assert model.identity.id == model.identity.id.lower()
    int(model.identity.id, 16)
    assert model.identity.manager is None and model.identity.email is None
    renamed = make_account("CN=Other", attributes={"title": "x"}, uuid="{u-9}")
    assert system_identity_id(SOURCE_ID, renamed) == model.identity.id
    assert system_identity_id(SOURCE_ID, make_account("CN=Other")) != model.identity.id


def test_r14_account_name_falls_back_to_display_attribute_then_native_identity() -> None:
    """account.name, else the display attribute's string value, else nativeIdentity."""
    policy = make_policy()
    catalog = EntitlementCatalog()
    with_display = make_account("CN=D", attributes={"sAMAccountName": "dee", "title": "t"})
    event = decide_event(policy, None, with_display, catalog)
    assert event is not None
    model = event_model(event)
    assert (model.account.name, model.identity.name, model.identity.alias) == ("dee", "dee", "dee")
    bare = make_account("CN=E", attributes={"sAMAccountName": ["list"], "title": "t"})
    event = decide_event(policy, None, bare, catalog)
    assert event is not None
    model = event_model(event)
    assert model.account.name == "CN=E"


def test_r14_explicit_correlated_flag_is_kept() -> None:
    """An identity with correlated: false stays uncorrelated."""
    account = make_account(attributes={"title": "x"}, identity=ANN_IDENTITY, correlated=False)
    event = decide_event(make_policy(), None, account, EntitlementCatalog())
    assert event is not None
    model = event_model(event)
    assert model.account.correlated is False
    assert model.identity.id == ANN_IDENTITY["id"]


def test_r14_deletion_takes_identity_from_previous_update_from_current() -> None:
    """Deleted events describe the previous account; updates the current one."""
    policy = make_policy()
    catalog = EntitlementCatalog()
    old = make_account("CN=Old", attributes={"title": "a"}, uuid="u", identity=ANN_IDENTITY)
    new = make_account("CN=New", attributes={"title": "b"}, uuid="u")
    deleted = decide_event(policy, old, None, catalog)
    updated = decide_event(policy, old, new, catalog)
    assert deleted is not None and updated is not None
    deleted_model, updated_model = event_model(deleted), event_model(updated)
    assert deleted_model.identity.id == ANN_IDENTITY["id"]
    assert deleted_model.account.nativeIdentity == "CN=Old"
    assert updated_model.account.nativeIdentity == "CN=New"
    assert updated_model.account.correlated is False


def test_an_event_holds_its_own_list_values() -> None:
    """A single-valued change's list values are the event's own copies: changing the accounts'
    lists after the event was built leaves the event (and its id's body) as it was."""
    before = make_account(attributes={"title": ["a", "b"]})
    after = make_account(attributes={"title": ["c"]})
    event = decide_event(make_policy(), before, after, EntitlementCatalog())
    assert event is not None
    written = codec.dumps(event.body)
    before.attributes["title"].append("x")  # type: ignore[union-attr]
    after.attributes["title"].append("y")  # type: ignore[union-attr]
    assert codec.dumps(event.body) == written
