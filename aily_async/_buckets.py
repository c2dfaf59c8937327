"""TokenBucket: a FIFO-fair, cancellation-safe token bucket that a strict window never rejects.

The guarantee of ``TokenBucket(rate, per)`` (margin ``m``: see :func:`default_margin`):

* **Never more than ``rate`` grants in any window of ``per + m`` seconds** (so in any window of
  ``per`` seconds too), from the very first grant on; a grant answered 429 does not count (each
  :meth:`~TokenBucket.pause` gives one token back). The bucket holds ``rate`` tokens, and each
  token spent comes back ``per + m`` seconds after it was spent: it keeps the times of its
  grants (a rolling window) and grants when fewer than ``rate`` of them are younger than
  ``per + m``. The margin absorbs what the server sees differently: requests granted at one
  instant reach it spread out by the network (and a microsecond is added against float
  rounding). Proved by property tests on a virtual clock (``tests/test_limiter.py``).
* **It starts full**: ``K ≤ rate`` calls go at once, more go as the tokens come back, so ``K``
  calls take ``ceil(K/rate - 1) * (per + m)`` seconds, the least a strict window allows.

Two things can hold it back, both about grants it cannot see (``aily_async._windows`` has the
details). **The ramp** (``ramp=True``, the default): a process that starts cannot know what was
spent just before it (a previous run, another worker), so its first window goes 1, 2, 4, …
grants as answers confirm them (:meth:`TokenBucket.confirm`), or ``confirm_after`` seconds pass
without a 429; ``per + m`` seconds after the first grant the unknown grants are gone. Give
``ramp=False`` when nothing else spent the quota in the last window. **A 429**
(:meth:`TokenBucket.pause`) shows that someone else spends the quota: nothing is granted for the
announced reset, the bucket limits itself to the share the server had left it, and probes for
more once the window is over, one grant at a time, backing off up to 8 windows while the probes
fail. Neither ever lets more than ``rate`` through in a window.

``also=[(50, 1.0)]`` adds windows that must all hold (Aily's "1000 per minute and 50 per
second"). ``paced=True`` (or ``burst=``) selects the paced rule instead (``aily_async._paced``):
a small burst, then grants spread evenly, as the bucket did before.

Waiters are served in FIFO order by one re-armed timer (``acquire(first=True)`` queues at the
head: a call answered 429 keeps its turn); a waiter that is cancelled or times out consumes
nothing and does not delay those behind it. Time comes from the running loop's clock
(``loop.time()``) unless a ``clock`` is given.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Iterable

from ._errors import LimiterTimeout
from ._paced import Paced
from ._windows import Windows

__all__ = ["TokenBucket"]

#: The longest pause a 429 can impose (a larger reset is taken as a day).
MAX_PAUSE = 86400.0


def check_window(rate: object, per: object) -> tuple[int, float]:
    """``(rate, per)`` checked: an int >= 1 and a positive, finite number of seconds."""
    if not isinstance(rate, int) or isinstance(rate, bool) or rate < 1:
        raise ValueError(f"rate must be an int >= 1, got {rate!r}")
    if not isinstance(per, int | float) or not per > 0 or not math.isfinite(per):
        raise ValueError(f"per must be a positive number of seconds, got {per!r}")
    return rate, float(per)


def window_specs(
    rate: object, per: object, also: Iterable[tuple[int, float]], margin: float | None
) -> list[tuple[int, float, float]]:
    """The ``(rate, per, margin)`` of every window of a bucket, checked: the main one first,
    then ``also``; each margin is ``margin`` or the window's :func:`default_margin`."""
    if margin is not None and (not margin >= 0 or not math.isfinite(margin)):
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    windows = [check_window(rate, per), *(check_window(r, p) for r, p in also)]
    return [(r, p, default_margin(p) if margin is None else float(margin)) for r, p in windows]


def default_margin(per: float) -> float:
    """The default safety margin of a ``per``-second window: 2% of it, at most 1 s, but at least
    0.1 s (10% of a window shorter than a second).

    It must cover how far apart the server receives requests granted at one instant: a burst of
    a whole quota leaves one connection pool and one CPU over tens of milliseconds.
    """
    return min(1.0, max(0.02 * per, min(0.1, 0.1 * per)))


