"""The platform's own changes, applied to the stored account before diffing (R15)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

from processor.core.policy import SourcePolicy
from processor.core.values import as_items, has_value
from processor.models import (
    Account,
    AttributeChange,
    AttributeValue,
    ChangeOp,
    ProvisioningRecord,
    ProvisioningStatus,
)


def applies_to(policy: SourcePolicy, account: Account, record: ProvisioningRecord) -> bool:
    """Whether a record is for this source and targets this account's nativeIdentity."""
    if record.sourceId != policy.source.id:
        return False
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
    if not policy.multi_valued(name, current, value):
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


def _instant_key(completed_at: str | None) -> tuple[int, str]:
    if completed_at is None:
        return (0, "")
    try:
        parsed = datetime.fromisoformat(completed_at)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return (1, parsed.astimezone(UTC).isoformat())
    except (ValueError, OverflowError):
        return (2, completed_at)


def provisioning_order(records: Iterable[ProvisioningRecord]) -> list[ProvisioningRecord]:
    """Records ordered by (completedAt as an instant, canonical JSON): file order is moot."""

    def key(record: ProvisioningRecord) -> tuple[tuple[int, str], str]:
        canonical = json.dumps(record.model_dump(mode="json"), sort_keys=True, ensure_ascii=True)
        return (_instant_key(record.completedAt), canonical)

    return sorted(records, key=key)
