"""What deciding one input record gives: a :class:`Verdict` and an :class:`Outcome`."""

from __future__ import annotations

from enum import StrEnum

import msgspec

from processor.core import DeleteGuard, Event, SourcePolicy, remediation_command, wanted
from processor.models import RemediationCommand

#: The reason of a record whose source has no descriptor (yet): the runner reads the
#: configuration topics once more and decides it again.
UNKNOWN_SOURCE = "unknown source"


class Verdict(StrEnum):
    """What became of one input record."""

    EMITTED = "emitted"  # one or more events
    UNCHANGED = "unchanged"  # same as the stored state: nothing written
    STORED = "stored"  # state updated, nothing to report (baseline, or unmonitored change)
    MARKER = "marker"  # an aggregation.started / completed marker
    STALE = "stale"  # from an aggregation older than the stored state: ignored
    APPLIED = "applied"  # a provisioning record applied to the stored baseline (R15)
    HELD = "held"  # a provisioning record kept: PENDING, or its account is not known yet
    IGNORED = "ignored"  # a provisioning record with nothing to do (failed, already seen)
    DEAD_LETTERED = "dead_lettered"


class Outcome(msgspec.Struct):
    """A decision: its verdict and what comes of it. (A msgspec struct, not a dataclass:
    built in C, it costs a third as much, once per record.)"""

    verdict: Verdict
    events: list[Event] = msgspec.field(default_factory=list)
    reason: str | None = None
    source_id: str | None = None
    #: Set on a completion whose deletions the delete guard suppressed: how many.
    deletes_suppressed: int = 0
    #: Set when R10's threshold held them back: the counts, as ``diff`` reports them.
    guard: DeleteGuard | None = None
    #: Set on a completion: the aggregation's status and mode.
    completed: tuple[str, str] | None = None
    #: Commands reverting the events, for sources that ask for remediation.
    remediations: list[RemediationCommand] = msgspec.field(default_factory=list)
    #: Set on an account record: the record key its value implies (``sourceId/<uuid or
    #: nativeIdentity>``, :func:`processor.keys.record_key`); the runner checks the real one.
    record_key: bytes | None = None


def dead(reason: str, source_id: str | None = None) -> Outcome:
    """A DEAD_LETTERED outcome with its reason."""
    return Outcome(Verdict.DEAD_LETTERED, reason=reason, source_id=source_id)


def commands(policy: SourcePolicy, events: list[Event]) -> list[RemediationCommand]:
    """The remediation commands reverting ``events``, as far as the source asks for them."""
    revert = wanted(policy.source.remediation)
    return [c for e in events if (c := remediation_command(e, revert)) is not None]


def emitted(policy: SourcePolicy, events: list[Event], source_id: str) -> Outcome:
    """An EMITTED outcome with the remediation commands the source asks for."""
    return Outcome(
        Verdict.EMITTED, events=events, source_id=source_id, remediations=commands(policy, events)
    )
