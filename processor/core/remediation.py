"""Remediation: the ``std:account:update`` command that would revert one native event.

A source asks for it with ``"remediation": {"mode": "propose", "revert": [...]}``; the
listed change types say what to put back: ``ATTRIBUTES_CHANGED`` (single-valued: Set the
old value, or Remove when there was none; multi-valued: Remove what was added, Add what
was removed), ``ENTITLEMENTS_ADDED`` (Remove them) and ``ENTITLEMENTS_REMOVED`` (Add them
back). Values follow the seed: one value as a string (a scalar), several as a list.
Per attribute, Set comes first, then Remove, then Add, so that a single-valued entitlement
is cleared before its old value is added back. Deletions give no command (an update
cannot bring an account back).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from processor.core.detect import event_id
from processor.core.event import Event
from processor.core.values import has_value, single_key
from processor.models import (
    AttributeValue,
    ChangeOp,
    ChangeType,
    CommandChange,
    CommandInput,
    CommandKey,
    CommandSimpleKey,
    Operation,
    RemediationCommand,
    RemediationConfig,
    Scalar,
)

#: The context mixed into a command's deterministic id (so it never equals its event's).
ID_CONTEXT = "remediation"
_OP_ORDER = {ChangeOp.SET: 0, ChangeOp.REMOVE: 1, ChangeOp.ADD: 2}


def wanted(config: RemediationConfig | None) -> frozenset[ChangeType]:
    """The change types a source asks to revert (none without a remediation config)."""
    return frozenset() if config is None else frozenset(config.revert)


def remediation_command(event: Event, revert: Collection[ChangeType]) -> RemediationCommand | None:
    """The command that reverts the event's changes of the given types, or ``None``."""
    if event.operation is Operation.ACCOUNT_DELETED or not revert:
        return None
    body = event.body
    changes: list[CommandChange] = []
    if ChangeType.ATTRIBUTES_CHANGED in revert:
        for single in body["singleValueAttributeChanges"]:
            changes.append(_revert_single(single["name"], single["oldValue"], single["newValue"]))
        for multi in body["multiValueAttributeChanges"]:
            changes.extend(_revert_set(multi["name"], multi["addedValues"], multi["removedValues"]))
    add_back = ChangeType.ENTITLEMENTS_REMOVED in revert
    take_away = ChangeType.ENTITLEMENTS_ADDED in revert
    for ent in body["entitlementChanges"]:
        added = [ref["value"] for ref in ent["added"]] if take_away else []
        removed = [ref["value"] for ref in ent["removed"]] if add_back else []
        changes.extend(_revert_set(ent["attributeName"], added, removed))
    if not changes:
        return None
    changes.sort(key=lambda change: (change.attribute, _OP_ORDER[change.op]))
    types = [t for t in ChangeType if t in revert and t.value in body["accountChangeTypes"]]
    command = {
        "id": "",
        "sourceId": event.source_id,
        "eventId": event.id,
        "eventType": event.operation,
        "accountChangeTypes": sorted(types),
        "uuid": event.uuid,
        "input": CommandInput(
            key=CommandKey(simple=CommandSimpleKey(id=event.native_identity)),
            changes=changes,
        ),
    }
    draft = RemediationCommand.model_validate(command)
    return draft.model_copy(update={"id": event_id(draft.model_dump(mode="json"), ID_CONTEXT)})


def _revert_single(name: str, old: AttributeValue, new: AttributeValue) -> CommandChange:
    # Any normaliser works here: only "has a value at all" matters.
    if single_key(old, _presence) is None:
        return CommandChange(op=ChangeOp.REMOVE, attribute=name, value=new)
    return CommandChange(op=ChangeOp.SET, attribute=name, value=old)


def _presence(value: Scalar) -> tuple[int, str]:
    return (0, repr(value))


def _revert_set(
    name: str, added: Sequence[Scalar], removed: Sequence[Scalar]
) -> list[CommandChange]:
    changes = []
    drop = [value for value in added if has_value(value)]
    back = [value for value in removed if has_value(value)]
    if drop:
        changes.append(CommandChange(op=ChangeOp.REMOVE, attribute=name, value=_one_or_many(drop)))
    if back:
        changes.append(CommandChange(op=ChangeOp.ADD, attribute=name, value=_one_or_many(back)))
    return changes


def _one_or_many(values: list[Scalar]) -> AttributeValue:
    return values[0] if len(values) == 1 else values
