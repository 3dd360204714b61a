"""The worker's output records: events and remediation commands, as CloudEvents.

Both carry CloudEvents binary-mode headers (the payload is the record's value, the
attributes are headers): ``ce_specversion``, ``ce_id`` (the record's deterministic id),
``ce_source`` (``/sources/<sourceId>``), ``ce_type``, ``ce_time`` (the input record's
timestamp) and ``content-type``. Event types are ``dev.ncd-processor.account.updated``,
``...account.created`` and ``...account.deleted``; remediation commands are
``dev.ncd-processor.remediation.proposed``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from processor import codec
from processor.keys import command_key, event_key
from processor.models import AccountEvent, RemediationCommand
from processor.transport import OutRecord

CE_SPECVERSION = b"1.0"
CE_TYPE_PREFIX = "dev.ncd-processor."
#: The CloudEvents type of a remediation command (a proposal: nothing is applied).
REMEDIATION_CE_TYPE = CE_TYPE_PREFIX + "remediation.proposed"


def ce_type(event_type: str) -> str:
    """The CloudEvents type of an event type (``ACCOUNT_UPDATED`` -> ``...account.updated``)."""
    return CE_TYPE_PREFIX + event_type.lower().replace("_", ".", 1)


def cloud_event_headers(
    record_id: str, source_id: str, type_: str, timestamp_ms: int
) -> tuple[tuple[str, bytes], ...]:
    """CloudEvents binary-mode headers of a JSON record."""
    when = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
    return (
        ("ce_specversion", CE_SPECVERSION),
        ("ce_id", record_id.encode()),
        ("ce_source", f"/sources/{source_id}".encode()),
        ("ce_type", type_.encode()),
        ("ce_time", when.encode()),
        ("content-type", b"application/json"),
    )


def event_record(topic: str, event: AccountEvent, timestamp_ms: int) -> OutRecord:
    """An event as an output record, keyed like its account."""
    headers = cloud_event_headers(event.id, event.source.id, ce_type(event.eventType), timestamp_ms)
    return OutRecord(topic, event_key(event), codec.dumps(event.model_dump(mode="json")), headers)


def remediation_record(topic: str, command: RemediationCommand, timestamp_ms: int) -> OutRecord:
    """A remediation command as an output record, keyed like the event it reverts."""
    headers = cloud_event_headers(command.id, command.sourceId, REMEDIATION_CE_TYPE, timestamp_ms)
    value = codec.dumps(command.model_dump(mode="json"))
    return OutRecord(topic, command_key(command), value, headers)
