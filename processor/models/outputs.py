"""The records the processor writes: the three events and remediation commands (exact:
no unknown fields; field order is the serialisation order)."""

from __future__ import annotations

from typing import Literal

from processor.models.common import (
    AttributeValue,
    ChangeOp,
    ChangeType,
    Operation,
    OutputModel,
    Scalar,
)

# --------------------------------------------------------------------------- remediation (output)


class CommandChange(OutputModel):
    """One change of a remediation command: one value as a string, several as a list."""

    op: ChangeOp
    attribute: str
    value: AttributeValue


class CommandKey(OutputModel):
    simple: CommandSimpleKey


class CommandSimpleKey(OutputModel):
    id: str


class CommandInput(OutputModel):
    """A ``std:account:update`` input (seed ``account-update-command.txt``)."""

    key: CommandKey
    changes: list[CommandChange]


class RemediationCommand(OutputModel):
    """``ext``: a proposed ``std:account:update`` that reverts one native event.

    Written to ``ncd.remediations`` keyed like the account; ``id`` is deterministic (same
    event, same id) and ``eventId`` names the event it reverts.
    """

    id: str
    type: Literal["std:account:update"] = "std:account:update"
    mode: Literal["propose"] = "propose"
    sourceId: str
    eventId: str
    eventType: Operation
    accountChangeTypes: list[ChangeType]
    uuid: str | None
    input: CommandInput


# --------------------------------------------------------------------------- events (outputs)


class EventManager(OutputModel):
    id: str | None
    name: str | None
    type: Literal["IDENTITY"] = "IDENTITY"
    email: str | None


class EventIdentity(OutputModel):
    id: str
    name: str | None
    alias: str | None
    type: Literal["IDENTITY"] = "IDENTITY"
    email: str | None
    manager: EventManager | None


class EventSourceOwner(OutputModel):
    id: str | None
    name: str | None
    type: Literal["IDENTITY"] = "IDENTITY"
    email: str | None


class EventGovernanceGroup(OutputModel):
    """``source.governanceGroup``; its ``type`` as in SailPoint's current trigger examples."""

    id: str | None
    name: str | None
    type: Literal["GOVERNANCE_GROUP"] = "GOVERNANCE_GROUP"


class EventSource(OutputModel):
    id: str
    name: str
    alias: str | None
    type: Literal["SOURCE"] = "SOURCE"
    owner: EventSourceOwner | None
    governanceGroup: EventGovernanceGroup | None


class EventAccount(OutputModel):
    id: str | None
    name: str | None
    type: Literal["ACCOUNT"] = "ACCOUNT"
    uuid: str | None
    correlated: bool
    nativeIdentity: str


class SingleValueChange(OutputModel):
    name: str
    oldValue: AttributeValue
    newValue: AttributeValue


class MultiValueChange(OutputModel):
    name: str
    addedValues: list[Scalar]
    removedValues: list[Scalar]


class EntitlementRef(OutputModel):
    id: str | None
    name: str | None
    value: str
    owner: EntitlementOwnerOut | None


class EntitlementOwnerOut(OutputModel):
    """A non-null entitlement ``owner``: an identity, as in SailPoint's trigger examples."""

    id: str | None
    name: str | None
    type: Literal["IDENTITY"] = "IDENTITY"


class EntitlementChange(OutputModel):
    attributeName: str
    added: list[EntitlementRef]
    removed: list[EntitlementRef]


class _EventBase(OutputModel):
    eventType: Operation
    accountChangeTypes: list[ChangeType]
    identity: EventIdentity
    source: EventSource
    account: EventAccount
    singleValueAttributeChanges: list[SingleValueChange]
    multiValueAttributeChanges: list[MultiValueChange]
    entitlementChanges: list[EntitlementChange]
    #: ``ext``: deterministic id (same inputs, same id); also the CloudEvents ``ce_id``.
    id: str


class AccountUpdatedEvent(_EventBase):
    """The input of the Native Change Account Updated trigger."""

    eventType: Literal[Operation.ACCOUNT_UPDATED] = Operation.ACCOUNT_UPDATED


class AccountCreatedEvent(_EventBase):
    """The input of the Native Change Account Created trigger (``oldValue`` always null)."""

    eventType: Literal[Operation.ACCOUNT_CREATED] = Operation.ACCOUNT_CREATED


class AccountDeletedEvent(_EventBase):
    """The input of the Native Change Account Deleted trigger (``newValue`` always null)."""

    eventType: Literal[Operation.ACCOUNT_DELETED] = Operation.ACCOUNT_DELETED


AccountEvent = AccountUpdatedEvent | AccountCreatedEvent | AccountDeletedEvent

EntitlementRef.model_rebuild()
CommandKey.model_rebuild()


def event_class(operation: Operation) -> type[_EventBase]:
    """The event model for one operation."""
    return _EVENT_CLASSES[operation]


_EVENT_CLASSES: dict[Operation, type[_EventBase]] = {
    Operation.ACCOUNT_UPDATED: AccountUpdatedEvent,
    Operation.ACCOUNT_CREATED: AccountCreatedEvent,
    Operation.ACCOUNT_DELETED: AccountDeletedEvent,
}
