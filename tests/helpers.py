"""Helpers shared by the unit, integration and reliability tests."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

from processor import codec
from processor.core import Event
from processor.models import AccountEvent, Operation, SourceDescriptor, event_class
from processor.transport import TP

#: Upper bound on waiting for a broker-side or worker-side effect; a healthy run needs a few
#: seconds, a loaded CI machine can be slow to start a Python process and join a group.
WAIT_S = 120.0
#: Between two checks of a condition: frequent enough not to slow tests down.
CHECK_EVERY_S = 0.1


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = WAIT_S) -> None:
    """Check ``condition`` until it is true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(CHECK_EVERY_S)


def event_model(event: Event) -> AccountEvent:
    """The event validated with its published model, which must dump back to the very JSON the
    core built (same bytes: keys, key order and value types)."""
    model = event_class(event.operation).model_validate(event.body)
    assert codec.dumps(model.model_dump(mode="json")) == codec.dumps(event.body)
    return cast(AccountEvent, model)  # event_class(op) is one of AccountEvent's members


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Recorder:
    """A RebalanceListener that keeps what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[TP]]] = []

    def on_assigned(self, tps: list[TP]) -> None:
        self.events.append(("assigned", tps))

    def on_revoked(self, tps: list[TP]) -> None:
        self.events.append(("revoked", tps))


def small_source(
    source_id: str, *, name: str = "AD", entitlements: bool = True, **extra: Any
) -> SourceDescriptor:
    """A small source: ``title`` (and the ``memberOf`` entitlement unless ``entitlements`` is
    false), every operation and every attribute monitored; ``extra`` adds top-level fields."""
    attributes: list[dict[str, Any]] = [{"name": "title"}]
    if entitlements:
        attributes.append({"name": "memberOf", "isMulti": True, "isEntitlement": True})
    return SourceDescriptor.model_validate(
        {
            "id": source_id,
            "name": name,
            "accountSchema": {"attributes": attributes},
            "nativeChangeDetectionConfig": {
                "enabled": True,
                "operations": [op.value for op in Operation],
                "allEntitlements": True,
                "allNonEntitlementAttributes": True,
            },
            **extra,
        }
    )
