"""The fake's clock: monotonic seconds from the event loop (or a given clock), as wall time.

Everything time-dependent in the fake (run progress, token expiry, rate windows, outages)
reads :meth:`Clock.now`; timestamps on the wire and the HTTP ``Date`` header are that time
moved onto the wall clock, pinned once and shifted by the server's clock offset, so a
virtual-time loop moves them too and they always agree with each other.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import math
import time
from collections.abc import Callable

__all__ = ["Clock"]


class Clock:
    """Monotonic time of the fake, and its conversion to wall-clock time.

    Args:
        source: Replaces the event loop's ``loop.time()`` (seconds, monotonic).
        offset: Seconds added to every wall-clock time the fake hands out, as a server whose
            clock is ahead (or, negative, behind) the caller's.
    """

    def __init__(self, source: Callable[[], float] | None = None, *, offset: float = 0.0) -> None:
        if not math.isfinite(offset):
            raise ValueError(f"clock_offset must be a finite number, got {offset!r}")
        self._source = source
        self._offset_ms = offset * 1000
        self._loop: asyncio.AbstractEventLoop | None = None
        self._epoch_ms: float | None = None
        self._epoch_now = 0.0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read ``loop``'s time from now on and pin the wall clock to the current time."""
        self._loop = loop
        self.wall_ms(self.now())

    def now(self) -> float:
        """Return the current time in seconds (monotonic)."""
        if self._source is not None:
            return self._source()
        if self._loop is not None:
            return self._loop.time()
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    def _wall(self, now: float) -> float:
        if self._epoch_ms is None:
            self._epoch_ms = time.time() * 1000 + self._offset_ms
            self._epoch_now = now
        return self._epoch_ms + (now - self._epoch_now) * 1000

    def wall_ms(self, now: float) -> int:
        """Return the server's wall-clock time, in whole milliseconds, of the instant ``now``."""
        return int(self._wall(now))

    def ms(self, now: float) -> str:
        """Return :meth:`wall_ms` as the API writes timestamps (a decimal string)."""
        return str(self.wall_ms(now))

    def http_date(self, now: float) -> str:
        """Return the instant ``now`` as an HTTP ``Date`` value (RFC 7231 IMF-fixdate, GMT)."""
        seconds = math.floor(self._wall(now) / 1000)
        moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
        return email.utils.format_datetime(moment, usegmt=True)