class TokenBucket:
    """A FIFO-fair token bucket whose grants fit ``rate`` per ``per`` seconds in any window.

    See the module docstring for the exact guarantee. ``also``: more ``(rate, per)`` windows that
    must hold too. ``margin`` (default: :func:`default_margin` of each window, 0.1 s to 1 s):
    the safety margin against network jitter. ``ramp`` (default ``True``): ramp up the first
    window, whose history is unknown; ``confirm_after``: seconds after which a grant with no
    429 counts as confirmed.
    ``paced=True``: the paced rule, with ``burst`` grants at once (default 2% of ``rate``; giving
    ``burst`` implies ``paced``). ``clock`` replaces the loop's clock (in tests).
    """

    __slots__ = ("_clock", "_name", "_nfirst", "_per", "_rate", "_rule", "_timer", "_waiters")

    def __init__(
        self,
        rate: int,
        per: float = 60.0,
        *,
        also: Iterable[tuple[int, float]] = (),
        margin: float | None = None,
        ramp: bool = True,
        confirm_after: float = 1.0,
        paced: bool = False,
        burst: int | None = None,
        clock: Callable[[], float] | None = None,
        name: str = "",
    ) -> None:
        windows = window_specs(rate, per, also, margin)
        rate, per, own_margin = windows[0]
        if not confirm_after > 0 or not math.isfinite(confirm_after):
            raise ValueError(f"confirm_after must be a positive number, got {confirm_after!r}")
        self._rate = rate
        self._per = per
        self._rule: Windows | Paced
        if paced or burst is not None:
            if len(windows) > 1:
                raise ValueError("a paced bucket has one window: leave out also=")
            if burst is None:
                burst = max(1, int(rate * 0.02))
            if not isinstance(burst, int) or not 1 <= burst <= rate:
                raise ValueError(f"burst must be from 1 to rate ({rate}), got {burst!r}")
            self._rule = Paced(rate, per, own_margin, burst)
        else:
            self._rule = Windows(windows, ramp=ramp, confirm_after=confirm_after)
        self._waiters: deque[asyncio.Future[float]] = deque()
        self._nfirst = 0  # waiters queued at the head (acquire(first=True)), done ones included
        self._timer: asyncio.TimerHandle | None = None
        self._clock = clock
        self._name = name

    # -- public surface -------------------------------------------------------------------

    @property
    def rate(self) -> int:
        """Grants allowed per ``per`` seconds (in the first window, for several)."""
        return self._rate

    @property
    def per(self) -> float:
        """The window, in seconds."""
        return self._per

    @property
    def paced(self) -> bool:
        """Whether the paced rule decides (``paced=True``), not the window."""
        return isinstance(self._rule, Paced)

    @property
    def burst(self) -> int:
        """Grants that may go at once after an idle spell: ``rate``, or the paced burst."""
        return self._rule.burst if isinstance(self._rule, Paced) else self._rate

    @property
    def interval(self) -> float:
        """Mean seconds per grant at the sustained rate.

        For the window bucket, ``(per + margin) / rate`` of its tightest window: grants come in
        bursts as tokens return, so this is an average, not a spacing. For the paced bucket,
        the spacing of its grants.
        """
        return self._rule.interval

    @property
    def waiting(self) -> int:
        """How many callers are waiting for a grant now."""
        return sum(1 for fut in self._waiters if not fut.done())

    def next_grant_in(self) -> float:
        """Seconds until the bucket can grant again (0 when it can now), ignoring the queue."""
        return max(0.0, self._rule.next_in(self._now()))

    def queue_wait(self) -> float:
        """Seconds until a caller queued now would be granted, behind those waiting, if nothing
        else changes (0 when at once): never later than that grant, and exact for a window
        bucket that has learnt no lower limit (and for the paced rule)."""
        return max(0.0, self._rule.queue_in(self._now(), self.waiting))

    async def acquire(self, timeout: float | None = None, *, first: bool = False) -> None:
        """Wait for a grant (FIFO). Raise :class:`LimiterTimeout` if none came in ``timeout`` s.

        ``first=True`` queues at the head, ahead of every other waiter (behind earlier
        ``first`` ones): for a call that was answered 429 and keeps its turn.
        """
        if not self._waiters and self._rule.grant_now(self._now()):
            return
        # The slow path is inlined, not a helper coroutine: a queued caller's stack stays
        # shallow (10,000 queued callers cost less memory).
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[float] = loop.create_future()
        if first:
            self._waiters.insert(self._nfirst, fut)
            self._nfirst += 1
        else:
            self._waiters.append(fut)
        if first or len(self._waiters) == 1 or self._timer is None:
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
            elif not fut.cancelled() and fut.exception() is None:
                # Granted, but the caller was cancelled before it could use the grant: give it
                # back, so a cancelled waiter consumes nothing.
                self._rule.untake(fut.result())
            self._arm(loop)
            raise
        finally:
            if expiry is not None:
                expiry.cancel()

    async def pause(self, seconds: float, *, limit: int | None = None) -> None:
        """A request was answered 429: grant nothing for ``seconds`` (the server's
        ``x-ogw-ratelimit-reset``), and learn that the server's window was full.

        ``limit`` (the answer's ``x-ogw-ratelimit-limit``, if known) tells which window was full
        when there are several. A paced bucket resumes at its pace after the pause.
        """
        if not seconds >= 0:  # NaN or negative: no pause, still a 429
            seconds = 0.0
        self._rule.refused(self._now(), min(float(seconds), MAX_PAUSE), limit)
        if self._waiters:  # what was learnt may move the next grant either way
            self._arm(asyncio.get_running_loop())

    def confirm(self) -> None:
        """A granted request was answered, and not with 429 (in the order of the grants).

        Lets the ramp and the probes go on without waiting ``confirm_after``; costs next to
        nothing otherwise. Call it once per answered request; a request that got no answer
        (dropped, cancelled) needs no call.
        """
        if self._rule.confirm() and self._waiters:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # outside a loop: the next acquire sees it
                return
            self._arm(loop)

    def __repr__(self) -> str:
        name = f"{self._name!r}, " if self._name else ""
        try:
            next_grant = f"{self.next_grant_in():.3f}s"
        except RuntimeError:  # no clock and no running loop: a repr must not raise
            next_grant = "?"
        state = self._rule.describe()
        return (
            f"TokenBucket({name}rate={self._rate}, per={self._per:g}, "
            f"{state + ', ' if state else ''}waiting={self.waiting}, next_grant_in={next_grant})"
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

    def _pop(self) -> asyncio.Future[float]:
        if self._nfirst:
            self._nfirst -= 1
        return self._waiters.popleft()

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """(Re)schedule the one timer for the time the queue's head can be granted."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters and self._waiters[0].done():
            self._pop()
        if not self._waiters:
            return
        delay = self._rule.next_in(self._now())
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
                self._pop()
                continue
            if not self._rule.grant_now(now):
                break
            self._pop()
            fut.set_result(now)
        if waiters:
            self._arm(loop)
