"""Rule R15: the platform's own changes are applied before diffing and not reported."""

from __future__ import annotations

from typing import Any

import pytest

from processor.core import EntitlementCatalog, apply_provisioning, diff_snapshots
from processor.models import AttributeValue
from tests.helpers import event_model
from tests.unit.conftest import SOURCE_ID, make_account, make_policy, make_record, make_source

ANN = "CN=Ann English,OU=Call Center,DC=example,DC=com"


def applied(
    attributes: dict[str, AttributeValue], *changes: dict[str, Any], **source: Any
) -> dict[str, AttributeValue]:
    """The attributes after applying one record of changes to Ann."""
    account = make_account(ANN, attributes)
    result = apply_provisioning(make_policy(**source), account, make_record(ANN, changes))
    return result.attributes


# --------------------------------------------------------------------------- Set


def test_r15_set_overwrites_a_single_valued_attribute() -> None:
    """Set replaces a single value (and creates a missing one)."""
    assert applied({"title": "a"}, {"op": "Set", "attribute": "title", "value": "b"}) == {
        "title": "b"
    }
    assert applied({}, {"op": "Set", "attribute": "title", "value": "b"}) == {"title": "b"}


def test_r15_set_resets_a_whole_multi_valued_list() -> None:
    """Set on a multi-valued attribute replaces the list; a scalar becomes a one-item list."""
    start: dict[str, AttributeValue] = {"memberOf": ["CN=A", "CN=B"]}
    assert applied(start, {"op": "Set", "attribute": "memberOf", "value": ["CN=C"]}) == {
        "memberOf": ["CN=C"]
    }
    assert applied(start, {"op": "Set", "attribute": "memberOf", "value": "CN=C"}) == {
        "memberOf": ["CN=C"]
    }
    assert applied(start, {"op": "Set", "attribute": "memberOf", "value": None}) == {"memberOf": []}


# --------------------------------------------------------------------------- Add


def test_r15_add_appends_new_values_to_a_multi_valued_attribute() -> None:
    """Add keeps existing order, appends new values, and ignores ones already present."""
    start: dict[str, AttributeValue] = {"memberOf": ["CN=B", "CN=A"]}
    assert applied(
        start, {"op": "Add", "attribute": "memberOf", "value": ["CN=C", "CN=A", "CN=C"]}
    ) == {"memberOf": ["CN=B", "CN=A", "CN=C"]}
    assert applied(start, {"op": "Add", "attribute": "memberOf", "value": "CN=D"}) == {
        "memberOf": ["CN=B", "CN=A", "CN=D"]
    }
    assert applied({}, {"op": "Add", "attribute": "accountFlags", "value": "x"}) == {
        "accountFlags": ["x"]
    }


def test_r15_add_compares_case_insensitively_when_the_source_does() -> None:
    """Add does not duplicate a value differing only in case on caseInsensitive sources."""
    start: dict[str, AttributeValue] = {"memberOf": ["CN=A"]}
    change = {"op": "Add", "attribute": "memberOf", "value": "cn=a"}
    assert applied(start, change, case_insensitive=True) == {"memberOf": ["CN=A"]}
    assert applied(start, change) == {"memberOf": ["CN=A", "cn=a"]}


def test_r15_add_on_a_single_valued_attribute_sets_it() -> None:
    """Add on a single-valued attribute sets the value."""
    assert applied({"title": "a"}, {"op": "Add", "attribute": "title", "value": "b"}) == {
        "title": "b"
    }


def test_r15_add_on_a_scalar_held_multi_valued_attribute() -> None:
    """A multi-valued attribute held as a scalar is treated as a one-item list."""
    assert applied(
        {"accountFlags": "x"}, {"op": "Add", "attribute": "accountFlags", "value": "y"}
    ) == {"accountFlags": ["x", "y"]}


# --------------------------------------------------------------------------- Remove


def test_r15_remove_takes_values_out_of_a_multi_valued_attribute() -> None:
    """Remove drops one value or a list of values, typed and case-aware."""
    start: dict[str, AttributeValue] = {"memberOf": ["CN=A", "CN=B", "CN=C"]}
    assert applied(start, {"op": "Remove", "attribute": "memberOf", "value": "CN=B"}) == {
        "memberOf": ["CN=A", "CN=C"]
    }
    assert applied(start, {"op": "Remove", "attribute": "memberOf", "value": ["cn=a", "CN=C"]}) == {
        "memberOf": ["CN=A", "CN=B"]
    }
    assert applied(
        start, {"op": "Remove", "attribute": "memberOf", "value": ["cn=a"]}, case_insensitive=True
    ) == {"memberOf": ["CN=B", "CN=C"]}


def test_r15_remove_clears_a_single_valued_attribute() -> None:
    """Remove on a single-valued attribute sets it to null."""
    assert applied({"title": "a"}, {"op": "Remove", "attribute": "title", "value": "a"}) == {
        "title": None
    }


def test_r15_unknown_attribute_kind_follows_the_values() -> None:
    """Outside the schema, a list on either side makes the change list-wise (R2)."""
    assert applied(
        {"groups": ["a", "b"]}, {"op": "Remove", "attribute": "groups", "value": "a"}
    ) == {"groups": ["b"]}
    assert applied({"groups": "a"}, {"op": "Remove", "attribute": "groups", "value": "a"}) == {
        "groups": None
    }


def test_r15_changes_apply_in_order() -> None:
    """A record's changes apply one after the other."""
    assert applied(
        {"memberOf": ["CN=A"]},
        {"op": "Add", "attribute": "memberOf", "value": "CN=B"},
        {"op": "Remove", "attribute": "memberOf", "value": "CN=A"},
        {"op": "Set", "attribute": "title", "value": "t"},
    ) == {"memberOf": ["CN=B"], "title": "t"}


