"""Deciding one input record: the decision path the worker and ``replay`` share.

:func:`decide_record` hands a record to its partition's
:class:`~processor.worker.partition.PartitionProcessor` (an aggregation record or a
provisioning record), decides it again once the configuration topics were read when its
source was unknown, checks that the record's key names what its value names, and is the
per-record failure boundary: whatever fails while deciding the record or building its
outputs is this record's fault, so what it did is undone and it is dead-lettered with a
reason free of values. Broker and state failures (:data:`NOT_THE_RECORDS_FAULT`) are not,
and end the batch.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TypeVar

from processor.errors import InputError
from processor.keys import record_key
from processor.state.overlay import BatchOverlay
from processor.worker.flow import NOT_THE_RECORDS_FAULT
from processor.worker.outcome import UNKNOWN_SOURCE, Outcome, Verdict
from processor.worker.partition import PartitionProcessor

T = TypeVar("T")

__all__ = [
    "KEY_MISMATCH",
    "NOT_THE_RECORDS_FAULT",
    "decide_record",
    "failure_reason",
    "key_matches",
]

#: Why a record whose key does not match its value is dead-lettered.
KEY_MISMATCH = "record key does not match the sourceId and account of its value"


def failure_reason(exc: Exception) -> str:
    """The dead-letter reason of a record whose decision raised ``exc``, free of values.

    An :class:`InputError` has its own reason; anything else is named by its type and the
    function that raised it, never by its message (which may quote the record).
    """
    if isinstance(exc, InputError):
        return exc.reason
    frames = traceback.extract_tb(exc.__traceback__)
    where = frames[-1].name if frames else "?"
    return f"could not be decided ({type(exc).__name__} in {where})"


def key_matches(key: bytes | None, outcome: Outcome) -> bool:
    """Whether a record's key names the source (and account) its decided value names.

    Keys are ``sourceId/<uuid or nativeIdentity>`` (:func:`~processor.keys.record_key`);
    markers and provisioning records are checked up to the source (a marker's key names its
    aggregation; a provisioning record's may name a uuid the record does not carry).
    """
    source_id = outcome.source_id
    if key is None or source_id is None:
        return False
    if outcome.record_key is not None:
        return key == outcome.record_key
    return key.startswith(record_key(source_id, None, ""))


def _never() -> bool:
    return False


def decide_record(
    processor: PartitionProcessor,
    value: bytes | None,
    state: BatchOverlay,
    *,
    provisioning: bool,
    outputs: Callable[[Outcome], T],
    key: bytes | None = None,
    check_key: bool = True,
    catch_up: Callable[[], bool] = _never,
) -> tuple[Outcome, T]:
    """Decide one record and build its outputs (``outputs(outcome)``), within the record's
    failure boundary.

    ``provisioning``: the record comes from ``ncd.provisioning`` (else ``ncd.aggregations``).
    ``key``: the record's key, checked against its value unless ``check_key`` is false (a
    record ``replay`` made itself has no key to check). ``catch_up()``: read the
    configuration topics; true when it did (a source unknown before may now be known).
    """
    decide = processor.process_provisioning if provisioning else processor.process
    try:
        outcome = decide(value, state)
        if outcome.reason == UNKNOWN_SOURCE and catch_up():
            outcome = decide(value, state)
        if check_key and outcome.verdict != Verdict.DEAD_LETTERED and not key_matches(key, outcome):
            # Whoever may write the topic could speak for any source, or put an account's
            # records on a partition that does not hold its state.
            outcome = processor.abandon(value, state, KEY_MISMATCH)
        return outcome, outputs(outcome)
    except NOT_THE_RECORDS_FAULT:
        raise
    except Exception as exc:
        outcome = processor.abandon(value, state, failure_reason(exc))
        return outcome, outputs(outcome)
