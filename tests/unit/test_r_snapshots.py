"""Rules R1 (matching) and R10 (delete guard), through match_accounts and diff_snapshots."""

from __future__ import annotations

from typing import Any

import pytest

from processor.core import (
    DuplicateAccountError,
    EntitlementCatalog,
    deletes_allowed,
    diff_snapshots,
    match_accounts,
)
from processor.errors import InputError
from processor.models import Account
from tests.unit.conftest import make_account, make_policy, make_source


def events_of(
    previous: list[Account], current: list[Account], **source: Any
) -> list[tuple[str, str]]:
    """(nativeIdentity, eventType) of every event of a diff."""
    result = diff_snapshots(make_source(**source), previous, current, EntitlementCatalog())
    return [(e.native_identity, str(e.operation)) for e in result.events]


# --------------------------------------------------------------------------- R1


def test_r1_same_uuid_new_native_identity_is_a_rename() -> None:
    """A rename (same uuid, new DN) is one ACCOUNT_UPDATED carrying the new nativeIdentity."""
    previous = [make_account("CN=Ann,OU=A", {"title": "x"}, uuid="u1")]
    current = [make_account("CN=Ann,OU=B", {"title": "y"}, uuid="u1")]
    assert events_of(previous, current) == [("CN=Ann,OU=B", "ACCOUNT_UPDATED")]


def test_r1_rename_without_monitored_change_gives_nothing() -> None:
    """A rename alone is not a monitored change."""
    previous = [make_account("CN=Ann,OU=A", {"title": "x"}, uuid="u1")]
    current = [make_account("CN=Ann,OU=B", {"title": "x"}, uuid="u1")]
    assert events_of(previous, current) == []


def test_r1_different_uuids_with_the_same_native_identity_are_different_accounts() -> None:
    """Previous uuid X and current uuid Y at one DN: a deletion and a creation."""
    previous = [make_account("CN=Ann", {"title": "x"}, uuid="X")]
    current = [make_account("CN=Ann", {"title": "x"}, uuid="Y")]
    assert events_of(previous, current, delete_threshold=100) == [
        ("CN=Ann", "ACCOUNT_CREATED"),
        ("CN=Ann", "ACCOUNT_DELETED"),
    ]


def test_r1_native_identity_matches_when_one_side_lacks_a_uuid() -> None:
    """Without a uuid on both sides, accounts match by nativeIdentity."""
    previous = [make_account("CN=Ann", {"title": "x"})]
    current = [make_account("CN=Ann", {"title": "y"}, uuid="u1")]
    assert events_of(previous, current) == [("CN=Ann", "ACCOUNT_UPDATED")]


def test_r1_native_identity_is_case_insensitive_only_when_configured() -> None:
    """caseInsensitive sources match CN=Ann with cn=ann; others see two accounts."""
    previous = [make_account("CN=Ann", {"title": "x"})]
    current = [make_account("cn=ann", {"title": "y"})]
    assert events_of(previous, current, case_insensitive=True) == [("cn=ann", "ACCOUNT_UPDATED")]
    assert events_of(previous, current, delete_threshold=100) == [
        ("CN=Ann", "ACCOUNT_DELETED"),
        ("cn=ann", "ACCOUNT_CREATED"),
    ]


def test_r1_uuid_match_takes_precedence_over_a_native_identity_match() -> None:
    """A renamed account keeps its uuid partner even when another account took its old DN."""
    previous = [
        make_account("CN=A", {"title": "1"}, uuid="u1"),
        make_account("CN=B", {"title": "2"}),
    ]
    current = [make_account("CN=B", {"title": "1"}, uuid="u1")]
    matching = match_accounts(make_policy(), previous, current)
    assert [(p.nativeIdentity, c.nativeIdentity) for p, c in matching.pairs] == [("CN=A", "CN=B")]
    assert [a.nativeIdentity for a in matching.deleted] == ["CN=B"]
    assert matching.created == []


def test_r1_new_account_at_a_renamed_accounts_old_dn_is_a_creation() -> None:
    """An account moved away (same uuid) and a new one at its old DN: update plus create."""
    previous = [make_account("CN=Old", {"title": "a"}, uuid="u1")]
    current = [
        make_account("CN=New", {"title": "b"}, uuid="u1"),
        make_account("CN=Old", {"title": "c"}),
    ]
    assert events_of(previous, current) == [
        ("CN=New", "ACCOUNT_UPDATED"),
        ("CN=Old", "ACCOUNT_CREATED"),
    ]


def test_r1_matching_does_not_depend_on_input_order() -> None:
    """Reversing both snapshots gives the same matching."""
    previous = [
        make_account("CN=A", {}, uuid="u1"),
        make_account("CN=B", {}),
        make_account("CN=C", {}, uuid="u3"),
    ]
    current = [
        make_account("CN=B", {}, uuid="u1"),
        make_account("CN=C", {}, uuid="u9"),
        make_account("CN=D", {}),
    ]
    policy = make_policy()
    forward = match_accounts(policy, previous, current)
    backward = match_accounts(policy, previous[::-1], current[::-1])
    assert forward == backward
    assert [(p.nativeIdentity, c.nativeIdentity) for p, c in forward.pairs] == [("CN=A", "CN=B")]
    assert sorted(a.nativeIdentity for a in forward.created) == ["CN=C", "CN=D"]
    assert sorted(a.nativeIdentity for a in forward.deleted) == ["CN=B", "CN=C"]


