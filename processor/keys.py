"""Record keys, shared by the publisher (inputs) and the worker (outputs and key checks).

An account's records are keyed ``sourceId/<uuid or nativeIdentity>`` on every topic
(aggregations, provisioning, events, remediations), so that they share a partition number:
the default partitioner hashes the key. A GUID uuid is written as R1 matches it
(``{lower-case hex}``), so the same account lands on the same partition however the source
spelled its uuid this time.
"""

from __future__ import annotations

from processor.core import Event, uuid_key
from processor.models import Account, RemediationCommand


def record_key(source_id: str, uuid: str | None, native_identity: str) -> bytes:
    """``sourceId/<uuid or nativeIdentity>``: the key of an account's records and events."""
    return f"{source_id}/{uuid_key(uuid) if uuid else native_identity}".encode()


def account_record_key(source_id: str, account: Account) -> bytes:
    """The record key of an account on the aggregations topic."""
    return record_key(source_id, account.uuid, account.nativeIdentity)


def event_key(event: Event) -> bytes:
    """The record key of an event: like the account record it was decided from."""
    return record_key(event.source_id, event.uuid, event.native_identity)


def command_key(command: RemediationCommand) -> bytes:
    """The record key of a remediation command: like the event it reverts."""
    return record_key(command.sourceId, command.uuid, command.input.key.simple.id)


def catalog_key(source_id: str, attribute: str, value: str) -> bytes:
    """The key of an entitlement catalog entry: ``sourceId/attribute/value``."""
    return f"{source_id}/{attribute}/{value}".encode()


def marker_key(source_id: str, aggregation_id: str) -> bytes:
    """The key of an aggregation's start and end markers: ``sourceId/aggregationId``."""
    return f"{source_id}/{aggregation_id}".encode()
