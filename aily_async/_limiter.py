"""Client-side rate limiting: a token bucket that a strict server window never rejects.

The guarantee of :class:`TokenBucket` ``(rate, per, burst=C, margin=m)``:

* **Never more than ``rate`` grants in any window of ``per + margin`` seconds** (so in any window
  of ``per`` seconds as well), from the very first grant on. The bucket starts with only ``C``
  tokens (a small burst, 2% of the rate by default), not with ``rate`` of them: a bucket that
  starts full lets twice the quota through in the first window.
* **Under saturation it grants ``(rate + 1 - C) / (rate * (1 + margin/per))`` of the quota**,
  ≥ 96% with the defaults for every documented Aily quota.

It is a GCRA ("virtual scheduling") bucket: grants are spaced by the emission interval
``T = (per + margin) / (rate + 1 - C)`` with a tolerance of ``C - 1`` early grants. Any ``n``
consecutive grants span at least ``(n - C) * T`` seconds, so a half-open window of length
``L = per + margin`` holds at most ``C + L/T - 1 = rate`` of them. The ``margin`` (2% of ``per``,
at most 1 s) absorbs what the server sees differently from us: requests granted at one instant
reach it spread out and reordered by the network and the connection pool.

Waiters are served in FIFO order by one re-armed timer; a waiter that is cancelled or times out
consumes nothing and does not delay those behind it. Time comes from the running loop's clock
(``loop.time()``) unless a ``clock`` is given.
"""

from __future__ import annotations

import asyncio
import enum
import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from ._errors import LimiterTimeout

__all__ = [
    "DEFAULT_LIMITS",
    "DOCUMENTED_QUOTAS",
    "LimiterOption",
    "LimiterSet",
    "LimiterState",
    "Limits",
    "RateLimiter",
    "TokenBucket",
    "limiter_set",
]

#: The quotas of the Aily OpenAPI, per call, per app: ``(rate, per_seconds)``. Every other call:
#: 1000 per minute and 50 per second (the default bucket for 1000/min never grants more than 36
#: in a second, see :class:`Limits`).
DOCUMENTED_QUOTAS: Mapping[str, tuple[int, float]] = {
    "runs.create": (100, 60.0),
    "skills.start": (100, 60.0),
}
_OTHER_QUOTA = (1000, 60.0)


