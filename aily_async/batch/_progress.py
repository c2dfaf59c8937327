"""Progress of a batch: snapshots, a dependency-free bar, and the progress= option.

The bar fits the place it is drawn in: on a terminal one line redrawn in place, as wide as
that terminal (asked of the bar's own stream, so ``aily batch ... > out.jsonl`` still fits
stderr's terminal); in Jupyter one display output updated in place (IPython's
``display(..., display_id=True)``), so a batch leaves one output, not a stream of lines;
elsewhere a plain line now and then. A batch that stops early (Ctrl-C, cancelled, broken off)
says "interrupted" in its last line.
"""

from __future__ import annotations

import html
import importlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import attrs

from .._limiter import LimiterState, RateLimiter

__all__ = ["BatchProgress", "ProgressBar", "ProgressOption", "limiter_load", "progress_option"]


def _clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _joined(parts: list[tuple[int, str]]) -> int:
    """The length of the parts joined with ", "."""
    return sum(len(text) for _, text in parts) + 2 * (len(parts) - 1)


def _fit(parts: list[tuple[int, str]], width: int | None) -> str:
    """The parts joined, the highest-ranked left out until the line fits ``width``."""
    parts = list(parts)
    while width is not None and len(parts) > 1 and _joined(parts) > width:
        parts.remove(max(parts, key=lambda part: part[0]))
    return ", ".join(text for _, text in parts)


@attrs.frozen(repr=False)
class BatchProgress:
    """Where a batch stands at one instant.

    ``succeeded``/``failed`` count items finished by this batch, ``skipped`` those found done
    in the checkpoint; ``total`` is ``None`` while the number of inputs is unknown. ``rate`` is
    items finished per second, ``eta`` the seconds left at that rate (``None`` when unknown).
    ``limiter_wait`` is how long a request sent now would wait for the client's rate limiter
    (``limiter_waiting`` requests are queued there). ``interrupted``: the batch stopped before
    its end (Ctrl-C, cancelled, broken off).
    """

    name: str
    total: int | None
    succeeded: int
    failed: int
    skipped: int
    in_flight: int
    elapsed: float
    rate: float
    eta: float | None
    limiter_wait: float = 0.0
    limiter_waiting: int = 0
    finished: bool = False
    interrupted: bool = False

    @property
    def done(self) -> int:
        """Items accounted for: succeeded, failed or skipped."""
        return self.succeeded + self.failed + self.skipped

    @property
    def remaining(self) -> int | None:
        """Items not finished yet (``None`` while the total is unknown)."""
        return None if self.total is None else max(0, self.total - self.done)

    @property
    def fraction(self) -> float | None:
        """``done / total`` (``None`` while the total is unknown)."""
        if self.total is None:
            return None
        return 1.0 if self.total == 0 else self.done / self.total

    def describe(self, width: int | None = None) -> str:
        """One human line: counts, rate, ETA and limiter wait. With ``width``, the least
        telling parts are left out until it fits (the count and the ETA, "took" or
        "interrupted" go last)."""
        return _fit(self.parts(), width)

    def parts(self) -> list[tuple[int, str]]:
        """The parts of :meth:`describe`'s line, each with its rank: the higher, the sooner
        it is left out of a narrow line (0: the count; 1: ETA, "took" or "interrupted")."""
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        parts = [(0, f"{count} done")]  # (rank: the higher, the sooner left out, text)
        if self.failed:
            parts.append((2, f"{self.failed} failed"))
        if self.skipped:
            parts.append((3, f"{self.skipped} skipped"))
        parts.append((5, f"{self.in_flight} in flight"))
        parts.append((4, f"{self.rate:.1f}/s"))
        if self.interrupted:
            parts.append((1, f"interrupted after {_clock(self.elapsed)}"))
        elif self.finished:
            parts.append((1, f"took {_clock(self.elapsed)}"))
        elif self.eta is not None:
            parts.append((1, f"ETA {_clock(self.eta)}"))
        if not self.finished and (self.limiter_waiting or self.limiter_wait >= 0.05):
            parts.append((6, f"limiter {self.limiter_wait:.1f}s ({self.limiter_waiting} waiting)"))
        return parts

    def __repr__(self) -> str:
        return f"<BatchProgress {self.name}: {self.describe()}>"

    def __str__(self) -> str:
        return f"{self.name}: {self.describe()}"


