"""Change detection for one account (R3-R9, R11, R12) and the event it gives."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson

from processor.core.catalog import EntitlementCatalog
from processor.core.event import (
    EntitlementChangeJson,
    Event,
    EventJson,
    MultiChangeJson,
    RefJson,
    SingleChangeJson,
)
from processor.core.identity import event_account, event_identity
from processor.core.policy import Kind, SourcePolicy
from processor.core.values import (
    as_text,
    exact_text_changes,
    same_attributes,
    same_items,
    same_raw,
    single_key,
    value_set,
)
from processor.models import Account, AttributeValue, ChangeType, Operation, Scalar


@dataclass(frozen=True, slots=True)
class AccountChanges:
    """The monitored changes of one account, each list sorted by attribute name (R12)."""

    single: tuple[SingleChangeJson, ...] = ()
    multi: tuple[MultiChangeJson, ...] = ()
    entitlements: tuple[EntitlementChangeJson, ...] = ()

    @property
    def change_types(self) -> list[ChangeType]:
        """R11: ATTRIBUTES_CHANGED, ENTITLEMENTS_ADDED, ENTITLEMENTS_REMOVED, in that order."""
        types: list[ChangeType] = []
        if self.single or self.multi:
            types.append(ChangeType.ATTRIBUTES_CHANGED)
        if any(change["added"] for change in self.entitlements):
            types.append(ChangeType.ENTITLEMENTS_ADDED)
        if any(change["removed"] for change in self.entitlements):
            types.append(ChangeType.ENTITLEMENTS_REMOVED)
        return types

    @property
    def is_empty(self) -> bool:
        """Whether no monitored attribute changed."""
        return not (self.single or self.multi or self.entitlements)


_NO_CHANGES = AccountChanges()
_NO_ATTRIBUTES: Mapping[str, AttributeValue] = {}


def detect_changes(
    policy: SourcePolicy,
    previous: Mapping[str, AttributeValue] | None,
    current: Mapping[str, AttributeValue] | None,
    catalog: EntitlementCatalog,
) -> AccountChanges:
    """The changes of monitored attributes between two attribute maps.

    ``previous=None`` is the creation view (every value is new), ``current=None`` the
    deletion view. Raw-equal values (booleans meeting only booleans) are skipped before
    normalising: they normalise equal.
    """
    before = _NO_ATTRIBUTES if previous is None else previous
    after = _NO_ATTRIBUTES if current is None else current
    if same_attributes(before, after):
        return _NO_CHANGES
    single: list[SingleChangeJson] = []
    multi: list[MultiChangeJson] = []
    entitlements: list[EntitlementChangeJson] = []
    # The attributes whose raw values differ (same_raw, its commonest cases inline: most
    # attributes of a changed account are equal, and one comprehension skips them in C).
    # Equal scalars of one type are raw-equal (a bool meets a bool); lists need a look.
    differing = [
        name
        for name, new in after.items()
        if (old := before.get(name)) != new
        or not (
            type(old) is str
            or old is None
            or type(old) is type(new) is not list
            or same_raw(old, new)
        )
    ]
    differing += [name for name in before.keys() - after.keys() if before[name] is not None]
    for name in sorted(differing):
        old = before.get(name)
        new = after.get(name)
        kind, monitored, normalise, fold = policy.plan(name, old, new)
        if not monitored:
            continue
        if kind is Kind.SINGLE:
            if single_key(old, normalise) != single_key(new, normalise):
                single.append({"name": name, "oldValue": _own(old), "newValue": _own(new)})
            continue
        plain = exact_text_changes(old, new) if fold is False else None
        if plain is None and same_items(old, new):  # (plain: none when the same items)
            continue
        if plain is not None:
            added, removed = plain
        else:
            old_set = value_set(old, normalise, fold)
            new_set = value_set(new, normalise, fold)
            added = [new_set[key] for key in sorted(new_set.keys() - old_set.keys())]
            removed = [old_set[key] for key in sorted(old_set.keys() - new_set.keys())]
        if not added and not removed:
            continue
        if kind is Kind.MULTI:
            multi.append({"name": name, "addedValues": added, "removedValues": removed})
        else:
            folded = policy.case_insensitive
            entitlements.append(
                {
                    "attributeName": name,
                    "added": _refs(catalog, name, added, folded),
                    "removed": _refs(catalog, name, removed, folded),
                }
            )
    if not (single or multi or entitlements):
        return _NO_CHANGES
    return AccountChanges(tuple(single), tuple(multi), tuple(entitlements))


def _refs(
    catalog: EntitlementCatalog, name: str, values: list[Scalar], case_insensitive: bool
) -> list[RefJson]:
    """The catalog refs of an entitlement attribute's values."""
    return [catalog.ref(name, as_text(v), case_insensitive=case_insensitive) for v in values]


