"""An event as plain JSON data: the shapes of its parts, and the :class:`Event` value.

The core builds events as the dicts and lists they are written as (key order is the output
order), not as pydantic models: a changed account's event would otherwise be validated
field by field, nested blocks and all, only to be dumped back to this very data. The models
of :mod:`processor.models.outputs` stay the published schema; tests validate every kind of
event the core builds with them and check that it dumps back to the same JSON, so the two
cannot drift. The shapes below mirror those models, field for field and in their order.

Everything in an event's body is read-only once built: blocks such as the source's or a
catalog ref are shared between events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

from processor.models import AttributeValue, Operation, Scalar


class ManagerJson(TypedDict):
    """``identity.manager`` (:class:`~processor.models.EventManager`)."""

    id: str | None
    name: str | None
    type: Literal["IDENTITY"]
    email: str | None


class IdentityJson(TypedDict):
    """``identity`` (:class:`~processor.models.EventIdentity`)."""

    id: str
    name: str | None
    alias: str | None
    type: Literal["IDENTITY"]
    email: str | None
    manager: ManagerJson | None


class SourceOwnerJson(TypedDict):
    """``source.owner`` (:class:`~processor.models.EventSourceOwner`)."""

    id: str | None
    name: str | None
    type: Literal["IDENTITY"]
    email: str | None


class GovernanceGroupJson(TypedDict):
    """``source.governanceGroup`` (:class:`~processor.models.EventGovernanceGroup`)."""

    id: str | None
    name: str | None
    type: Literal["GOVERNANCE_GROUP"]


class SourceJson(TypedDict):
    """``source`` (:class:`~processor.models.EventSource`)."""

    id: str
    name: str
    alias: str | None
    type: Literal["SOURCE"]
    owner: SourceOwnerJson | None
    governanceGroup: GovernanceGroupJson | None


class AccountJson(TypedDict):
    """``account`` (:class:`~processor.models.EventAccount`)."""

    id: str | None
    name: str | None
    type: Literal["ACCOUNT"]
    uuid: str | None
    correlated: bool
    nativeIdentity: str


class SingleChangeJson(TypedDict):
    """One of ``singleValueAttributeChanges`` (:class:`~processor.models.SingleValueChange`)."""

    name: str
    oldValue: AttributeValue
    newValue: AttributeValue


class MultiChangeJson(TypedDict):
    """One of ``multiValueAttributeChanges`` (:class:`~processor.models.MultiValueChange`)."""

    name: str
    addedValues: list[Scalar]
    removedValues: list[Scalar]


class RefOwnerJson(TypedDict):
    """A ref's ``owner`` (:class:`~processor.models.EntitlementOwnerOut`)."""

    id: str | None
    name: str | None
    type: Literal["IDENTITY"]


class RefJson(TypedDict):
    """An entitlement ref (:class:`~processor.models.EntitlementRef`)."""

    id: str | None
    name: str | None
    value: str
    owner: RefOwnerJson | None


class EntitlementChangeJson(TypedDict):
    """One of ``entitlementChanges`` (:class:`~processor.models.EntitlementChange`)."""

    attributeName: str
    added: list[RefJson]
    removed: list[RefJson]


class EventJson(TypedDict):
    """A whole event (the models of :func:`~processor.models.event_class`); ``id`` last."""

    eventType: str
    accountChangeTypes: list[str]
    identity: IdentityJson
    source: SourceJson
    account: AccountJson
    singleValueAttributeChanges: list[SingleChangeJson]
    multiValueAttributeChanges: list[MultiChangeJson]
    entitlementChanges: list[EntitlementChangeJson]
    id: str


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its operation and its body, the JSON the outputs write as it is."""

    operation: Operation
    body: EventJson

    @property
    def id(self) -> str:
        """The deterministic event id (also the CloudEvents ``ce_id``)."""
        return self.body["id"]

    @property
    def source_id(self) -> str:
        """The id of the event's source."""
        return self.body["source"]["id"]

    @property
    def native_identity(self) -> str:
        """The account's nativeIdentity."""
        return self.body["account"]["nativeIdentity"]

    @property
    def uuid(self) -> str | None:
        """The account's uuid, if it has one."""
        return self.body["account"]["uuid"]
