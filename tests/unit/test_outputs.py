"""Output records: CloudEvents headers on events and remediation commands, shared keys."""

from __future__ import annotations

from processor.core import EntitlementCatalog, Event, decide_event, remediation_command
from processor.keys import command_key, event_key
from processor.models import ChangeType, RemediationCommand
from processor.worker.outputs import event_record, remediation_record
from tests.unit.conftest import make_account, make_policy

ANN = "CN=Ann English,OU=Call Center,DC=example,DC=com"
GUID = "{08EE6C6D-5B8A-4F1C-9E6B-1A2B3C4D5E6F}"
#: 2026-11-22T08:00:00Z
TIMESTAMP_MS = 1_795_334_400_000


def _event_and_command() -> tuple[Event, RemediationCommand]:
    event = decide_event(
        make_policy(),
        make_account(ANN, {"title": "a"}, uuid=GUID),
        make_account(ANN, {"title": "b"}, uuid=GUID),
        EntitlementCatalog(),
    )
    assert event is not None
    command = remediation_command(event, list(ChangeType))
    assert command is not None
    return event, command


def test_remediation_records_carry_the_full_cloudevents_headers() -> None:
    """A command has every binary-mode header an event has, with its own id and type."""
    event, command = _event_and_command()
    event_headers = dict(event_record("events", event, TIMESTAMP_MS).headers)
    headers = dict(remediation_record("remediations", command, TIMESTAMP_MS).headers)
    assert (
        set(headers)
        == set(event_headers)
        == {
            "ce_specversion",
            "ce_id",
            "ce_source",
            "ce_type",
            "ce_time",
            "content-type",
        }
    )
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == command.id.encode() != event_headers["ce_id"]
    assert (
        headers["ce_source"]
        == event_headers["ce_source"]
        == f"/sources/{command.sourceId}".encode()
    )
    assert headers["ce_type"] == b"dev.ncd-processor.remediation.proposed"
    assert event_headers["ce_type"] == b"dev.ncd-processor.account.updated"
    assert headers["ce_time"] == event_headers["ce_time"] == b"2026-11-22T08:00:00Z"
    assert headers["content-type"] == b"application/json"


def test_a_command_is_keyed_like_the_event_it_reverts() -> None:
    """Upper-case GUID uuid: the command's key is the event's ({lower-case hex}, R1)."""
    event, command = _event_and_command()
    assert command_key(command) == event_key(event)
    assert command_key(command) == f"{command.sourceId}/{GUID.lower()}".encode()