def _own(value: AttributeValue) -> AttributeValue:
    """A list value copied (an event holds its own), a scalar as it is."""
    return list(value) if type(value) is list else value


def decide_event(
    policy: SourcePolicy,
    previous: Account | None,
    current: Account | None,
    catalog: EntitlementCatalog,
    *,
    context: str = "",
) -> Event | None:
    """The event of one account (R7-R9, R14), or ``None`` when nothing is to be reported.

    ``previous=None`` is a creation, ``current=None`` a deletion, both given an update.
    ``context`` (e.g. the aggregation id) goes into the deterministic event id.
    """
    if current is not None:
        if previous is not None:
            return update_event(policy, previous.attributes, current, catalog, context=context)
        return _event(
            policy, Operation.ACCOUNT_CREATED, current, (None, current.attributes), catalog, context
        )
    if previous is not None:
        return _event(
            policy,
            Operation.ACCOUNT_DELETED,
            previous,
            (previous.attributes, None),
            catalog,
            context,
        )
    return None


def update_event(
    policy: SourcePolicy,
    previous: Mapping[str, AttributeValue],
    current: Account,
    catalog: EntitlementCatalog,
    *,
    context: str = "",
) -> Event | None:
    """:func:`decide_event` of an update, from the previous state's attributes alone: an
    update's event names the current account, so the worker need not rebuild the stored
    one as a model (its attributes, read from trusted state, are the same values)."""
    views = (previous, current.attributes)
    return _event(policy, Operation.ACCOUNT_UPDATED, current, views, catalog, context)


def _event(
    policy: SourcePolicy,
    operation: Operation,
    subject: Account,
    views: tuple[Mapping[str, AttributeValue] | None, Mapping[str, AttributeValue] | None],
    catalog: EntitlementCatalog,
    context: str,
) -> Event | None:
    """The event of ``operation`` on ``subject`` (the account it names), or ``None`` when the
    operation is not monitored or no monitored attribute changed between ``views`` (the
    previous and current attributes, ``None`` for no account)."""
    if not policy.operation_monitored(operation):
        return None
    changes = detect_changes(policy, *views, catalog)
    if changes.is_empty:
        return None
    return build_event(policy, operation, subject, changes, context=context)


def build_event(
    policy: SourcePolicy,
    operation: Operation,
    account: Account,
    changes: AccountChanges,
    *,
    context: str = "",
) -> Event:
    """An event from its parts, as plain JSON data, with its deterministic id.

    The body is the event model's JSON form, field for field in the model's order (tests
    check every kind of event against :func:`~processor.models.event_class`); the id is
    computed over it and put last.
    """
    body: dict[str, Any] = {
        "eventType": operation.value,
        "accountChangeTypes": [change_type.value for change_type in changes.change_types],
        "identity": event_identity(policy, account),
        "source": policy.event_source,
        "account": event_account(policy, account),
        "singleValueAttributeChanges": list(changes.single),
        "multiValueAttributeChanges": list(changes.multi),
        "entitlementChanges": list(changes.entitlements),
    }
    body["id"] = _id_of(body, context)
    return Event(operation, cast(EventJson, body))


def event_id(body: Mapping[str, Any], context: str) -> str:
    """A UUID from sha256 over the canonical JSON of the body (without ``id``) and a context.

    Canonical JSON: keys sorted, no spaces, text as UTF-8 (orjson). A body orjson cannot
    encode (an integer beyond 64 bits, a lone surrogate) is encoded the same way by the
    standard library, so every body has an id.
    """
    return _id_of({key: value for key, value in body.items() if key != "id"}, context)


def _id_of(canonical: Mapping[str, Any], context: str) -> str:
    """:func:`event_id` of a body without ``id``."""
    try:
        payload = orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        payload = text.encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(payload + b"\x00" + context.encode("utf-8", "surrogatepass"))
    return uuid_text(digest.digest())


def uuid_text(digest: bytes) -> str:
    """``str(uuid.UUID(bytes=digest[:16], version=5))``, six times quicker: the version
    nibble set to 5 and the variant bits to RFC 4122's, written as 8-4-4-4-12 hex digits."""
    head = bytearray(digest[:16])
    head[6] = (head[6] & 0x0F) | 0x50
    head[8] = (head[8] & 0x3F) | 0x80
    x = head.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"
