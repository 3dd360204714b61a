"""A clock for unit tests of the worker: it moves only when told, or when the worker sleeps."""

from __future__ import annotations

from dataclasses import dataclass, field

#: 2026-11-26T00:00:00Z, in milliseconds since the epoch.
DEFAULT_WALL_MS = 1_795_651_200_000


@dataclass
class FakeClock:
    """:class:`processor.worker.clock.Clock` whose time is set by the test."""

    now_s: float = 1_000.0
    wall_ms: int = DEFAULT_WALL_MS
    #: Every sleep the worker asked for, in seconds.
    sleeps: list[float] = field(default_factory=list)
    #: Seconds each ``monotonic()`` reading moves the clock on (0: only when told).
    tick_s: float = 0.0

    def monotonic(self) -> float:
        now = self.now_s
        self.now_s += self.tick_s
        return now

    def time_ms(self) -> int:
        return self.wall_ms + int((self.now_s - 1_000.0) * 1000)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Move both clocks on by ``seconds``."""
        self.now_s += seconds
