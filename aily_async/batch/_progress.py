"""Progress of a batch: snapshots, a dependency-free terminal bar, and the progress= option."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

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


@attrs.frozen(repr=False)
class BatchProgress:
    """Where a batch stands at one instant.

    ``succeeded``/``failed`` count items finished by this batch, ``skipped`` those found done
    in the checkpoint; ``total`` is ``None`` while the number of inputs is unknown. ``rate`` is
    items finished per second, ``eta`` the seconds left at that rate (``None`` when unknown).
    ``limiter_wait`` is how long a request sent now would wait for the client's rate limiter
    (``limiter_waiting`` requests are queued there).
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

    def describe(self) -> str:
        """One human line: counts, rate, ETA and limiter wait."""
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        parts = [f"{count} done"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        parts.append(f"{self.in_flight} in flight")
        parts.append(f"{self.rate:.1f}/s")
        if self.finished:
            parts.append(f"took {_clock(self.elapsed)}")
        elif self.eta is not None:
            parts.append(f"ETA {_clock(self.eta)}")
        if not self.finished and (self.limiter_waiting or self.limiter_wait >= 0.05):
            parts.append(f"limiter {self.limiter_wait:.1f}s ({self.limiter_waiting} waiting)")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"<BatchProgress {self.name}: {self.describe()}>"

    def __str__(self) -> str:
        return f"{self.name}: {self.describe()}"


class ProgressBar:
    """Draws :class:`BatchProgress` snapshots on a stream (standard error by default).

    On a terminal it redraws one line in place (ANSI, at most ``refresh`` times a second); in
    a notebook it redraws with a carriage return; elsewhere (a log file, CI) it prints a plain
    line every ``interval`` seconds and a last one at the end.
    """

    __slots__ = ("_drawn", "_interval", "_last", "_mode", "_refresh", "_stream", "_unicode")

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
        encoding = (getattr(self._stream, "encoding", None) or "").lower()
        self._unicode = "utf" in encoding

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
        elif self._drawn and self._mode == "notebook":
            self._write("\n")
        self._write(text + "\n")
        if self._drawn:
            self._drawn = False
            self._last = -float("inf")  # redraw at once

    def close(self, progress: BatchProgress) -> None:
        """Show the final state and end the line."""
        self._draw(progress)
        if self._mode != "plain":
            self._write("\n")
        self._drawn = False

    def _draw(self, progress: BatchProgress) -> None:
        if self._mode == "plain":
            self._write(str(progress) + "\n")
            return
        width = max(40, shutil.get_terminal_size((100, 20)).columns - 1)
        line = self.render(progress, width)
        if self._mode == "tty":
            self._write("\r\x1b[2K" + line)
        else:
            self._write("\r" + line.ljust(width))
        self._drawn = True

    def render(self, progress: BatchProgress, width: int = 100) -> str:
        """The bar as one line of at most ``width`` characters."""
        text = progress.describe()
        prefix = f"{progress.name} "
        fraction = progress.fraction
        # A bar of fixed size for a given width, so it does not jump as the text changes.
        cells = 30 if width >= 130 else 20 if width >= 100 else 10 if width >= 70 else 0
        if fraction is not None and cells:
            full = int(cells * fraction)
            fill, empty = ("█", "░") if self._unicode else ("#", "-")
            line = f"{prefix}{fill * full}{empty * (cells - full)} {text}"
        else:
            line = prefix + text
        return line[:width]

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken stream never breaks the batch
            pass


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
        wait = limiter.next_grant_in() + waiting * limiter.interval
    except RuntimeError:  # no running loop
        wait = 0.0
    return wait, waiting
