"""``ncd-processor revert``: remediation commands for a file of events, offline.

Reads NCD events (JSON Lines, as ``diff`` writes them or as read from ``ncd.events``) and
writes, one per line, the ``std:account:update`` command that reverts each (the same
commands the worker writes to ``ncd.remediations``). Which change types are reverted comes
from ``--source`` (its ``remediation.revert``), else all three. Output is sorted by account
nativeIdentity, then eventType, then event id, so the order of the input lines is moot.
Bad input exits 2 with ``FILE:LINE: reason``; reasons never quote values.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import cast

from processor import codec
from processor.core import Event, EventJson, remediation_command, wanted
from processor.errors import FileInputError, InputError
from processor.files import read_document
from processor.models import (
    ChangeType,
    Operation,
    RemediationCommand,
    SourceDescriptor,
    event_class,
)


def run_revert(*, events_path: Path, source_path: Path | None = None) -> bytes:
    """Read the events and return the commands reverting them, as JSON Lines bytes.

    With ``source_path``, events of another source are bad input and the source's
    ``remediation.revert`` says what to revert (nothing when it has no remediation).
    """
    source = None
    revert: Collection[ChangeType] = tuple(ChangeType)
    if source_path is not None:
        source = read_document(source_path, SourceDescriptor, "source descriptor")
        revert = wanted(source.remediation)
    commands: list[tuple[tuple[str, str, str], RemediationCommand]] = []
    for line, event in _read_events(events_path):
        if source is not None and event.source_id != source.id:
            raise FileInputError(str(events_path), line, "event of another source than --source")
        command = remediation_command(event, revert)
        if command is not None:
            order = (event.native_identity, event.operation.value, event.id)
            commands.append((order, command))
    commands.sort(key=lambda item: item[0])
    return b"".join(codec.dumps(c.model_dump(mode="json")) + b"\n" for _, c in commands)


def _read_events(path: Path) -> list[tuple[int, Event]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise FileInputError(str(path), 1, f"cannot read file: {exc.strerror}") from exc
    events: list[tuple[int, Event]] = []
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                events.append((number, _event(codec.loads(raw))))
            except InputError as exc:
                raise FileInputError(str(path), number, exc.reason) from exc
    return events


def _event(obj: object) -> Event:
    """An event of the file, checked with its model (the published schema)."""
    if not isinstance(obj, dict):
        raise InputError("an event must be a JSON object")
    try:
        operation = Operation(str(obj.get("eventType")))
    except ValueError as exc:
        raise InputError(
            "eventType must be ACCOUNT_CREATED, ACCOUNT_UPDATED or ACCOUNT_DELETED"
        ) from exc
    model = codec.validate(event_class(operation), obj, "event")
    return Event(operation, cast(EventJson, model.model_dump(mode="json")))
