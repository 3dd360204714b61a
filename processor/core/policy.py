"""A source descriptor compiled once into cheap per-attribute lookups (R2, R4, R6)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from processor.core.event import SourceJson
from processor.core.values import Normaliser, make_normaliser
from processor.models import (
    AttributeType,
    AttributeValue,
    Operation,
    SourceDescriptor,
)


class Kind(StrEnum):
    """How an attribute's values are compared and reported (R2)."""

    SINGLE = "single"
    MULTI = "multi"
    ENTITLEMENT = "entitlement"


@dataclass(frozen=True, slots=True)
class _SchemaEntry:
    kind: Kind
    is_multi: bool
    normalise: Normaliser
    text_fold: bool | None


class Plan(NamedTuple):
    """How one attribute's values are compared and whether its changes are reported:
    :meth:`SourcePolicy.kind`, :meth:`SourcePolicy.monitored`, :meth:`SourcePolicy.normaliser`
    and ``text_fold`` (for STRING attributes whether strings are case-folded, ``None`` for
    typed ones) in one look (:meth:`SourcePolicy.plan`)."""

    kind: Kind
    monitored: bool
    normalise: Normaliser
    text_fold: bool | None


class SourcePolicy:
    """The rules of one source: attribute kinds, monitoring, normalisers, identity keys."""

    __slots__ = (
        "_all_entitlements",
        "_all_others",
        "_default_normalise",
        "_enabled",
        "_operations",
        "_plans",
        "_schema",
        "_selected_entitlements",
        "_selected_others",
        "case_insensitive",
        "event_source",
        "source",
    )

    def __init__(self, source: SourceDescriptor) -> None:
        self.source = source
        self.case_insensitive = source.caseInsensitive
        config = source.nativeChangeDetectionConfig
        self._enabled = config.enabled
        self._operations = frozenset(config.operations)
        self._all_entitlements = config.allEntitlements
        self._all_others = config.allNonEntitlementAttributes
        self._selected_entitlements = frozenset(config.selectedEntitlements)
        self._selected_others = frozenset(config.selectedNonEntitlementAttributes)
        normalisers = {
            attribute_type: make_normaliser(attribute_type, self.case_insensitive)
            for attribute_type in AttributeType
        }
        self._default_normalise = normalisers[AttributeType.STRING]
        self._schema: dict[str, _SchemaEntry] = {}
        for attribute in source.accountSchema.attributes:
            if attribute.isEntitlement:
                kind = Kind.ENTITLEMENT
            elif attribute.isMulti:
                kind = Kind.MULTI
            else:
                kind = Kind.SINGLE
            self._schema[attribute.name] = _SchemaEntry(
                kind,
                attribute.isMulti,
                normalisers[attribute.type],
                self.case_insensitive if attribute.type is AttributeType.STRING else None,
            )
        self.event_source = _event_source(source)
        #: The plans of the schema's attributes, fixed (those outside it depend on values).
        self._plans = {
            name: Plan(
                entry.kind, self.monitored(name, entry.kind), entry.normalise, entry.text_fold
            )
            for name, entry in self._schema.items()
        }

    @classmethod
    def from_source(cls, source: SourceDescriptor) -> SourcePolicy:
        """Compile a source descriptor."""
        return cls(source)

    def kind(self, name: str, previous: AttributeValue, current: AttributeValue) -> Kind:
        """R2: the schema's kind; outside the schema, multi if either side holds a list."""
        entry = self._schema.get(name)
        if entry is not None:
            return entry.kind
        if isinstance(previous, list) or isinstance(current, list):
            return Kind.MULTI
        return Kind.SINGLE

    def monitored(self, name: str, kind: Kind) -> bool:
        """R6: whether changes of this attribute are reported."""
        if not self._enabled:
            return False
        if kind is Kind.ENTITLEMENT:
            return self._all_entitlements or name in self._selected_entitlements
        return self._all_others or name in self._selected_others

    def plan(self, name: str, previous: AttributeValue, current: AttributeValue) -> Plan:
        """How an attribute is compared and whether its changes are reported (outside the
        schema its kind depends on the values, R2)."""
        plan = self._plans.get(name)
        if plan is not None:
            return plan
        kind = self.kind(name, previous, current)
        return Plan(
            kind, self.monitored(name, kind), self._default_normalise, self.case_insensitive
        )

    def operation_monitored(self, op: Operation) -> bool:
        """R6/R7-R9: whether NCD is enabled and this operation is monitored."""
        return self._enabled and op in self._operations

    def identity_key(self, native_identity: str) -> str:
        """The key nativeIdentities are matched by (R1): folded when caseInsensitive."""
        return native_identity.casefold() if self.case_insensitive else native_identity

    def normaliser(self, name: str) -> Normaliser:
        """The R4 key function of an attribute (STRING outside the schema)."""
        entry = self._schema.get(name)
        return self._default_normalise if entry is None else entry.normalise

    def multi_valued(self, name: str, current: AttributeValue, value: AttributeValue) -> bool:
        """Whether a provisioning change treats the attribute as a list (R15).

        Multi-valued attributes are; entitlements and attributes outside the schema are
        when the account's value or the change's value is a list.
        """
        entry = self._schema.get(name)
        if entry is not None and (entry.is_multi or entry.kind is Kind.SINGLE):
            return entry.is_multi
        return isinstance(current, list) or isinstance(value, list)


def _event_source(source: SourceDescriptor) -> SourceJson:
    owner = source.owner
    group = source.governanceGroup
    return {
        "id": source.id,
        "name": source.name,
        "alias": source.alias,
        "type": "SOURCE",
        "owner": None
        if owner is None
        else {"id": owner.id, "name": owner.name, "type": "IDENTITY", "email": owner.email},
        "governanceGroup": None
        if group is None
        else {"id": group.id, "name": group.name, "type": "GOVERNANCE_GROUP"},
    }
