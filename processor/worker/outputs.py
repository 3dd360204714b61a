"""The worker's output records: events and remediation commands, as CloudEvents.

Both carry CloudEvents binary-mode headers (the payload is the record's value, the
attributes are headers): ``ce_specversion``, ``ce_id`` (the record's deterministic id),
``ce_source`` (``/sources/<sourceId>``), ``ce_type``, ``ce_time`` (the input record's
timestamp) and ``content-type``. Event types are ``dev.ncd-processor.account.updated``,
``...account.created`` and ``...account.deleted``; remediation commands are
``dev.ncd-processor.remediation.proposed``.

:func:`outputs_of` builds every record one decision produces, and says which of them could
not be written (an output over the size limit goes to the dead-letter topic instead): the
tally counts what was written, not what was decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from processor import codec
from processor.core import Event
from processor.keys import command_key, event_key
from processor.models import RemediationCommand
from processor.transport import InRecord, OutRecord

CE_SPECVERSION = b"1.0"
CE_TYPE_PREFIX = "dev.ncd-processor."
#: The CloudEvents type of a remediation command (a proposal: nothing is applied).
REMEDIATION_CE_TYPE = CE_TYPE_PREFIX + "remediation.proposed"


@lru_cache(maxsize=64)
def ce_type(event_type: str) -> str:
    """The CloudEvents type of an event type (``ACCOUNT_UPDATED`` -> ``...account.updated``)."""
    return CE_TYPE_PREFIX + event_type.lower().replace("_", ".", 1)


# The header values a batch repeats, made once (issue 14): a few sources and types, and the
# records of a batch were mostly written within a few milliseconds of each other.
@lru_cache(maxsize=256)
def _ce_source_and_type(source_id: str, type_: str) -> tuple[tuple[str, bytes], ...]:
    return (("ce_source", f"/sources/{source_id}".encode()), ("ce_type", type_.encode()))


@lru_cache(maxsize=1024)
def _ce_time(timestamp_ms: int) -> bytes:
    when = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).isoformat()
    return when.replace("+00:00", "Z").encode()


def cloud_event_headers(
    record_id: str, source_id: str, type_: str, timestamp_ms: int
) -> tuple[tuple[str, bytes], ...]:
    """CloudEvents binary-mode headers of a JSON record."""
    return (
        ("ce_specversion", CE_SPECVERSION),
        ("ce_id", record_id.encode()),
        *_ce_source_and_type(source_id, type_),
        ("ce_time", _ce_time(timestamp_ms)),
        ("content-type", b"application/json"),
    )


def event_record(topic: str, event: Event, timestamp_ms: int) -> OutRecord:
    """An event as an output record, keyed like its account."""
    headers = cloud_event_headers(event.id, event.source_id, ce_type(event.operation), timestamp_ms)
    return OutRecord(topic, event_key(event), codec.dumps(event.body), headers)


def remediation_record(topic: str, command: RemediationCommand, timestamp_ms: int) -> OutRecord:
    """A remediation command as an output record, keyed like the event it reverts."""
    headers = cloud_event_headers(command.id, command.sourceId, REMEDIATION_CE_TYPE, timestamp_ms)
    value = codec.dumps(command.model_dump(mode="json"))
    return OutRecord(topic, command_key(command), value, headers)


def dead_letter(
    topic: str, record: InRecord, reason: str, max_value_bytes: int | None = None
) -> OutRecord:
    """The input record, unchanged, with headers naming the error and where it came from.

    A value over ``max_value_bytes`` is left out (header ``ncd_value_omitted`` gives its
    size): the producer could not write it, and the headers point at the original, which
    stays in the input topic. Nothing is lost; the partition keeps flowing.
    """
    headers = [
        # A reason may name a field of the input, which may hold a lone surrogate.
        ("ncd_error", reason.encode(errors="backslashreplace")),
        ("ncd_original_topic", record.topic.encode()),
        ("ncd_original_partition", str(record.partition).encode()),
        ("ncd_original_offset", str(record.offset).encode()),
    ]
    value = record.value
    if value is not None and max_value_bytes is not None and len(value) > max_value_bytes:
        headers.append(("ncd_value_omitted", str(len(value)).encode()))
        value = None
    return OutRecord(topic, record.key, value, tuple(headers))


@dataclass(frozen=True)
class OutputTopics:
    """Where a decision's records go, and the largest record the producer may write."""

    events: str
    remediations: str
    dlq: str
    max_record_bytes: int


@dataclass
class Outputs:
    """The records of one decision, and what of it was written where."""

    records: list[OutRecord] = field(default_factory=list)
    #: Event types of the events written (not those dead-lettered for their size).
    event_types: list[str] = field(default_factory=list)
    #: Remediation commands written.
    remediations: int = 0
    #: Reason of each dead letter of the input record.
    dead_letter_reasons: list[str] = field(default_factory=list)


def outputs_of(
    topics: OutputTopics,
    record: InRecord,
    events: list[Event],
    remediations: list[RemediationCommand],
    dead_letter_reason: str | None = None,
) -> Outputs:
    """The records a decision produces: its dead letter, events and remediation commands.

    An event or command over ``max_record_bytes`` is not written: the producer (and a broker
    with default limits) would refuse it and the batch would fail for ever, so the input
    goes to the dead-letter topic instead, saying why.
    """
    out = Outputs()
    if dead_letter_reason is not None:
        _dead_letter(out, topics, record, dead_letter_reason)
    for event in events:
        built = event_record(topics.events, event, record.timestamp_ms)
        if _fits(out, topics, record, built):
            out.event_types.append(event.operation)
    for command in remediations:  # keyed like the event, same transaction
        built = remediation_record(topics.remediations, command, record.timestamp_ms)
        if _fits(out, topics, record, built):
            out.remediations += 1
    return out


def _fits(out: Outputs, topics: OutputTopics, record: InRecord, built: OutRecord) -> bool:
    size = len(built.value or b"")
    if size > topics.max_record_bytes:
        reason = f"its output of {size} bytes is over NCD_MAX_RECORD_BYTES"
        _dead_letter(out, topics, record, reason)
        return False
    out.records.append(built)
    return True


def _dead_letter(out: Outputs, topics: OutputTopics, record: InRecord, reason: str) -> None:
    out.records.append(dead_letter(topics.dlq, record, reason, topics.max_record_bytes))
    out.dead_letter_reasons.append(reason)
