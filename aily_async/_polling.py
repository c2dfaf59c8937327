"""When to poll a run: a budget the client's pollers share, or a frugal backoff schedule.

**Shared budget** (``PollPolicy.shared()``, the client's default): the pollers of one client
spend ``share`` polls per second together (by default 80% of the ``runs.get`` quota of 1000
per minute, leaving the rest to the app's own calls). Each polls every
``max(interval, active / share)`` seconds, ``active`` being the number of pollers polling: a
few runs are polled every ``interval`` (sub-second detection), many share the budget fairly,
and the quota is never exceeded (the limiter enforces it anyway).

**Frugal schedule** (``PollPolicy.frugal()``, or any policy without ``share``), for apps on a
monthly call cap: every poll is a request the quota pays for, so the schedule aims at the
fewest GETs per run for a given delay in noticing completion. Its bound: **a run is noticed
within** ``(backoff - 1) / backoff`` **of its age** (half its age at the default ``backoff`` of 2),
counted when it is noticed, for every run that lasts at least the ``quantile`` (3%) of the
durations the client has seen (its last 1024); GETs grow with the logarithm of the duration.
On log-normal durations (median 10 s, sigma 0.8) that is about 2.8 GETs per run, with 95% of
runs noticed within half their age (``benchmarks/bench_polling.py``).

* ``adaptive=True`` (the default): once the client has seen ``min_samples`` runs end, the first
  poll comes when the run is ``backoff`` times the ``quantile`` of those durations old (polling
  sooner is wasted on almost every run), or at their ``1 - quantile`` quantile if that is sooner
  (durations that vary little: one poll then catches nearly every run), never sooner than
  ``interval``. Each later poll comes ``backoff - 1`` times the run's age later (the ages of the
  polls grow by ``backoff``), so a run that ended after one poll is noticed at the next, by then
  at most ``backoff`` times older.
* Before that (or with ``adaptive=False``): the first poll comes after ``interval``, and later
  gaps grow by ``backoff``.
* Gaps never exceed ``max_interval`` (a bound on the delay of long runs, at the cost of a few
  GETs) and carry up to ``jitter`` of random spread so that runs started together do not poll
  in step: the adaptive schedule's waits only ever get shorter (so the bound above holds), the
  fixed schedule's first wait only longer (polling before ``interval`` is not asked for) and its
  later gaps either way; no wait is shorter than ``interval``.
* A poll that fails for a passing reason (5xx, timeout, dropped connection, the token endpoint
  down), after its own retries, does not end the waits: polling goes on at its schedule until a
  poll succeeds, the wait's own deadline passes, or the failures have lasted ``max_outage``
  seconds (then the waits end with the last error).
* A wait with a deadline gets one last look just before it: a run that ended in time is
  returned, not reported as timed out.
"""

from __future__ import annotations

import bisect
import random
from collections import deque

import attrs

__all__ = ["DEFAULT_POLL_SHARE", "DurationStats", "PollBudget", "PollPolicy"]

#: Polls per second a client's pollers share by default: 80% of the ``runs.get`` quota.
DEFAULT_POLL_SHARE = 0.8 * 1000 / 60


@attrs.frozen
class PollPolicy:
    """How a :class:`RunHandle` polls. See the module docstring."""

    interval: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    backoff: float = attrs.field(default=2.0, validator=attrs.validators.ge(1))
    max_interval: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    jitter: float = attrs.field(
        default=0.1, validator=[attrs.validators.ge(0), attrs.validators.lt(1)]
    )
    adaptive: bool = True
    quantile: float = attrs.field(
        default=0.03, validator=[attrs.validators.gt(0), attrs.validators.lt(1)]
    )
    min_samples: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    max_outage: float = attrs.field(default=300.0, validator=attrs.validators.gt(0))
    share: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )

    @classmethod
    def shared(cls, share: float = DEFAULT_POLL_SHARE, interval: float = 0.5) -> PollPolicy:
        """The shared budget: ``share`` polls per second for all the client's pollers, each
        polling at most every ``interval`` seconds (the client's default)."""
        return cls(interval=interval, share=share, adaptive=False)

    @classmethod
    def frugal(cls) -> PollPolicy:
        """The frugal schedule: the fewest GETs per run, for apps on a monthly call cap."""
        return cls()

    def shared_gap(self, active: int) -> float:
        """The gap of each of ``active`` pollers sharing the budget."""
        assert self.share is not None
        return max(self.interval, active / self.share)

    def plan(self, stats: DurationStats | None, age: float) -> tuple[float, bool]:
        """The first gap for a run ``age`` seconds old, and whether the adaptive schedule
        applies (enough run durations were seen)."""
        if self.adaptive and stats is not None and len(stats) >= self.min_samples:
            first = min(
                self.backoff * stats.quantile(self.quantile), stats.quantile(1 - self.quantile)
            )
            return max(self.interval, first - age), True
        return self.interval, False

    def jittered(self, gap: float, *, first: bool, adaptive: bool = False) -> float:
        """``gap`` with jitter: the adaptive schedule's waits only shorter, the fixed
        schedule's first wait only longer, its later gaps either way; none shorter than
        ``interval``."""
        if not self.jitter:
            return gap
        if adaptive:
            low, high = -self.jitter, 0.0
        elif first:
            low, high = 0.0, self.jitter
        else:
            low, high = -self.jitter, self.jitter
        return max(self.interval, gap * (1 + random.uniform(low, high)))

    def next_gap(self, gap: float, age: float, adaptive: bool) -> float:
        """The gap after ``gap``, for a run now ``age`` seconds old."""
        if adaptive:
            return min(self.max_interval, max(self.interval, age * (self.backoff - 1)))
        return min(self.max_interval, gap * self.backoff)


class DurationStats:
    """The durations (seconds) of the last ``size`` runs this client saw end."""

    __slots__ = ("_recent", "_sorted")

    def __init__(self, size: int = 1024) -> None:
        self._recent: deque[float] = deque(maxlen=size)
        self._sorted: list[float] = []

    def add(self, seconds: float) -> None:
        """Record one run's duration."""
        if seconds < 0:
            return
        if len(self._recent) == self._recent.maxlen:
            oldest = self._recent[0]
            del self._sorted[bisect.bisect_left(self._sorted, oldest)]
        self._recent.append(seconds)
        bisect.insort(self._sorted, seconds)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the recorded durations (0 when none)."""
        if not self._sorted:
            return 0.0
        index = min(len(self._sorted) - 1, int(q * len(self._sorted)))
        return self._sorted[index]

    def __len__(self) -> int:
        return len(self._recent)

    def __repr__(self) -> str:
        if not self._sorted:
            return "DurationStats(empty)"
        return (
            f"DurationStats(n={len(self)}, p3={self.quantile(0.03):.2f}s, "
            f"p50={self.quantile(0.5):.2f}s)"
        )


class PollBudget:
    """How many pollers of one client are polling now (what a shared budget divides by)."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = 0

    def __repr__(self) -> str:
        return f"PollBudget(active={self.active})"