# --------------------------------------------------------------------------- outputs and targets


def test_r15_complete_output_replaces_the_account() -> None:
    """An output with attributes replaces every attribute and the given flags."""
    account = make_account(ANN, {"title": "a", "memberOf": ["CN=A"]}, disabled=False, locked=False)
    record = make_record(
        ANN,
        [{"op": "Set", "attribute": "title", "value": "ignored"}],
        output={"disabled": True, "attributes": {"title": "b"}},
    )
    result = apply_provisioning(make_policy(), account, record)
    assert result.attributes == {"title": "b"}
    assert (result.disabled, result.locked) == (True, False)
    assert account.attributes == {"title": "a", "memberOf": ["CN=A"]}


def test_r15_empty_output_applies_the_input_changes() -> None:
    """An output of {} (or with empty attributes) means the changes apply."""
    account = make_account(ANN, {"title": "a"})
    outputs: list[dict[str, Any]] = [{}, {"attributes": {}}]
    for output in outputs:
        record = make_record(
            ANN, [{"op": "Set", "attribute": "title", "value": "b"}], output=output
        )
        assert apply_provisioning(make_policy(), account, record).attributes == {"title": "b"}


@pytest.mark.parametrize(
    "key",
    [
        {"key": {"simple": {"id": ANN}}},
        {"key": {"compound": {"lookupId": ANN, "uniqueId": "u"}}},
        {"identity": ANN},
    ],
)
def test_r15_target_comes_from_simple_key_compound_key_or_identity(key: dict[str, Any]) -> None:
    """The record's account is found by simple id, compound lookupId, or input.identity."""
    record = make_record(ANN).model_copy(
        update={
            "input": make_record(ANN).input.model_validate(
                {**key, "changes": [{"op": "Set", "attribute": "title", "value": "b"}]}
            )
        }
    )
    assert apply_provisioning(make_policy(), make_account(ANN, {}), record).attributes == {
        "title": "b"
    }


def test_r15_records_for_other_accounts_or_sources_do_not_apply() -> None:
    """A record for another nativeIdentity or another source leaves the account as it is."""
    account = make_account(ANN, {"title": "a"})
    change = [{"op": "Set", "attribute": "title", "value": "b"}]
    policy = make_policy()
    assert apply_provisioning(policy, account, make_record("CN=Bob", change)) is account
    assert (
        apply_provisioning(policy, account, make_record(ANN, change, sourceId="other")) is account
    )
    assert apply_provisioning(policy, account, make_record(ANN.upper(), change)) is account
    folded = make_policy(case_insensitive=True)
    assert apply_provisioning(folded, account, make_record(ANN.upper(), change)).attributes == {
        "title": "b"
    }


# --------------------------------------------------------------------------- through diff_snapshots


def test_r15_own_changes_are_not_reported_but_later_native_ones_are() -> None:
    """Provisioned changes vanish from the diff; a native change on top is still reported."""
    previous = [make_account(ANN, {"title": "a", "memberOf": ["CN=A"], "department": "d1"})]
    current = [make_account(ANN, {"title": "b", "memberOf": ["CN=A", "CN=B"], "department": "d2"})]
    records = [
        make_record(
            ANN,
            [
                {"op": "Set", "attribute": "title", "value": "b"},
                {"op": "Add", "attribute": "memberOf", "value": "CN=B"},
            ],
        )
    ]
    result = diff_snapshots(make_source(), previous, current, EntitlementCatalog(), records)
    assert len(result.events) == 1
    data = event_model(result.events[0]).model_dump(mode="json")
    assert data["singleValueAttributeChanges"] == [
        {"name": "department", "oldValue": "d1", "newValue": "d2"}
    ]
    assert data["entitlementChanges"] == []


def test_r15_record_order_in_the_file_does_not_matter() -> None:
    """Records apply by completedAt, so shuffling them gives the same diff."""
    previous = [make_account(ANN, {"title": "a"})]
    current = [make_account(ANN, {"title": "c"})]
    early = make_record(
        ANN,
        [{"op": "Set", "attribute": "title", "value": "b"}],
        completed_at="2026-01-01T10:00:00+02:00",
    )
    late = make_record(
        ANN,
        [{"op": "Set", "attribute": "title", "value": "c"}],
        completed_at="2026-01-01T09:00:00Z",
    )
    source = make_source()
    one = diff_snapshots(source, previous, current, EntitlementCatalog(), [early, late])
    other = diff_snapshots(source, previous, current, EntitlementCatalog(), [late, early])
    assert one.events == other.events == []


@pytest.mark.parametrize(
    "fields", [{"status": "PENDING"}, {"status": "FAILED"}, {"error": {"type": "notFound"}}]
)
def test_r15_pending_failed_or_errored_records_are_ignored(fields: dict[str, Any]) -> None:
    """Only completed records without error are applied by diff_snapshots."""
    previous = [make_account(ANN, {"title": "a"})]
    current = [make_account(ANN, {"title": "b"})]
    record = make_record(ANN, [{"op": "Set", "attribute": "title", "value": "b"}], **fields)
    result = diff_snapshots(make_source(), previous, current, EntitlementCatalog(), [record])
    assert len(result.events) == 1


def test_r15_records_of_another_source_are_ignored_by_the_diff() -> None:
    """A record whose sourceId is another source's does not touch this diff."""
    previous = [make_account(ANN, {"title": "a"})]
    current = [make_account(ANN, {"title": "b"})]
    record = make_record(ANN, [{"op": "Set", "attribute": "title", "value": "b"}], sourceId="x")
    assert record.sourceId != SOURCE_ID
    result = diff_snapshots(make_source(), previous, current, EntitlementCatalog(), [record])
    assert len(result.events) == 1
