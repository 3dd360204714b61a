"""Pydantic models of the records the processor reads and writes (docs/records.md).

Inputs (source descriptor, account record, catalog entry, provisioning record,
aggregation records) tolerate unknown fields so that newer producers do not
break older workers (``extra="ignore"``). Outputs (the three events) are exact
(``extra="forbid"``) and their field order is the serialisation order.

Field names are SailPoint's where SailPoint has one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)

# --------------------------------------------------------------------------- values

#: A scalar attribute value. Strict types keep ``"5"`` and ``5`` apart so that the
#: typed comparison of R4 is done by the core, not by the parser.
Scalar = StrictStr | StrictBool | StrictInt | StrictFloat | None
#: An attribute value: a scalar or a list of scalars.
AttributeValue = Scalar | list[Scalar]

#: Longest source id, in characters.
MAX_SOURCE_ID_CHARS = 128
#: What a source id may hold: ASCII letters, digits, ``.``, ``_``, ``:`` and ``-``. Never ``/``,
#: which separates the parts of record and state keys: no source's keys can then be a prefix
#: of another's (``hr`` and ``hr/payroll`` would share ``a/hr/``).
SOURCE_ID_PATTERN = r"^[A-Za-z0-9._:-]+$"
SourceId = Annotated[
    str, Field(min_length=1, max_length=MAX_SOURCE_ID_CHARS, pattern=SOURCE_ID_PATTERN)
]
#: Longest aggregation id, in characters (they are kept per running aggregation).
MAX_AGGREGATION_ID_CHARS = 128
AggregationId = Annotated[str, Field(min_length=1, max_length=MAX_AGGREGATION_ID_CHARS)]


def _instant_text(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time text")  # never a number of seconds
    return value


#: An instant of the stream and of provisioning (``startedAt``, ``completedAt``): RFC 3339
#: text with a time-zone offset ("Z" or +hh:mm). Parsed here and nowhere else, so ``diff``,
#: ``replay`` and the worker accept and refuse the same texts (one without an offset is bad
#: input everywhere).
Instant = Annotated[AwareDatetime, BeforeValidator(_instant_text)]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch of an aware instant (floored, exact)."""
    return (moment - _EPOCH) // _MILLISECOND


class _Input(BaseModel):
    """Base of input models: unknown fields are ignored (forward compatible)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class _Output(BaseModel):
    """Base of output models: exact, no unknown fields.

    Their JSON Schemas describe what is written (serialization mode): a field with a default,
    such as ``eventType`` or a ``type`` constant, is always in the output, so it is required.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )


# --------------------------------------------------------------------------- source


class AttributeType(StrEnum):
    STRING = "STRING"
    LONG = "LONG"
    INT = "INT"
    BOOLEAN = "BOOLEAN"
    DATE = "DATE"


class Operation(StrEnum):
    ACCOUNT_UPDATED = "ACCOUNT_UPDATED"
    ACCOUNT_CREATED = "ACCOUNT_CREATED"
    ACCOUNT_DELETED = "ACCOUNT_DELETED"


class ChangeType(StrEnum):
    ATTRIBUTES_CHANGED = "ATTRIBUTES_CHANGED"
    ENTITLEMENTS_ADDED = "ENTITLEMENTS_ADDED"
    ENTITLEMENTS_REMOVED = "ENTITLEMENTS_REMOVED"


class SchemaAttribute(_Input):
    name: Annotated[str, Field(min_length=1)]
    type: AttributeType = AttributeType.STRING
    isMulti: bool = False
    isEntitlement: bool = False
    isGroup: bool = False


class AccountSchema(_Input):
    identityAttribute: str | None = None
    displayAttribute: str | None = None
    attributes: list[SchemaAttribute] = Field(default_factory=list)


class NativeChangeDetectionConfig(_Input):
    """Per-source NCD config; every field defaults as in ISC's API (false / empty)."""

    enabled: bool = False
    operations: list[Operation] = Field(default_factory=list)
    allEntitlements: bool = False
    allNonEntitlementAttributes: bool = False
    selectedEntitlements: list[str] = Field(default_factory=list)
    selectedNonEntitlementAttributes: list[str] = Field(default_factory=list)


