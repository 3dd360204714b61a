"""Matching accounts across two snapshots (R1)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from processor.core.policy import SourcePolicy
from processor.errors import InputError
from processor.models import Account

#: A GUID in hex form, braces optional (both or none): R1 matches these regardless of case.
_GUID_RE = re.compile(
    r"(\{)?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?(1)\})"
)


def uuid_key(uuid: str) -> str:
    """The key a uuid is matched by (R1): a GUID in hex form as ``{lower-case hex}``, so
    ``{08EE6C6D-...}`` and ``08ee6c6d-...`` are one account; any other uuid as it is.

    Braced lower case is how Active Directory's GUIDs usually come (and the project's examples):
    their keys are the uuids as sent, so record keys and state keys written before this rule
    stay valid for them.
    """
    if uuid[:1] == "{" and uuid.islower():  # braced lower case: already its own key (the
        return uuid  # common case, twice per record on the worker's byte path)
    found = _GUID_RE.fullmatch(uuid)
    return uuid if found is None else "{" + found.group(2).lower() + "}"


class DuplicateAccountError(InputError):
    """Two accounts of one snapshot share a uuid or a (normalised) nativeIdentity.

    ``side`` is ``"previous"`` or ``"current"``; ``index`` is the 0-based position of the
    second occurrence in that sequence, ``first_index`` of the first: the caller, which
    knows where the records came from, names the places (``diff``: both lines).
    """

    def __init__(self, reason: str, *, side: str, index: int, first_index: int) -> None:
        super().__init__(reason)
        self.side = side
        self.index = index
        self.first_index = first_index


@dataclass(frozen=True, slots=True)
class Matching:
    """Accounts paired across snapshots, and those only on one side."""

    pairs: list[tuple[Account, Account]] = field(default_factory=list)
    created: list[Account] = field(default_factory=list)
    deleted: list[Account] = field(default_factory=list)


def uuid_keys(accounts: Sequence[Account]) -> list[str | None]:
    """:func:`uuid_key` of every account's uuid (``None`` for accounts without one)."""
    return [uuid_key(account.uuid) if account.uuid else None for account in accounts]


def check_unique(
    policy: SourcePolicy,
    accounts: Sequence[Account],
    side: str,
    keys: Sequence[str | None] | None = None,
) -> None:
    """Raise :class:`DuplicateAccountError` on a repeated uuid or nativeIdentity.

    ``keys`` are the accounts' :func:`uuid_keys` when the caller has them already.
    """
    _check(side, "uuid", uuid_keys(accounts) if keys is None else keys)
    _check(side, "nativeIdentity", [policy.identity_key(a.nativeIdentity) for a in accounts])


def _check(side: str, what: str, keys: Sequence[str | None]) -> None:
    seen: dict[str, int] = {}
    for index, value in enumerate(keys):
        if value is None:
            continue
        first = seen.setdefault(value, index)
        if first != index:
            raise DuplicateAccountError(
                f"duplicate {what} in the {side} snapshot",
                side=side,
                index=index,
                first_index=first,
            )


class AccountKeys(NamedTuple):
    """What R1 matches an account by: its nativeIdentity as given and its :func:`uuid_key`
    (``None`` when it has no uuid). ``diff`` keeps only these of a snapshot in memory."""

    native_identity: str
    uuid_key: str | None


def account_keys(account: Account) -> AccountKeys:
    """The :class:`AccountKeys` of an account."""
    return AccountKeys(account.nativeIdentity, uuid_key(account.uuid) if account.uuid else None)


@dataclass(frozen=True, slots=True)
class KeyedMatching:
    """A :class:`Matching` by position: ``pairs`` of (previous, current) indices sorted by
    the current nativeIdentity, ``created`` (current) and ``deleted`` (previous) indices
    sorted by nativeIdentity."""

    pairs: list[tuple[int, int]] = field(default_factory=list)
    created: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)


def match_keys(
    policy: SourcePolicy, previous: Sequence[AccountKeys], current: Sequence[AccountKeys]
) -> KeyedMatching:
    """R1 over the accounts' keys (see :func:`match_accounts`)."""
    for side, accounts in (("previous", previous), ("current", current)):
        _check(side, "uuid", [k.uuid_key for k in accounts])
        _check(side, "nativeIdentity", [policy.identity_key(k.native_identity) for k in accounts])
    by_uuid = {k.uuid_key: i for i, k in enumerate(previous) if k.uuid_key is not None}
    by_key = {policy.identity_key(k.native_identity): i for i, k in enumerate(previous)}
    used = [False] * len(previous)
    pairs: list[tuple[int, int]] = []
    unpaired: list[int] = []
    for position, keys in enumerate(current):
        index = None if keys.uuid_key is None else by_uuid.get(keys.uuid_key)
        if index is None:
            unpaired.append(position)
        else:
            used[index] = True
            pairs.append((index, position))
    created: list[int] = []
    for position in unpaired:
        keys = current[position]
        index = by_key.get(policy.identity_key(keys.native_identity))
        if index is None or used[index] or (keys.uuid_key and previous[index].uuid_key):
            created.append(position)
        else:
            used[index] = True
            pairs.append((index, position))
    deleted = [index for index in range(len(previous)) if not used[index]]
    pairs.sort(key=lambda pair: current[pair[1]].native_identity)
    created.sort(key=lambda position: current[position].native_identity)
    deleted.sort(key=lambda index: previous[index].native_identity)
    return KeyedMatching(pairs, created, deleted)


def match_accounts(
    policy: SourcePolicy, previous: Sequence[Account], current: Sequence[Account]
) -> Matching:
    """R1: pair by uuid (:func:`uuid_key`) when both sides have one, else by nativeIdentity
    among the unpaired.

    A previous and a current account with different uuids are never paired. The result
    does not depend on input order: every list is sorted by nativeIdentity.
    """
    keyed = match_keys(
        policy, [account_keys(a) for a in previous], [account_keys(a) for a in current]
    )
    return Matching(
        [(previous[i], current[j]) for i, j in keyed.pairs],
        [current[j] for j in keyed.created],
        [previous[i] for i in keyed.deleted],
    )
