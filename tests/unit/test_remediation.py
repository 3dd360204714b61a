"""Remediation commands (issue 4) and the Set / Add / Remove semantics they rely on."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core import (
    EntitlementCatalog,
    apply_provisioning,
    decide_event,
    detect_changes,
    remediation_command,
)
from processor.keys import command_key
from processor.models import AttributeValue, ChangeType, ProvisioningRecord, RemediationCommand
from tests.unit.conftest import make_account, make_policy, make_record

ANN = "CN=Ann English,OU=Call Center,DC=example,DC=com"
ALL = list(ChangeType)


def applied(start: dict[str, AttributeValue], *changes: dict[str, Any]) -> dict[str, Any]:
    """Ann's attributes after one record of changes on the default test schema."""
    account = make_account(ANN, start)
    return dict(apply_provisioning(make_policy(), account, make_record(ANN, changes)).attributes)


def command(
    previous: dict[str, AttributeValue], current: dict[str, AttributeValue], revert: Any = ALL
) -> RemediationCommand | None:
    """The remediation command of the UPDATED event between two attribute maps of Ann."""
    policy = make_policy()
    event = decide_event(
        policy,
        make_account(ANN, previous, uuid="u-1"),
        make_account(ANN, current, uuid="u-1"),
        EntitlementCatalog(),
    )
    assert event is not None
    return remediation_command(event, revert)


def changes_of(cmd: RemediationCommand | None) -> list[dict[str, Any]]:
    """A command's changes as plain data."""
    assert cmd is not None
    return [c.model_dump(mode="json") for c in cmd.input.changes]


# --------------------------------------------------------------------------- the ops, per kind


@pytest.mark.parametrize(
    ("attribute", "start", "op", "value", "result"),
    [
        # single-valued (title): Set replaces, Remove clears whatever the value given.
        ("title", {"title": "a"}, "Set", "b", "b"),
        ("title", {"title": "a"}, "Remove", "a", None),
        ("title", {"title": "a"}, "Remove", ["x", "y"], None),
        # multi-valued (accountFlags): string and list values.
        ("accountFlags", {"accountFlags": ["a", "b"]}, "Set", "c", ["c"]),
        ("accountFlags", {"accountFlags": ["a", "b"]}, "Set", ["c", "d"], ["c", "d"]),
        ("accountFlags", {"accountFlags": ["a"]}, "Add", "b", ["a", "b"]),
        ("accountFlags", {"accountFlags": ["a"]}, "Add", ["b", "c"], ["a", "b", "c"]),
        ("accountFlags", {"accountFlags": ["a", "b", "c"]}, "Remove", "b", ["a", "c"]),
        ("accountFlags", {"accountFlags": ["a", "b", "c"]}, "Remove", ["a", "c"], ["b"]),
        # multi-valued entitlement (memberOf).
        ("memberOf", {"memberOf": ["g1", "g2"]}, "Set", ["g3"], ["g3"]),
        ("memberOf", {"memberOf": ["g1"]}, "Add", "g2", ["g1", "g2"]),
        ("memberOf", {"memberOf": ["g1"]}, "Add", ["g2", "g3"], ["g1", "g2", "g3"]),
        ("memberOf", {"memberOf": ["g1", "g2"]}, "Remove", "g1", ["g2"]),
        ("memberOf", {"memberOf": ["g1", "g2"]}, "Remove", ["g1", "g2"], []),
        # single-valued entitlement (profile): Set replaces, Remove clears, Add adds.
        ("profile", {"profile": "p1"}, "Set", "p2", "p2"),
        ("profile", {"profile": "p1"}, "Remove", "p1", None),
        ("profile", {"profile": "p1"}, "Add", "p2", ["p1", "p2"]),
        # outside the schema: Add is list-wise even on a scalar, Remove of the value clears.
        ("extra", {"extra": "a"}, "Add", "b", ["a", "b"]),
        ("extra", {"extra": "a"}, "Remove", "a", None),
    ],
)
def test_each_op_on_each_kind_with_string_or_list_values(
    attribute: str, start: dict[str, AttributeValue], op: str, value: Any, result: Any
) -> None:
    """Set / Add / Remove follow the seed on single, multi and entitlement attributes."""
    change = {"op": op, "attribute": attribute, "value": value}
    assert applied(start, change)[attribute] == result


def test_complete_output_wins_and_empty_output_applies_the_changes() -> None:
    """A complete output replaces the attributes; `{}` means the input changes apply."""
    account = make_account(ANN, {"title": "a", "memberOf": ["g1"]})
    set_title = [{"op": "Set", "attribute": "title", "value": "b"}]
    complete = make_record(ANN, set_title, output={"attributes": {"title": "c", "memberOf": []}})
    empty = make_record(ANN, set_title, output={})
    policy = make_policy()
    assert apply_provisioning(policy, account, complete).attributes == {
        "title": "c",
        "memberOf": [],
    }
    assert apply_provisioning(policy, account, empty).attributes == {
        "title": "b",
        "memberOf": ["g1"],
    }