@runtime_checkable
class RateLimiter(Protocol):
    """What the client needs of a limiter: wait for a grant, and pause everyone after a 429."""

    async def acquire(self, timeout: float | None = None) -> None:
        """Wait until a request may be sent; raise :class:`LimiterTimeout` after ``timeout``."""
        ...

    async def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds`` (the server's ``x-ogw-ratelimit-reset``)."""
        ...


@runtime_checkable
class LimiterState(Protocol):
    """A limiter that can tell how busy it is (what batch progress reports); optional."""

    @property
    def waiting(self) -> int:
        """How many callers are waiting for a grant now."""
        ...

    @property
    def interval(self) -> float:
        """Seconds between grants at the sustained rate."""
        ...

    def next_grant_in(self) -> float:
        """Seconds until the limiter can grant again (0 when it can now)."""
        ...


@runtime_checkable
class LimiterSet(Protocol):
    """Chooses the limiter of each API call (``Limits`` is one)."""

    def for_call(self, call: str) -> RateLimiter:
        """The limiter that ``call`` (e.g. ``"runs.get"``) goes through."""
        ...


class TokenBucket:
    """A FIFO-fair token bucket whose grants fit ``rate`` per ``per`` seconds in any window.

    See the module docstring for the exact guarantee. ``burst`` (default: 2% of ``rate``, at
    least 1) is how many grants may go at once after an idle spell; ``margin`` (default: 2% of
    ``per``, at most 1 s) is the safety margin against network jitter; ``clock`` replaces the
    loop's clock (in tests).
    """

    __slots__ = (
        "_burst",
        "_clock",
        "_floor",
        "_interval",
        "_last_grant",
        "_margin",
        "_name",
        "_per",
        "_rate",
        "_tat",
        "_timer",
        "_tolerance",
        "_waiters",
    )

    def __init__(
        self,
        rate: int,
        per: float = 60.0,
        *,
        burst: int | None = None,
        margin: float | None = None,
        clock: Callable[[], float] | None = None,
        name: str = "",
    ) -> None:
        if not isinstance(rate, int) or isinstance(rate, bool) or rate < 1:
            raise ValueError(f"rate must be an int >= 1, got {rate!r}")
        if not per > 0 or not math.isfinite(per):
            raise ValueError(f"per must be a positive number of seconds, got {per!r}")
        if burst is None:
            burst = max(1, int(rate * 0.02))
        if not 1 <= burst <= rate:
            raise ValueError(f"burst must be from 1 to rate ({rate}), got {burst!r}")
        if margin is None:
            margin = min(1.0, 0.02 * per)
        if margin < 0 or not math.isfinite(margin):
            raise ValueError(f"margin must be >= 0, got {margin!r}")
        self._rate = rate
        self._per = float(per)
        self._burst = burst
        self._margin = float(margin)
        # A hair over the exact interval so that float rounding can never let one extra through.
        self._interval = (per + margin) / (rate + 1 - burst) * (1 + 1e-9)
        self._tolerance = (burst - 1) * self._interval
        self._tat = -math.inf  # theoretical arrival time of the next grant at the paced rate
        self._floor = -math.inf  # the least ``_tat`` the pauses so far allow
        self._last_grant = -math.inf  # the instant of the latest grant
        self._waiters: deque[asyncio.Future[float]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._clock = clock
        self._name = name

    # -- public surface -------------------------------------------------------------------

    @property
    def rate(self) -> int:
        """Grants allowed per ``per`` seconds."""
        return self._rate

    @property
    def per(self) -> float:
        """The window, in seconds."""
        return self._per

    @property
    def burst(self) -> int:
        """Grants that may go at once after an idle spell."""
        return self._burst

    @property
    def interval(self) -> float:
        """Seconds between grants at the sustained rate."""
        return self._interval

    @property
    def waiting(self) -> int:
        """How many callers are waiting for a grant now."""
        return sum(1 for fut in self._waiters if not fut.done())

    def next_grant_in(self) -> float:
        """Seconds until the bucket can grant again (0 when it can now), ignoring the queue."""
        return max(0.0, self._tat - self._tolerance - self._now())

    async def acquire(self, timeout: float | None = None) -> None:
        """Wait for a grant (FIFO). Raise :class:`LimiterTimeout` if none came in ``timeout`` s."""
        now = self._now()
        if not self._waiters and now >= self._tat - self._tolerance:
            self._tat = max(self._tat, now) + self._interval
            self._last_grant = now
            return
        # The slow path is inlined, not a helper coroutine: a queued caller's stack stays
        # shallow (10,000 queued callers cost less memory).
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[float] = loop.create_future()
        self._waiters.append(fut)
        if len(self._waiters) == 1 or self._timer is None:
            self._arm(loop)
        expiry = (
            loop.call_later(max(0.0, timeout), self._expire, fut, timeout)
            if timeout is not None
            else None
        )
        try:
            await fut
        except BaseException:
            if not fut.done():
                # Not cancelled through the task (e.g. the coroutine was closed): leave the queue.
                fut.cancel()
            elif (
                not fut.cancelled() and fut.exception() is None and fut.result() >= self._last_grant
            ):
                # Granted, but the caller was cancelled before it could use the grant: give it
                # back, so a cancelled waiter consumes nothing. Exact while nothing was granted
                # at a later instant (grants of one instant commute); always so in practice, as
                # the granted task runs in the loop iteration right after its grant.
                self._tat = max(self._tat - self._interval, self._floor)
            self._arm(loop)
            raise
        finally:
            if expiry is not None:
                expiry.cancel()

    async def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds``, then resume at the paced rate (after a 429)."""
        if seconds > 0:
            self._floor = max(self._floor, self._now() + seconds + self._tolerance)
            self._tat = max(self._tat, self._floor)

    def __repr__(self) -> str:
        name = f"{self._name!r}, " if self._name else ""
        try:
            next_grant = f"{self.next_grant_in():.3f}s"
        except RuntimeError:  # no clock and no running loop: a repr must not raise
            next_grant = "?"
        return (
            f"TokenBucket({name}rate={self._rate}, per={self._per:g}, burst={self._burst}, "
            f"waiting={self.waiting}, next_grant_in={next_grant})"
        )

    # -- internals ------------------------------------------------------------------------

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    def _expire(self, fut: asyncio.Future[float], timeout: float) -> None:
        if not fut.done():
            fut.set_exception(
                LimiterTimeout(f"no grant within {timeout:g}s from {self!r}", call="limiter")
            )

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """(Re)schedule the one timer for the time the queue's head can be granted."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
        if not self._waiters:
            return
        delay = self._tat - self._tolerance - self._now()
        if delay <= 0:
            self._timer = loop.call_soon(self._grant, loop)  # type: ignore[assignment]
        else:
            self._timer = loop.call_later(delay, self._grant, loop)

    def _grant(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = self._now()
        waiters = self._waiters
        while waiters:
            fut = waiters[0]
            if fut.done():  # cancelled or timed out: consumes nothing
                waiters.popleft()
                continue
            if now < self._tat - self._tolerance:
                break
            self._tat = max(self._tat, now) + self._interval
            self._last_grant = now
            waiters.popleft()
            fut.set_result(now)
        if waiters:
            self._arm(loop)


LimiterFactory = Callable[[str, int, float], RateLimiter]


def _local_bucket(call: str, rate: int, per: float) -> RateLimiter:
    return TokenBucket(rate, per, name=call)


class Limits:
    """One limiter per API call, sized to the documented quotas (the client's default).

    The Aily gateway counts every API separately: ``runs.create`` and ``skills.start`` get 100
    per minute each, every other call 1000 per minute and 50 per second. The default 1000/min
    bucket (burst 20, interval ≈ 62 ms) never grants more than 36 in any second, so it keeps
    the per-second quota too. ``quotas`` overrides or adds ``{call: (rate, per)}``; ``factory``
    builds each limiter (e.g. a Redis-backed one); ``share_with`` lets several calls share one.
    """

    __slots__ = ("_default", "_factory", "_limiters", "_quotas")

    def __init__(
        self,
        quotas: Mapping[str, tuple[int, float]] | None = None,
        *,
        default: tuple[int, float] = _OTHER_QUOTA,
        factory: LimiterFactory = _local_bucket,
    ) -> None:
        self._quotas = dict(DOCUMENTED_QUOTAS)
        if quotas:
            self._quotas.update(quotas)
        self._default = default
        self._factory = factory
        self._limiters: dict[str, RateLimiter] = {}

    def for_call(self, call: str) -> RateLimiter:
        """The limiter of ``call`` (e.g. ``"runs.get"``), created on first use."""
        limiter = self._limiters.get(call)
        if limiter is None:
            rate, per = self._quotas.get(call, self._default)
            limiter = self._limiters[call] = self._factory(call, rate, per)
        return limiter

    def __repr__(self) -> str:
        return f"Limits({', '.join(f'{k}={v!r}' for k, v in sorted(self._limiters.items()))})"


class _Default(enum.Enum):
    LIMITS = "DEFAULT_LIMITS"

    def __repr__(self) -> str:
        return "DEFAULT_LIMITS"


#: The ``limiter=`` default of a client: one bucket per API call, sized to the documented quotas.
DEFAULT_LIMITS = _Default.LIMITS

#: What ``AilyClient(limiter=...)`` takes.
LimiterOption = RateLimiter | LimiterSet | _Default | None


class _OneForAll:
    """Every call through one limiter."""

    __slots__ = ("_limiter",)

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    def for_call(self, call: str) -> RateLimiter:
        return self._limiter

    def __repr__(self) -> str:
        return f"OneForAll({self._limiter!r})"


def limiter_set(option: LimiterOption) -> LimiterSet | None:
    """The :class:`LimiterSet` behind a ``limiter=`` option (``None``: no throttling)."""
    if option is DEFAULT_LIMITS:
        return Limits()
    if option is None:
        return None
    if isinstance(option, LimiterSet):
        return option
    if isinstance(option, RateLimiter):
        return _OneForAll(option)
    raise TypeError(f"limiter must be a RateLimiter, a Limits, or None, got {option!r}")
