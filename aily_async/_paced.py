"""The grant rule of the paced bucket: GCRA ("virtual scheduling"), a small burst then a pace.

:class:`Paced` is what ``TokenBucket(rate, per, paced=True)`` decides with (the default bucket
before the window bucket): grants are spaced by the emission interval
``T = (per + margin) / (rate + 1 - burst)`` with a tolerance of ``burst - 1`` early grants. Any
``n`` consecutive grants span at least ``(n - burst) * T`` seconds, so a half-open window of
``L = per + margin`` seconds holds at most ``burst + L/T - 1 = rate`` of them, from the first
grant on; under saturation it grants ``(rate + 1 - burst) / (rate * (1 + margin/per))`` of the
quota. It starts with ``burst`` grants (2% of the rate by default), not ``rate``: a full quota
takes a whole window to go out, which is what the window bucket avoids.
"""

from __future__ import annotations

import math

__all__: list[str] = []  # the rule behind TokenBucket(paced=True); nothing here is public


class Paced:
    """GCRA over ``rate`` per ``per`` seconds with ``burst`` early grants and ``margin``."""

    __slots__ = ("_floor", "_interval", "_last", "_tat", "_tolerance", "burst")

    def __init__(self, rate: int, per: float, margin: float, burst: int) -> None:
        self.burst = burst
        # A hair over the exact interval so that float rounding can never let one extra through.
        self._interval = (per + margin) / (rate + 1 - burst) * (1 + 1e-9)
        self._tolerance = (burst - 1) * self._interval
        self._tat = -math.inf  # theoretical arrival time of the next grant at the paced rate
        self._floor = -math.inf  # the least ``_tat`` the pauses so far allow
        self._last = -math.inf  # the instant of the latest grant

    @property
    def interval(self) -> float:
        """Seconds between grants at the sustained rate."""
        return self._interval

    def grant_now(self, now: float) -> bool:
        """Make a grant at ``now`` if the pace allows it; tell whether it did."""
        if now < self._tat - self._tolerance:
            return False
        self._tat = max(self._tat, now) + self._interval
        self._last = now
        return True

    def next_in(self, now: float) -> float:
        """Seconds from ``now`` until a grant may be made (0 or less: now)."""
        return self._tat - self._tolerance - now

    def queue_in(self, now: float, ahead: int) -> float:
        """Seconds from ``now`` to the grant of a caller with ``ahead`` callers before it, if
        nothing else is granted meanwhile (0 or less: now)."""
        return max(self._tat, now) + ahead * self._interval - self._tolerance - now

    def untake(self, at: float) -> None:
        """Give back a grant made at ``at``: exact while nothing was granted later (grants of
        one instant commute), which holds as a granted task runs right after its grant."""
        if at >= self._last:
            self._tat = max(self._tat - self._interval, self._floor)

    def refused(self, now: float, seconds: float, limit: int | None = None) -> None:
        """Grant nothing for ``seconds``, then resume at the pace (no burst)."""
        if seconds > 0:
            self._floor = max(self._floor, now + seconds + self._tolerance)
            self._tat = max(self._tat, self._floor)

    def confirm(self) -> bool:
        """Answers teach a paced bucket nothing."""
        return False

    def describe(self) -> str:
        """The state worth a repr."""
        return f"paced, burst={self.burst}"
