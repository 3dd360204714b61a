"""The clock the worker reads wherever time decides something.

Linger, retry backoff, catch-up and restore stall limits, liveness, lag sampling and the
bound on instants in the future all read one :class:`Clock`. The composition root passes
:data:`SYSTEM_CLOCK`; unit tests pass a fake one that moves only when told (or when the
worker sleeps), so no test waits on real time.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Two clocks and a way to wait."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: durations and deadlines."""
        ...

    def time_ms(self) -> int:
        """Milliseconds since the Unix epoch: the wall clock, to compare with record instants."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a retry backoff)."""
        ...


class SystemClock:
    """The process's clocks: ``time.monotonic``, ``time.time`` and ``time.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time_ms(self) -> int:
        return int(time.time() * 1000)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()
