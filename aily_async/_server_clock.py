"""The server's clock, as far as its ``Date`` headers tell: a lower bound, never the local clock.

Every answer's ``Date`` header is the server's time when it answered, cut to the second. The
answer reaches us later still, so ``date - loop.time()`` (at arrival) is never more than the
true offset between the server's clock and the loop's: the largest such value seen is the
tightest lower bound. :meth:`ServerClock.now_ms` is then a time, in the server's own
milliseconds, that the server's clock has certainly passed. ``runs.create`` uses it to tell a
run it may have made from an older one, without comparing a server timestamp with the local
clock (which may be off by minutes).
"""

from __future__ import annotations

import asyncio
import email.utils

__all__ = ["ServerClock"]


class ServerClock:
    """A lower bound of the server's clock, learnt from ``Date`` headers."""

    __slots__ = ("_last", "_offset")

    def __init__(self) -> None:
        self._offset: float | None = None  # server seconds minus loop seconds, a lower bound
        self._last: str | None = None  # the last header read (it changes once a second)

    def observe(self, date: str | None) -> None:
        """Learn from an answer's ``Date`` header, just received."""
        if date is None or date == self._last:
            return
        self._last = date
        try:
            server = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        offset = server - asyncio.get_running_loop().time()
        if self._offset is None or offset > self._offset:
            self._offset = offset

    def now_ms(self) -> int | None:
        """Server time (epoch milliseconds) certainly passed by now; ``None`` before any
        ``Date`` header was seen."""
        if self._offset is None:
            return None
        return int((asyncio.get_running_loop().time() + self._offset) * 1000)

    def __repr__(self) -> str:
        known = "unknown" if self._offset is None else f"offset>={self._offset:.0f}s"
        return f"ServerClock({known})"