class OwnerRef(_Input):
    id: str | None = None
    name: str | None = None
    email: str | None = ""


class GovernanceGroupRef(_Input):
    id: str | None = None
    name: str | None = None


class RemediationConfig(_Input):
    """``ext``: a source asks the worker to propose revert commands for native events."""

    mode: Literal["propose"] = "propose"
    revert: list[ChangeType] = Field(default_factory=list)


class SourceDescriptor(_Input):
    id: SourceId
    name: str
    alias: str | None = None
    owner: OwnerRef | None = None
    governanceGroup: GovernanceGroupRef | None = None
    accountSchema: AccountSchema = Field(default_factory=AccountSchema)
    nativeChangeDetectionConfig: NativeChangeDetectionConfig = Field(
        default_factory=NativeChangeDetectionConfig
    )
    #: ``ext``: compare strings, set members and nativeIdentity case-insensitively.
    caseInsensitive: bool = False
    #: Percent of the previous snapshot; more deletions than this suppresses them all (R10).
    deleteThreshold: Annotated[float, Field(ge=0, le=100)] = 10
    remediation: RemediationConfig | None = None


# --------------------------------------------------------------------------- account


class ManagerRef(_Input):
    id: str | None = None
    name: str | None = None
    email: str | None = ""


class IdentityInput(_Input):
    id: str | None = None
    name: str | None = None
    alias: str | None = None
    email: str | None = ""
    manager: ManagerRef | None = None


class Account(_Input):
    """One account as read from the source (a snapshot line, or a stream record's account)."""

    id: str | None = None
    nativeIdentity: Annotated[str, Field(min_length=1)]
    uuid: str | None = None
    name: str | None = None
    correlated: bool | None = None
    identity: IdentityInput | None = None
    disabled: bool | None = None
    locked: bool | None = None
    attributes: dict[str, AttributeValue]


# --------------------------------------------------------------------------- catalog


class EntitlementOwner(_Input):
    id: str | None = None
    name: str | None = None


class CatalogEntry(_Input):
    attribute: Annotated[str, Field(min_length=1)]
    value: StrictStr
    id: str | None = None
    name: str | None = None
    owner: EntitlementOwner | None = None
    #: Present on ``ncd.entitlements`` stream records; absent in a catalog file.
    sourceId: SourceId | None = None


# --------------------------------------------------------------------------- provisioning


class ChangeOp(StrEnum):
    SET = "Set"
    ADD = "Add"
    REMOVE = "Remove"


class AttributeChange(_Input):
    op: ChangeOp
    attribute: Annotated[str, Field(min_length=1)]
    value: AttributeValue = None


class SimpleKey(_Input):
    id: str


class CompoundKey(_Input):
    lookupId: str
    uniqueId: str | None = None


class AccountKey(_Input):
    simple: SimpleKey | None = None
    compound: CompoundKey | None = None


class StdAccountUpdateInput(_Input):
    """The connector command's input (seed ``account-update-command.txt``)."""

    key: AccountKey | None = None
    identity: str | None = None
    changes: list[AttributeChange] = Field(default_factory=list)


class StdAccountUpdateOutput(_Input):
    """The connector's answer: ``{}`` (no change) or the complete account as on the source."""

    key: AccountKey | None = None
    disabled: bool | None = None
    locked: bool | None = None
    attributes: dict[str, AttributeValue] | None = None


class ProvisioningError(_Input):
    type: str
    message: str | None = None


class ProvisioningStatus(StrEnum):
    COMPLETED = "COMPLETED"
    PENDING = "PENDING"
    FAILED = "FAILED"


