"""The platform's own changes, applied to the stored account before diffing (R15)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from processor.core.match import uuid_key
from processor.core.policy import Kind, SourcePolicy
from processor.core.values import as_items, has_value, same_raw, single_key, value_set
from processor.models import (
    Account,
    AttributeChange,
    AttributeValue,
    ChangeOp,
    ProvisioningRecord,
    ProvisioningStatus,
)


def applies_to(policy: SourcePolicy, account: Account, record: ProvisioningRecord) -> bool:
    """Whether a record is for this source and targets this account.

    As R1 matches accounts: by ``compound.uniqueId`` against the uuid when both are there
    (so a renamed account is still found), else by the record's target nativeIdentity.
    """
    if record.sourceId != policy.source.id:
        return False
    unique_id = record.unique_id()
    if unique_id is not None and account.uuid:
        return uuid_key(unique_id) == uuid_key(account.uuid)
    target = record.target()
    return target is not None and policy.identity_key(target) == policy.identity_key(
        account.nativeIdentity
    )


def is_completed(record: ProvisioningRecord) -> bool:
    """Whether a record completed without error (the only ones ``diff`` applies)."""
    return record.status is ProvisioningStatus.COMPLETED and record.error is None


def apply_provisioning(
    policy: SourcePolicy, account: Account, record: ProvisioningRecord
) -> Account:
    """The account after one provisioning record; unchanged when the record is not for it.

    A complete ``output`` (with attributes) replaces the attributes (and disabled/locked
    when given); otherwise the input's changes apply in order with Set/Add/Remove semantics.
    """
    if not applies_to(policy, account, record):
        return account
    output = record.output
    if output.attributes:
        update: dict[str, object] = {
            "attributes": {name: _copy(value) for name, value in output.attributes.items()}
        }
        if output.disabled is not None:
            update["disabled"] = output.disabled
        if output.locked is not None:
            update["locked"] = output.locked
        return account.model_copy(update=update)
    if not record.input.changes:
        return account
    attributes = dict(account.attributes)
    for change in record.input.changes:
        _apply_change(policy, attributes, change)
    return account.model_copy(update={"attributes": attributes})


def _copy(value: AttributeValue) -> AttributeValue:
    return list(value) if isinstance(value, list) else value


def _apply_change(
    policy: SourcePolicy, attributes: dict[str, AttributeValue], change: AttributeChange
) -> None:
    name = change.attribute
    current = attributes.get(name)
    value = change.value
    if not _list_wise(policy, change.op, name, current, value):
        attributes[name] = None if change.op is ChangeOp.REMOVE else _copy(value)
        return
    if change.op is ChangeOp.SET:
        attributes[name] = as_items(value)
        return
    normalise = policy.normaliser(name)
    items = [item for item in as_items(current) if has_value(item)]
    if change.op is ChangeOp.ADD:
        keys = {normalise(item) for item in items}
        for item in as_items(value):
            if has_value(item) and (key := normalise(item)) not in keys:
                keys.add(key)
                items.append(item)
        attributes[name] = items
    else:
        drop = {normalise(item) for item in as_items(value) if has_value(item)}
        attributes[name] = [item for item in items if normalise(item) not in drop]


def _list_wise(
    policy: SourcePolicy, op: ChangeOp, name: str, current: AttributeValue, value: AttributeValue
) -> bool:
    """Whether a change treats the attribute as a list.

    The schema decides when it says multi- or single-valued; otherwise (entitlements not
    flagged ``isMulti``, attributes outside the schema) a list on either side does, and so
    does ``Add``, which the seed defines only for multi-valued attributes.
    """
    if policy.multi_valued(name, current, value):
        return True
    # kind() with a list on one side is SINGLE only for attributes the schema declares so.
    return op is ChangeOp.ADD and policy.kind(name, [], None) is not Kind.SINGLE


def touched_attributes(before: Account, after: Account, record: ProvisioningRecord) -> set[str]:
    """The attributes a record touched: those its changes name and those whose value moved."""
    names = {change.attribute for change in record.input.changes}
    for name in before.attributes.keys() | after.attributes.keys():
        if not same_raw(before.attributes.get(name), after.attributes.get(name)):
            names.add(name)
    return names


def same_value(
    policy: SourcePolicy, name: str, left: AttributeValue, right: AttributeValue
) -> bool:
    """Whether two values of an attribute compare equal under R2-R5 (monitored or not)."""
    kind, _, normalise, fold = policy.plan(name, left, right)
    if kind is Kind.SINGLE:
        return single_key(left, normalise) == single_key(right, normalise)
    return value_set(left, normalise, fold).keys() == value_set(right, normalise, fold).keys()


def shows_changes(
    policy: SourcePolicy, previous: Account, current: Account, record: ProvisioningRecord
) -> bool:
    """Whether ``current`` shows exactly the changes a (pending) record declares.

    Every attribute the record would touch on ``previous`` must hold, in ``current``, the
    value the record would give it; a record that would change nothing never matches.
    """
    expected = apply_provisioning(policy, previous, record)
    touched = touched_attributes(previous, expected, record)
    if expected is previous or not touched:
        return False
    return all(
        same_value(policy, name, expected.attributes.get(name), current.attributes.get(name))
        for name in touched
    )


def shield(current: Account, stored: Mapping[str, AttributeValue], names: Iterable[str]) -> Account:
    """``current`` with the given attributes taken from ``stored`` (the stored account's
    attributes: the race window)."""
    attributes = dict(current.attributes)
    for name in names:
        if name in stored:
            attributes[name] = _copy(stored[name])
        else:
            attributes.pop(name, None)
    return current.model_copy(update={"attributes": attributes})


def is_not_found(record: ProvisioningRecord) -> bool:
    """Whether the connector answered that the account is gone (error type ``notFound``)."""
    return record.error is not None and record.error.type.casefold() == "notfound"


_NOT_COMPLETED = datetime.min.replace(tzinfo=UTC)


def provisioning_order(records: Iterable[ProvisioningRecord]) -> list[ProvisioningRecord]:
    """Records ordered by (completedAt as an instant, records without one first, canonical
    JSON): file order is moot."""

    def key(record: ProvisioningRecord) -> tuple[datetime, str]:
        canonical = json.dumps(record.model_dump(mode="json"), sort_keys=True, ensure_ascii=True)
        return (record.completedAt or _NOT_COMPLETED, canonical)

    return sorted(records, key=key)