@pytest.mark.parametrize("side", ["previous", "current"])
def test_r1_duplicate_uuid_in_a_snapshot_is_an_input_error(side: str) -> None:
    """Two accounts with one uuid in one snapshot raise an error naming the later one."""
    accounts = [
        make_account("CN=A", {}, uuid="u"),
        make_account("CN=B", {}),
        make_account("CN=C", {}, uuid="u"),
    ]
    previous, current = (accounts, []) if side == "previous" else ([], accounts)
    with pytest.raises(DuplicateAccountError) as info:
        match_accounts(make_policy(), previous, current)
    assert isinstance(info.value, InputError)
    assert (info.value.side, info.value.index, info.value.first_index) == (side, 2, 0)
    assert "uuid" in info.value.reason


def test_r1_duplicate_native_identity_is_an_input_error_folded_when_case_insensitive() -> None:
    """Repeated nativeIdentities (case-folded for caseInsensitive sources) raise an error."""
    accounts = [make_account("CN=A", {}), make_account("cn=a", {})]
    match_accounts(make_policy(), accounts, [])
    with pytest.raises(DuplicateAccountError) as info:
        diff_snapshots(make_source(case_insensitive=True), [], accounts, EntitlementCatalog())
    assert (info.value.side, info.value.index) == ("current", 1)
    assert "nativeIdentity" in info.value.reason


def test_r1_events_are_sorted_by_native_identity_then_event_type() -> None:
    """The diff's events come sorted by nativeIdentity, then eventType."""
    previous = [
        make_account("CN=B", {"title": "x"}, uuid="X"),
        make_account("CN=C", {"title": "1"}),
    ]
    current = [
        make_account("CN=C", {"title": "2"}),
        make_account("CN=B", {"title": "x"}, uuid="Y"),
        make_account("CN=A", {"title": "n"}),
    ]
    assert events_of(previous, current, delete_threshold=100) == [
        ("CN=A", "ACCOUNT_CREATED"),
        ("CN=B", "ACCOUNT_CREATED"),
        ("CN=B", "ACCOUNT_DELETED"),
        ("CN=C", "ACCOUNT_UPDATED"),
    ]


# --------------------------------------------------------------------------- R10


@pytest.mark.parametrize(
    ("previous", "deletes", "threshold", "allowed"),
    [
        (100, 10, 10, True),
        (100, 11, 10, False),
        (10, 1, 10, True),
        (10, 2, 10, False),
        (0, 0, 10, True),
        (5, 0, 0, True),
        (5, 1, 0, False),
        (3, 3, 100, True),
        (1000, 1, 0.1, True),
        (1000, 2, 0.1, False),
        (10000, 57, 0.57, True),
        (10000, 58, 0.57, False),
        (100, 7, 7.000000000000001, True),
    ],
)
def test_r10_deletes_allowed_up_to_exactly_the_threshold(
    previous: int, deletes: int, threshold: float, allowed: bool
) -> None:
    """Deletions pass at exactly the threshold's share and are stopped above it."""
    assert deletes_allowed(previous, deletes, threshold) is allowed


def _population(count: int) -> list[Account]:
    return [make_account(f"CN=U{i:03d}", {"title": "t"}) for i in range(count)]


def test_r10_default_threshold_is_ten_percent() -> None:
    """Without deleteThreshold, 10 of 100 deletions pass and 11 are suppressed."""
    source = make_source()
    assert "deleteThreshold" not in source.model_fields_set
    previous = _population(100)
    at = diff_snapshots(source, previous, previous[10:], EntitlementCatalog())
    assert (at.would_delete, at.deletes_suppressed, len(at.events)) == (10, False, 10)
    assert {str(e.operation) for e in at.events} == {"ACCOUNT_DELETED"}
    over = diff_snapshots(source, previous, previous[11:], EntitlementCatalog())
    assert (over.would_delete, over.deletes_suppressed, over.events) == (11, True, [])


def test_r10_suppression_drops_only_deletions() -> None:
    """Over the threshold, creations and updates still come out."""
    previous = _population(4)
    current = [
        make_account("CN=U000", {"title": "changed"}),
        make_account("CN=New", {"title": "n"}),
    ]
    result = diff_snapshots(
        make_source(delete_threshold=50), previous, current, EntitlementCatalog()
    )
    assert result.deletes_suppressed and result.would_delete == 3
    assert [(e.native_identity, str(e.operation)) for e in result.events] == [
        ("CN=New", "ACCOUNT_CREATED"),
        ("CN=U000", "ACCOUNT_UPDATED"),
    ]


def test_r10_counts_unmonitored_deletions_too() -> None:
    """Accounts without monitored values still count toward the guard."""
    previous = [make_account("CN=Keep", {"title": "t"})] + [
        make_account(f"CN=Quiet{i}", {"unwatched": "x"}) for i in range(3)
    ]
    result = diff_snapshots(
        make_source(all_others=False, selected_others=["title"], delete_threshold=50),
        previous,
        previous[:1],
        EntitlementCatalog(),
    )
    assert (result.would_delete, result.deletes_suppressed) == (3, True)
