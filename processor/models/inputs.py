"""The records the processor reads: source descriptors, accounts, catalog entries,
provisioning records and the aggregation stream (unknown fields are ignored)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StrictStr, ValidatorFunctionWrapHandler, field_validator

from processor.models.common import (
    AggregationId,
    AttributeValue,
    ChangeOp,
    ChangeType,
    InputModel,
    Instant,
    Operation,
    SourceId,
    plain_attributes,
)

# --------------------------------------------------------------------------- source


class AttributeType(StrEnum):
    STRING = "STRING"
    LONG = "LONG"
    INT = "INT"
    BOOLEAN = "BOOLEAN"
    DATE = "DATE"


class SchemaAttribute(InputModel):
    name: Annotated[str, Field(min_length=1)]
    type: AttributeType = AttributeType.STRING
    isMulti: bool = False
    isEntitlement: bool = False
    isGroup: bool = False


class AccountSchema(InputModel):
    identityAttribute: str | None = None
    displayAttribute: str | None = None
    attributes: list[SchemaAttribute] = Field(default_factory=list)


class NativeChangeDetectionConfig(InputModel):
    """Per-source NCD config; every field defaults as in ISC's API (false / empty)."""

    enabled: bool = False
    operations: list[Operation] = Field(default_factory=list)
    allEntitlements: bool = False
    allNonEntitlementAttributes: bool = False
    selectedEntitlements: list[str] = Field(default_factory=list)
    selectedNonEntitlementAttributes: list[str] = Field(default_factory=list)


class OwnerRef(InputModel):
    id: str | None = None
    name: str | None = None
    email: str | None = ""


class GovernanceGroupRef(InputModel):
    id: str | None = None
    name: str | None = None


class RemediationConfig(InputModel):
    """``ext``: a source asks the worker to propose revert commands for native events."""

    mode: Literal["propose"] = "propose"
    revert: list[ChangeType] = Field(default_factory=list)


class SourceDescriptor(InputModel):
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


class ManagerRef(InputModel):
    id: str | None = None
    name: str | None = None
    email: str | None = ""


class IdentityInput(InputModel):
    id: str | None = None
    name: str | None = None
    alias: str | None = None
    email: str | None = ""
    manager: ManagerRef | None = None


class Account(InputModel):
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

    @field_validator("attributes", mode="wrap")
    @classmethod
    def _plain_as_given(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        """Attributes as JSON decoding gives them are taken as they are (copied), without a
        step of the union per value (issue 14): the validation would return the same values;
        anything else is validated (and rejected with the same reasons)."""
        if plain_attributes(value):
            return dict(value)
        return handler(value)


# --------------------------------------------------------------------------- catalog


class EntitlementOwner(InputModel):
    id: str | None = None
    name: str | None = None


class CatalogEntry(InputModel):
    attribute: Annotated[str, Field(min_length=1)]
    value: StrictStr
    id: str | None = None
    name: str | None = None
    owner: EntitlementOwner | None = None
    #: Present on ``ncd.entitlements`` stream records; absent in a catalog file.
    sourceId: SourceId | None = None


# --------------------------------------------------------------------------- provisioning


class AttributeChange(InputModel):
    op: ChangeOp
    attribute: Annotated[str, Field(min_length=1)]
    value: AttributeValue = None


class SimpleKey(InputModel):
    id: str


class CompoundKey(InputModel):
    lookupId: str
    uniqueId: str | None = None


class AccountKey(InputModel):
    simple: SimpleKey | None = None
    compound: CompoundKey | None = None


class StdAccountUpdateInput(InputModel):
    """The connector command's input (seed ``account-update-command.txt``)."""

    key: AccountKey | None = None
    identity: str | None = None
    changes: list[AttributeChange] = Field(default_factory=list)


class StdAccountUpdateOutput(InputModel):
    """The connector's answer: ``{}`` (no change) or the complete account as on the source."""

    key: AccountKey | None = None
    disabled: bool | None = None
    locked: bool | None = None
    attributes: dict[str, AttributeValue] | None = None


class ProvisioningError(InputModel):
    type: str
    message: str | None = None


class ProvisioningStatus(StrEnum):
    COMPLETED = "COMPLETED"
    PENDING = "PENDING"
    FAILED = "FAILED"


class ProvisioningRecord(InputModel):
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


# --------------------------------------------------------------------------- aggregation stream


class AggregationMode(StrEnum):
    FULL = "FULL"
    DELTA = "DELTA"


class AggregationStatus(StrEnum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"


class AggregationStarted(InputModel):
    type: Literal["aggregation.started"]
    sourceId: SourceId
    aggregationId: AggregationId
    startedAt: Instant
    mode: AggregationMode = AggregationMode.FULL


class AccountRecord(InputModel):
    type: Literal["account"]
    sourceId: SourceId
    aggregationId: AggregationId
    account: Account
    deleted: bool = False


class AggregationCompleted(InputModel):
    type: Literal["aggregation.completed"]
    sourceId: SourceId
    aggregationId: AggregationId
    status: AggregationStatus
    accountCount: Annotated[int, Field(ge=0)] | None = None


AggregationRecord = Annotated[
    AggregationStarted | AccountRecord | AggregationCompleted, Field(discriminator="type")
]
