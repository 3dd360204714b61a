"""Rules R2-R5: attribute kinds, no-value forms, typed comparison, set semantics."""

from __future__ import annotations

from typing import Any

import pytest

from processor.core import EntitlementCatalog, Kind, detect_changes
from processor.models import AttributeValue
from tests.unit.conftest import dump, make_policy, update_event


def changes_of(
    previous: dict[str, AttributeValue], current: dict[str, AttributeValue], **source: Any
) -> dict[str, Any]:
    """The three change lists of an update as JSON data ({} lists when nothing changed)."""
    event = dump(update_event(previous, current, **source))
    if event is None:
        return {"single": [], "multi": [], "entitlements": []}
    return {
        "single": event["singleValueAttributeChanges"],
        "multi": event["multiValueAttributeChanges"],
        "entitlements": event["entitlementChanges"],
    }


# --------------------------------------------------------------------------- R2


def test_r2_schema_flags_decide_the_kind() -> None:
    """isEntitlement wins over isMulti, isMulti gives multi, otherwise single."""
    policy = make_policy(
        schema=[
            {"name": "e", "isMulti": True, "isEntitlement": True},
            {"name": "m", "isMulti": True},
            {"name": "s"},
        ]
    )
    assert policy.kind("e", None, None) is Kind.ENTITLEMENT
    assert policy.kind("m", "x", "y") is Kind.MULTI
    assert policy.kind("s", ["x"], ["y"]) is Kind.SINGLE


def test_r2_unknown_attribute_is_multi_when_either_side_holds_a_list() -> None:
    """An attribute outside the schema is multi-valued when either side is a list."""
    policy = make_policy()
    assert policy.kind("extra", ["a"], "b") is Kind.MULTI
    assert policy.kind("extra", "a", ["b"]) is Kind.MULTI
    assert policy.kind("extra", "a", "b") is Kind.SINGLE
    assert policy.kind("extra", None, None) is Kind.SINGLE


def test_r2_unknown_attribute_is_never_an_entitlement() -> None:
    """Lists outside the schema are reported as multi-valued changes, not entitlements."""
    got = changes_of({"groups": ["a"]}, {"groups": ["a", "b"]})
    assert got["entitlements"] == []
    assert got["multi"] == [{"name": "groups", "addedValues": ["b"], "removedValues": []}]


def test_r2_unknown_scalar_attribute_is_single_valued() -> None:
    """A scalar outside the schema is reported as a single-valued change."""
    got = changes_of({"extra": "a"}, {"extra": "b"})
    assert got["single"] == [{"name": "extra", "oldValue": "a", "newValue": "b"}]


# --------------------------------------------------------------------------- R3

NO_VALUES: list[Any] = [None, "", [], "missing"]


@pytest.mark.parametrize("before", NO_VALUES)
@pytest.mark.parametrize("after", NO_VALUES)
@pytest.mark.parametrize("name", ["title", "accountFlags", "memberOf", "extra"])
def test_r3_moving_between_no_value_forms_is_no_change(name: str, before: Any, after: Any) -> None:
    """Missing, null, "" and [] are all "no value" for every kind of attribute."""
    previous = {} if before == "missing" else {name: before}
    current = {} if after == "missing" else {name: after}
    assert update_event(previous, current) is None


def test_r3_empty_items_inside_a_set_are_dropped() -> None:
    """None and "" items of a multi-valued attribute are not values."""
    assert update_event({"accountFlags": ["a", None, ""]}, {"accountFlags": ["a"]}) is None
    assert update_event({"memberOf": [None]}, {"memberOf": []}) is None


def test_r3_value_to_no_value_reports_the_raw_values() -> None:
    """A value that goes away is a change, with the raw old and new values."""
    got = changes_of({"title": "Boss"}, {"title": ""})
    assert got["single"] == [{"name": "title", "oldValue": "Boss", "newValue": ""}]
    got = changes_of({"title": "Boss"}, {})
    assert got["single"] == [{"name": "title", "oldValue": "Boss", "newValue": None}]


# --------------------------------------------------------------------------- R4