class ProvisioningRecord(_Input):
    sourceId: SourceId
    command: Literal["std:account:update"] = "std:account:update"
    input: StdAccountUpdateInput
    output: StdAccountUpdateOutput = Field(default_factory=StdAccountUpdateOutput)
    completedAt: Instant | None = None
    #: ``ext`` (issue 4): a record without a status is completed.
    status: ProvisioningStatus = ProvisioningStatus.COMPLETED
    error: ProvisioningError | None = None

    def unique_id(self) -> str | None:
        """``input.key.compound.uniqueId``: the account's uuid, when the record names it."""
        key = self.input.key
        if key is None or key.compound is None:
            return None
        return key.compound.uniqueId or None

    def target(self) -> str | None:
        """The account's nativeIdentity: simple id, else compound lookupId, else identity."""
        key = self.input.key
        if key is not None and key.simple is not None:
            return key.simple.id
        if key is not None and key.compound is not None:
            return key.compound.lookupId
        return self.input.identity


# --------------------------------------------------------------------------- remediation (output)


class CommandChange(_Output):
    """One change of a remediation command: one value as a string, several as a list."""

    op: ChangeOp
    attribute: str
    value: AttributeValue


class CommandKey(_Output):
    simple: CommandSimpleKey


class CommandSimpleKey(_Output):
    id: str


class CommandInput(_Output):
    """A ``std:account:update`` input (seed ``account-update-command.txt``)."""

    key: CommandKey
    changes: list[CommandChange]


class RemediationCommand(_Output):
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


# --------------------------------------------------------------------------- aggregation stream


class AggregationMode(StrEnum):
    FULL = "FULL"
    DELTA = "DELTA"


class AggregationStatus(StrEnum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"


class AggregationStarted(_Input):
    type: Literal["aggregation.started"]
    sourceId: SourceId
    aggregationId: AggregationId
    startedAt: Instant
    mode: AggregationMode = AggregationMode.FULL


class AccountRecord(_Input):
    type: Literal["account"]
    sourceId: SourceId
    aggregationId: AggregationId
    account: Account
    deleted: bool = False


class AggregationCompleted(_Input):
    type: Literal["aggregation.completed"]
    sourceId: SourceId
    aggregationId: AggregationId
    status: AggregationStatus
    accountCount: Annotated[int, Field(ge=0)] | None = None


AggregationRecord = Annotated[
    AggregationStarted | AccountRecord | AggregationCompleted, Field(discriminator="type")
]


# --------------------------------------------------------------------------- events (outputs)


class EventManager(_Output):
    id: str | None
    name: str | None
    type: Literal["IDENTITY"] = "IDENTITY"
    email: str | None


class EventIdentity(_Output):
    id: str
    name: str | None
    alias: str | None
    type: Literal["IDENTITY"] = "IDENTITY"
    email: str | None
    manager: EventManager | None


class EventSourceOwner(_Output):
    id: str | None
    name: str | None
    type: Literal["IDENTITY"] = "IDENTITY"
    email: str | None


class EventGovernanceGroup(_Output):
    """``source.governanceGroup``; its ``type`` as in SailPoint's current trigger examples."""

    id: str | None
    name: str | None
    type: Literal["GOVERNANCE_GROUP"] = "GOVERNANCE_GROUP"


class EventSource(_Output):
    id: str
    name: str
    alias: str | None
    type: Literal["SOURCE"] = "SOURCE"
    owner: EventSourceOwner | None
    governanceGroup: EventGovernanceGroup | None


class EventAccount(_Output):
    id: str | None
    name: str | None
    type: Literal["ACCOUNT"] = "ACCOUNT"
    uuid: str | None
    correlated: bool
    nativeIdentity: str


class SingleValueChange(_Output):
    name: str
    oldValue: AttributeValue
    newValue: AttributeValue


class MultiValueChange(_Output):
    name: str
    addedValues: list[Scalar]
    removedValues: list[Scalar]


class EntitlementRef(_Output):
    id: str | None
    name: str | None
    value: str
    owner: EntitlementOwnerOut | None


class EntitlementOwnerOut(_Output):
    """A non-null entitlement ``owner``: an identity, as in SailPoint's trigger examples."""

    id: str | None
    name: str | None
    type: Literal["IDENTITY"] = "IDENTITY"


class EntitlementChange(_Output):
    attributeName: str
    added: list[EntitlementRef]
    removed: list[EntitlementRef]


class _EventBase(_Output):
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