class ProgressBar:
    """Draws :class:`BatchProgress` snapshots on a stream (standard error by default).

    On a terminal it redraws one line in place (ANSI, at most ``refresh`` times a second),
    cut to the terminal's width; in Jupyter it is one display output updated in place (with
    IPython; without it, a line redrawn after a carriage return); elsewhere (a log file, CI)
    it prints a plain line every ``interval`` seconds and a last one at the end. Notes
    (:meth:`note`) go to ``stream`` in every mode.
    """

    __slots__ = (
        "_display",
        "_drawn",
        "_interval",
        "_last",
        "_mode",
        "_refresh",
        "_stream",
        "_unicode",
    )

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        refresh: float = 0.1,
        interval: float = 10.0,
        mode: str | None = None,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        if mode is None:
            mode = _detect_mode(self._stream)
        if mode not in ("tty", "notebook", "plain"):
            raise ValueError(f"mode must be 'tty', 'notebook' or 'plain', got {mode!r}")
        self._mode = mode
        self._refresh = refresh if mode == "tty" else max(refresh, 0.5)
        self._interval = interval
        self._last = -float("inf")
        self._drawn = False
        self._display: Any = None  # IPython's DisplayHandle, once shown
        encoding = (getattr(self._stream, "encoding", None) or "").lower()
        self._unicode = "utf" in encoding or mode == "notebook"

    @property
    def mode(self) -> str:
        """``"tty"``, ``"notebook"`` or ``"plain"``."""
        return self._mode

    @property
    def tick(self) -> float:
        """How often the bar wants a fresh snapshot, in seconds."""
        return self._refresh

    def update(self, progress: BatchProgress) -> None:
        """Show ``progress`` (throttled)."""
        now = time.monotonic()
        if self._mode == "plain":
            if self._last == -float("inf"):
                self._last = now  # a log gets its first line after one interval
            gap = self._interval
        else:
            gap = self._refresh
        if now - self._last < gap:
            return
        self._last = now
        self._draw(progress)

    def note(self, text: str) -> None:
        """Print ``text`` as a line of its own; a bar drawn in place is redrawn under it at
        the next update."""
        if self._drawn and self._mode == "tty":
            self._write("\r\x1b[2K")
        elif self._drawn and self._mode == "notebook" and self._display is None:
            self._write("\n")
        self._write(text + "\n")
        if self._drawn and self._display is None:
            self._drawn = False
            self._last = -float("inf")  # redraw at once

    def close(self, progress: BatchProgress) -> None:
        """Show the final state and end the line."""
        self._draw(progress)
        if self._mode != "plain" and self._display is None:
            self._write("\n")
        self._drawn = False

    def _draw(self, progress: BatchProgress) -> None:
        if self._mode == "plain":
            self._write(str(progress) + "\n")
            return
        if self._mode == "notebook":
            if not self._show(progress):
                line = self.render(progress, 100)
                self._write("\r" + line.ljust(100))
        else:
            width = max(10, _columns(self._stream) - 1)  # the last column would wrap
            self._write("\r\x1b[2K" + self.render(progress, width))
        self._drawn = True

    def _show(self, progress: BatchProgress) -> bool:
        """Show or update the one display output of a notebook; False without IPython."""
        try:
            display = importlib.import_module("IPython.display").display
        except ImportError:
            return False
        text = self.render(progress, 120)
        fraction = progress.fraction
        meter = (
            f'<progress value="{progress.done}" max="{progress.total or 1}" '
            'style="width: 12em; vertical-align: middle"></progress> '
            if fraction is not None
            else ""
        )
        bundle = {
            "text/plain": text,
            "text/html": f"<div>{meter}<code>{html.escape(progress.name)}</code> "
            f"{html.escape(progress.describe())}</div>",
        }
        if self._display is None:
            self._display = display(bundle, raw=True, display_id=True)
        else:
            self._display.update(bundle, raw=True)
        return True

    def render(self, progress: BatchProgress, width: int = 100) -> str:
        """The bar as one line of at most ``width`` characters (on a narrow one, the bar, the
        name and the least telling parts of the text give way first)."""
        prefix = f"{progress.name} "
        fraction = progress.fraction
        # A bar of fixed size for a given width, so it does not jump as the text changes.
        cells = 30 if width >= 130 else 20 if width >= 100 else 10 if width >= 70 else 0
        if fraction is not None and cells:
            full = int(cells * fraction)
            fill, empty = ("█", "░") if self._unicode else ("#", "-")
            prefix += f"{fill * full}{empty * (cells - full)} "
        parts = progress.parts()
        if len(prefix) + _joined([part for part in parts if part[0] <= 1]) > width:
            prefix = ""  # the count and the ETA (or the end) need the name's room
        return (prefix + _fit(parts, width - len(prefix)))[:width]

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken stream never breaks the batch
            pass


def _columns(stream: TextIO) -> int:
    """The width of the terminal ``stream`` is on: ``$COLUMNS``, else the terminal's own
    size, else what :func:`shutil.get_terminal_size` says (100 when it cannot tell)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return shutil.get_terminal_size((100, 20)).columns


def _detect_mode(stream: TextIO) -> str:
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if tty and os.environ.get("TERM") != "dumb":
        return "tty"
    if "ipykernel" in sys.modules:
        return "notebook"
    return "plain"


#: ``True`` (a progress bar on stderr), a :class:`ProgressBar`, or a callback.
ProgressOption = bool | ProgressBar | Callable[[BatchProgress], object] | None


def progress_option(
    progress: ProgressOption,
) -> tuple[ProgressBar | None, Callable[[BatchProgress], object] | None]:
    """The bar to draw and the callback to call that a batch's ``progress=`` asks for."""
    if progress is True:
        return ProgressBar(), None
    if isinstance(progress, ProgressBar):
        return progress, None
    if callable(progress):
        return None, progress
    if progress not in (None, False):
        raise TypeError(f"progress must be a bool, a ProgressBar or a callable, not {progress!r}")
    return None, None


def limiter_load(limiter: RateLimiter | None) -> tuple[float, int]:
    """How long a request sent now would wait for ``limiter``, and how many requests wait
    there (zeros for no limiter, or one that cannot tell)."""
    if limiter is None or not isinstance(limiter, LimiterState):
        return 0.0, 0
    waiting = limiter.waiting
    try:
        wait = limiter.queue_wait()
    except RuntimeError:  # no running loop
        wait = 0.0
    return wait, waiting