@pytest.mark.parametrize(
    ("name", "before", "after"),
    [
        ("employeeNumber", "5", 5),
        ("employeeNumber", "5.0", 5),
        ("employeeNumber", 5.0, " 5 "),
        ("logonCount", "12345678901234567890", 12345678901234567890),
        ("logonCount", "-7", -7.0),
        ("active", "true", True),
        ("active", "FALSE", False),
        ("active", "True", "tRuE"),
        ("hireDate", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00"),
        ("hireDate", "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00Z"),
        ("hireDate", "2026-01-01T00:00:00", "2026-01-01T00:00:00Z"),
    ],
)
def test_r4_typed_values_that_are_equal_give_no_change(name: str, before: Any, after: Any) -> None:
    """INT, LONG, BOOLEAN and DATE values compare by meaning, not by spelling."""
    assert update_event({name: before}, {name: after}) is None


@pytest.mark.parametrize(
    ("name", "before", "after"),
    [
        ("employeeNumber", "5", 6),
        ("employeeNumber", "5.5", 5),
        ("logonCount", "abc", "ABC"),
        ("active", "true", False),
        ("active", "yes", "true"),
        ("hireDate", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"),
        ("hireDate", "not a date", "Not a date"),
        ("title", "5", 5),
        ("title", "Manager", "manager"),
    ],
)
def test_r4_typed_values_that_differ_are_reported_raw(name: str, before: Any, after: Any) -> None:
    """A real difference (or an unparseable one, compared as text) reports the raw values."""
    got = changes_of({name: before}, {name: after})
    assert got["single"] == [{"name": name, "oldValue": before, "newValue": after}]


def test_r4_strings_compare_case_insensitively_when_the_source_says_so() -> None:
    """caseInsensitive folds the case of strings, including unparseable typed ones."""
    assert update_event({"title": "Manager"}, {"title": "MANAGER"}, case_insensitive=True) is None
    assert update_event({"hireDate": "n/a"}, {"hireDate": "N/A"}, case_insensitive=True) is None
    assert update_event({"title": "Manager"}, {"title": "Boss"}, case_insensitive=True) is not None


def test_r4_single_valued_one_item_list_compares_as_the_item() -> None:
    """A single-valued attribute holding ["x"] equals "x"; the report keeps the raw list."""
    assert update_event({"title": ["Boss"]}, {"title": "Boss"}) is None
    assert update_event({"employeeNumber": ["5"]}, {"employeeNumber": 5}) is None
    got = changes_of({"title": ["Boss"]}, {"title": "Chief"})
    assert got["single"] == [{"name": "title", "oldValue": ["Boss"], "newValue": "Chief"}]


def test_r4_typed_multi_values_compare_by_meaning() -> None:
    """Typed comparison applies to each item of a multi-valued attribute."""
    policy = make_policy(schema=[{"name": "codes", "type": "INT", "isMulti": True}])
    changes = detect_changes(
        policy, {"codes": ["1", "2"]}, {"codes": [2, 1.0, 3]}, EntitlementCatalog()
    )
    assert list(changes.multi) == [{"name": "codes", "addedValues": [3], "removedValues": []}]


def test_r4_typed_multi_values_compare_by_meaning_when_every_item_is_ascii_text() -> None:
    """Lists of ASCII strings on a typed multi-valued attribute are still compared by meaning
    (the quick string-for-string comparison is only for STRING attributes)."""
    policy = make_policy(
        schema=[
            {"name": "codes", "type": "INT", "isMulti": True},
            {"name": "dates", "type": "DATE", "isMulti": True},
        ]
    )
    previous: dict[str, AttributeValue] = {"codes": ["1", "2"], "dates": ["2026-01-01T00:00:00Z"]}
    current: dict[str, AttributeValue] = {
        "codes": ["01", "2", "3"],
        "dates": ["2026-01-01T00:00:00.000Z"],
    }
    changes = detect_changes(policy, previous, current, EntitlementCatalog())
    assert list(changes.multi) == [{"name": "codes", "addedValues": ["3"], "removedValues": []}]


# --------------------------------------------------------------------------- R5


def test_r5_order_and_duplicates_are_ignored() -> None:
    """Sets: reordering or repeating values is no change."""
    assert update_event({"accountFlags": ["b", "a"]}, {"accountFlags": ["a", "b", "a"]}) is None


def test_r5_scalar_is_a_one_item_set() -> None:
    """A scalar where a list is meant equals the one-item list."""
    assert update_event({"memberOf": "CN=A"}, {"memberOf": ["CN=A"]}) is None
    assert update_event({"accountFlags": ["x"]}, {"accountFlags": "x"}) is None
    got = changes_of({"accountFlags": "x"}, {"accountFlags": ["x", "y"]})
    assert got["multi"] == [{"name": "accountFlags", "addedValues": ["y"], "removedValues": []}]


def test_r5_added_and_removed_are_sorted_ascending() -> None:
    """added = current - previous, removed = previous - current, each in ascending order."""
    got = changes_of(
        {"accountFlags": ["z", "m", "keep"]}, {"accountFlags": ["keep", "c", "b", "y"]}
    )
    assert got["multi"] == [
        {"name": "accountFlags", "addedValues": ["b", "c", "y"], "removedValues": ["m", "z"]}
    ]


def test_r5_case_is_ignored_in_sets_when_case_insensitive() -> None:
    """caseInsensitive sources ignore the case of set members."""
    assert (
        update_event(
            {"memberOf": ["CN=A,DC=x"]}, {"memberOf": ["cn=a,dc=X"]}, case_insensitive=True
        )
        is None
    )
    got = changes_of({"memberOf": ["CN=A"]}, {"memberOf": ["cn=a"]})
    assert got["entitlements"][0]["added"][0]["value"] == "cn=a"
    assert got["entitlements"][0]["removed"][0]["value"] == "CN=A"


def test_r5_case_duplicates_report_the_smallest_raw_value() -> None:
    """Among values equal but for case, the smallest raw one is reported whatever the order."""
    first = changes_of({}, {"accountFlags": ["b", "B", "a"]}, case_insensitive=True)
    second = changes_of({}, {"accountFlags": ["a", "B", "b"]}, case_insensitive=True)
    assert first == second
    assert first["multi"][0]["addedValues"] == ["a", "B"]


def test_r5_mixed_types_sort_deterministically() -> None:
    """Numbers, booleans and strings in one set sort without error and in a stable order."""
    got = changes_of({}, {"extra": ["b", 2, True, "a", 1.5]})
    assert got["multi"][0]["addedValues"] == [True, 1.5, 2, "a", "b"]
