"""Whose fault a failure is: the record's (dead-letter it, go on) or not (end the batch)."""

from __future__ import annotations

import traceback

from processor.errors import InputError, StateError, TransportError

#: Failures while handling a record that are not the record's fault: they end the batch.
NOT_THE_RECORDS_FAULT = (TransportError, StateError, MemoryError)


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
