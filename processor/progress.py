"""Progress bars for long command-line runs (``replay``, ``publish``): a thin tqdm wrapper.

A bar is drawn on standard error only when that stream is a terminal, so a run under a
pipe, a scheduler or a container log stays quiet; ``quiet=True`` silences it anyway. The
``tty`` parameter overrides the terminal check (tests, and callers who know better).
A bar only ever shows counts and a label: never a record or a value.
"""

from __future__ import annotations

import shutil
import sys
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type information

#: Redraw at most this often: frequent enough to look alive, rare enough to cost nothing.
MIN_REDRAW_INTERVAL_S = 0.2
#: Width when the terminal does not say (the classic terminal width).
DEFAULT_COLUMNS = 80
DEFAULT_ROWS = 24


class ProgressBar:
    """A progress bar that may be silent; use it as a context manager."""

    def __init__(self, bar: Any | None) -> None:
        self._bar = bar
        self._count = 0

    @property
    def count(self) -> int:
        """Units done so far (counted whether or not the bar is drawn)."""
        return self._count

    @property
    def visible(self) -> bool:
        """Whether this bar draws anything."""
        return self._bar is not None

    def update(self, n: int = 1) -> None:
        """Advance the bar by ``n`` units."""
        self._count += n
        if self._bar is not None:
            self._bar.update(n)

    def advance_to(self, count: int) -> None:
        """Advance the bar to ``count`` units done (for callbacks that report a running total)."""
        if count > self._count:
            self.update(count - self._count)

    def set_total(self, total: int) -> None:
        """Change the expected number of units (e.g. once it is known)."""
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def close(self) -> None:
        """Draw the final state and release the line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def progress_bar(
    total: int | None,
    *,
    desc: str,
    unit: str = "it",
    unit_scale: bool = False,
    stream: TextIO | None = None,
    tty: bool | None = None,
    quiet: bool = False,
) -> ProgressBar:
    """A bar of ``total`` units (``None``: unknown) on ``stream`` (default standard error).

    Silent when ``quiet`` or when the stream is not a terminal; ``tty`` forces the terminal
    check either way.
    """
    out = sys.stderr if stream is None else stream
    on_terminal = _isatty(out) if tty is None else tty
    if quiet or not on_terminal:
        return ProgressBar(None)
    columns, rows = _screen()
    bar = tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit_scale,
        file=out,
        mininterval=MIN_REDRAW_INTERVAL_S,
        ncols=columns,
        nrows=rows,
        leave=True,
    )
    return ProgressBar(bar)


def _screen() -> tuple[int, int]:
    """The terminal's (columns, rows); tqdm's own probe reports 0 rows on some
    pseudo-terminals (``script``, some CI runners) and then draws no bar at all."""
    size = shutil.get_terminal_size((DEFAULT_COLUMNS, DEFAULT_ROWS))
    return size.columns or DEFAULT_COLUMNS, size.lines or DEFAULT_ROWS


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # a closed or detached stream is not a terminal
        return False
