"""Progress bars: drawn on a terminal, silent otherwise."""

from __future__ import annotations

import io

from processor.progress import progress_bar


def test_bar_draws_on_a_terminal() -> None:
    """With the stream taken for a terminal, the bar writes its label and final count."""
    out = io.StringIO()
    with progress_bar(10, desc="replay", stream=out, tty=True) as bar:
        assert bar.visible
        for _ in range(10):
            bar.update()
    text = out.getvalue()
    assert "replay" in text
    assert "10/10" in text


def test_bar_is_silent_off_a_terminal() -> None:
    """With the stream not a terminal, nothing is written however far the bar advances."""
    out = io.StringIO()
    with progress_bar(10, desc="replay", stream=out, tty=False) as bar:
        assert not bar.visible
        bar.update(10)
        bar.set_total(20)
    assert out.getvalue() == ""


def test_bar_detects_a_non_terminal_stream_by_itself() -> None:
    """Without an override, a stream whose isatty() is false gets no bar."""
    out = io.StringIO()
    with progress_bar(3, desc="publish", stream=out) as bar:
        bar.update(3)
    assert not bar.visible
    assert out.getvalue() == ""


def test_quiet_silences_a_terminal_bar() -> None:
    """quiet=True wins over a terminal."""
    out = io.StringIO()
    with progress_bar(5, desc="publish", stream=out, tty=True, quiet=True) as bar:
        bar.update(5)
    assert not bar.visible
    assert out.getvalue() == ""


def test_total_can_be_set_later() -> None:
    """A bar started with an unknown total shows the total once it is set."""
    out = io.StringIO()
    with progress_bar(None, desc="scan", stream=out, tty=True) as bar:
        bar.set_total(4)
        bar.update(4)
    assert "4/4" in out.getvalue()


def test_advance_to_follows_a_running_total() -> None:
    """advance_to() turns a callback's running total into increments, also when silent."""
    out = io.StringIO()
    with progress_bar(6, desc="publish", stream=out, tty=True) as bar:
        for total in (2, 5, 5, 6):
            bar.advance_to(total)
        assert bar.count == 6
    assert "6/6" in out.getvalue()
    with progress_bar(6, desc="publish", stream=out, tty=False) as silent:
        silent.advance_to(4)
        assert silent.count == 4
