"""Factories for the core's unit tests: sources, accounts, catalogs, provisioning records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from processor.core import EntitlementCatalog, Event, SourcePolicy, decide_event
from processor.models import (
    Account,
    CatalogEntry,
    Operation,
    ProvisioningRecord,
    SourceDescriptor,
)
from tests.helpers import event_model

SOURCE_ID = "2c91808a78efc63e0178fb8624b248c5"
ALL_OPERATIONS = [op.value for op in Operation]

#: A schema covering every attribute type and kind.
SCHEMA: list[dict[str, Any]] = [
    {"name": "title", "type": "STRING"},
    {"name": "department", "type": "STRING"},
    {"name": "employeeNumber", "type": "INT"},
    {"name": "logonCount", "type": "LONG"},
    {"name": "active", "type": "BOOLEAN"},
    {"name": "hireDate", "type": "DATE"},
    {"name": "accountFlags", "type": "STRING", "isMulti": True},
    {"name": "memberOf", "type": "STRING", "isMulti": True, "isEntitlement": True, "isGroup": True},
    {"name": "profile", "type": "STRING", "isEntitlement": True},
    {"name": "sAMAccountName", "type": "STRING"},
]


def make_source(
    *,
    schema: Iterable[Mapping[str, Any]] = SCHEMA,
    enabled: bool = True,
    operations: Iterable[str] = ALL_OPERATIONS,
    all_entitlements: bool = True,
    all_others: bool = True,
    selected_entitlements: Iterable[str] = (),
    selected_others: Iterable[str] = (),
    case_insensitive: bool | None = None,
    delete_threshold: float | None = None,
    **extra: Any,
) -> SourceDescriptor:
    """A validated source descriptor; ``None`` leaves an optional field out."""
    document: dict[str, Any] = {
        "id": SOURCE_ID,
        "name": "Active Directory",
        "alias": "Active Directory [source]",
        "owner": {"id": "2c9180867a7c46d0017a7ca099d50531", "name": "Aaron Andrew", "email": ""},
        "governanceGroup": {"id": "fd0d1393", "name": "AD Owners"},
        "accountSchema": {
            "identityAttribute": "distinguishedName",
            "displayAttribute": "sAMAccountName",
            "attributes": [dict(attribute) for attribute in schema],
        },
        "nativeChangeDetectionConfig": {
            "enabled": enabled,
            "operations": list(operations),
            "allEntitlements": all_entitlements,
            "allNonEntitlementAttributes": all_others,
            "selectedEntitlements": list(selected_entitlements),
            "selectedNonEntitlementAttributes": list(selected_others),
        },
    }
    if case_insensitive is not None:
        document["caseInsensitive"] = case_insensitive
    if delete_threshold is not None:
        document["deleteThreshold"] = delete_threshold
    document.update(extra)
    return SourceDescriptor.model_validate(document)


def make_policy(**kwargs: Any) -> SourcePolicy:
    """A compiled policy of :func:`make_source`."""
    return SourcePolicy.from_source(make_source(**kwargs))


def make_account(
    native_identity: str = "CN=Ann English,OU=Call Center,DC=example,DC=com",
    attributes: Mapping[str, Any] | None = None,
    **fields: Any,
) -> Account:
    """A validated account record (uncorrelated unless ``identity`` is given)."""
    document: dict[str, Any] = {
        "nativeIdentity": native_identity,
        "attributes": dict(attributes or {}),
    }
    document.update(fields)
    return Account.model_validate(document)


ANN_IDENTITY: dict[str, Any] = {
    "id": "2c91808978eb9fab0178fb8ca6d308fb",
    "name": "Ann English",
    "alias": "Ann.English",
    "email": "",
    "manager": {"id": "2c91808378eb9fa30178fb8caf90097f", "name": "Martena Heath", "email": ""},
}


def make_catalog(*entries: Mapping[str, Any]) -> EntitlementCatalog:
    """A catalog of validated entries (attribute defaults to memberOf)."""
    return EntitlementCatalog(
        CatalogEntry.model_validate({"attribute": "memberOf", **entry}) for entry in entries
    )


def make_record(
    target: str,
    changes: Iterable[Mapping[str, Any]] = (),
    *,
    output: Mapping[str, Any] | None = None,
    completed_at: str | None = "2026-11-22T08:00:00Z",
    **fields: Any,
) -> ProvisioningRecord:
    """A provisioning record keyed by ``input.key.simple.id``."""
    document: dict[str, Any] = {
        "sourceId": SOURCE_ID,
        "command": "std:account:update",
        "input": {"key": {"simple": {"id": target}}, "changes": [dict(c) for c in changes]},
        "output": dict(output or {}),
        "completedAt": completed_at,
    }
    document.update(fields)
    return ProvisioningRecord.model_validate(document)


def update_event(
    previous: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    catalog: EntitlementCatalog | None = None,
    **source: Any,
) -> Event | None:
    """The event (or ``None``) of one matched account whose attributes went from A to B."""
    policy = make_policy(**source)
    return decide_event(
        policy,
        make_account(attributes=previous),
        make_account(attributes=current),
        catalog or EntitlementCatalog(),
    )


def dump(event: Event | None) -> dict[str, Any] | None:
    """An event's JSON data, checked with its published model (``None`` stays ``None``)."""
    if event is None:
        return None
    event_model(event)
    return dict(event.body)