# --------------------------------------------------------------------------- commands


def test_command_reverts_single_multi_and_entitlement_changes() -> None:
    """Set the old single value, Remove added values, Add removed ones, sorted by attribute."""
    cmd = command(
        {"title": "a", "accountFlags": ["f1"], "memberOf": ["g1", "g2"]},
        {"title": "b", "accountFlags": ["f2", "f3"], "memberOf": ["g2", "g3"]},
    )
    assert changes_of(cmd) == [
        {"op": "Remove", "attribute": "accountFlags", "value": ["f2", "f3"]},
        {"op": "Add", "attribute": "accountFlags", "value": "f1"},
        {"op": "Remove", "attribute": "memberOf", "value": "g3"},
        {"op": "Add", "attribute": "memberOf", "value": "g1"},
        {"op": "Set", "attribute": "title", "value": "a"},
    ]
    assert cmd is not None and cmd.input.key.simple.id == ANN
    assert command_key(cmd) == f"{cmd.sourceId}/u-1".encode()


def test_command_removes_a_single_value_that_was_not_there_before() -> None:
    """A single-valued attribute that had no value is reverted with Remove (clears it)."""
    assert changes_of(command({}, {"title": "new"})) == [
        {"op": "Remove", "attribute": "title", "value": "new"}
    ]


def test_command_only_reverts_the_change_types_asked_for() -> None:
    """With revert [ENTITLEMENTS_ADDED], only added entitlements are taken away."""
    cmd = command(
        {"title": "a", "memberOf": ["g1"]},
        {"title": "b", "memberOf": ["g2"]},
        [ChangeType.ENTITLEMENTS_ADDED],
    )
    assert changes_of(cmd) == [{"op": "Remove", "attribute": "memberOf", "value": "g2"}]
    assert cmd is not None and cmd.accountChangeTypes == [ChangeType.ENTITLEMENTS_ADDED]
    assert command({"title": "a"}, {"title": "b"}, [ChangeType.ENTITLEMENTS_ADDED]) is None


def test_command_id_is_deterministic_and_carries_the_event_id() -> None:
    """Same event, same command id; the command names its event and has its own id."""
    one = command({"title": "a"}, {"title": "b"})
    two = command({"title": "a"}, {"title": "b"})
    other = command({"title": "a"}, {"title": "c"})
    assert one is not None and two is not None and other is not None
    assert one.id == two.id != other.id
    assert one.eventId != one.id


def test_deletions_and_unasked_sources_give_no_command() -> None:
    """A deleted account cannot be put back by an update; an empty revert list asks nothing."""
    policy = make_policy()
    deleted = decide_event(policy, make_account(ANN, {"title": "a"}), None, EntitlementCatalog())
    assert deleted is not None and remediation_command(deleted, ALL) is None
    assert command({"title": "a"}, {"title": "b"}, []) is None


# --------------------------------------------------------------------------- the property

_SCALARS = st.sampled_from(["a", "b", "c", "D", "d"])
_MULTI: st.SearchStrategy[list[str | bool | int | float | None]] = st.lists(_SCALARS, max_size=4)


@st.composite
def _attributes(draw: st.DrawFn) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    for name in ("title", "department"):
        if draw(st.booleans()):
            attributes[name] = draw(st.one_of(st.none(), st.just(""), _SCALARS))
    for name in ("accountFlags", "memberOf", "extraList"):
        if draw(st.booleans()):
            value: AttributeValue = draw(st.one_of(_MULTI, _SCALARS))
            attributes[name] = value
    if draw(st.booleans()):
        attributes["profile"] = draw(st.one_of(st.none(), _SCALARS))
    return attributes


@settings(max_examples=300, deadline=None)
@given(before=_attributes(), after=_attributes(), folded=st.booleans())
def test_applying_the_command_to_the_changed_account_restores_the_monitored_state(
    before: dict[str, AttributeValue], after: dict[str, AttributeValue], folded: bool
) -> None:
    """Post-change account + its remediation command = pre-change account, for monitored data."""
    policy = make_policy(case_insensitive=folded)
    catalog = EntitlementCatalog()
    previous = make_account(ANN, before)
    current = make_account(ANN, after)
    event = decide_event(policy, previous, current, catalog)
    if event is None:
        return
    cmd = remediation_command(event, ALL)
    assert cmd is not None
    record = ProvisioningRecord.model_validate(
        {"sourceId": policy.source.id, "input": cmd.input.model_dump(mode="json")}
    )
    reverted = apply_provisioning(policy, current, record)
    assert detect_changes(policy, previous.attributes, reverted.attributes, catalog).is_empty
