"""Quota, not worker slots: the effect calls of a job wait for a grant only briefly.

A worker's client sends every call through a :class:`QuotaGate` around the shared limits
(:class:`~aily_async.redis.RedisLimits`). For the effect calls (``skills.start``,
``runs.create``) a job waits in its slot for a grant that comes within ``hold`` seconds;
when the grant is further away (the quota is spent, or a 429 paused the shared bucket), the
call raises :class:`QuotaDeferred` before anything is sent, and the job hands its slot back
to the queue for about that long (arq's ``Retry(defer=...)``). Other calls (polls, sessions,
messages) wait as usual: their quotas are ten times larger.

:class:`QuotaDeferred` is not an :class:`~aily_async.AilyError`: the client's retry loop
lets it through untouched, whichever attempt it comes from. A deferral never hides a call
that may have landed: ``skills.start`` is sent again only after a failure that certainly did
not land (or a 429), and ``runs.create`` looks for the run an uncertain attempt may have made
before it asks for a grant again.

After each grant of an effect call, the gate awaits :data:`before_send` of the current task
(if set): a skill job records there that its call may be in the air, right before it leaves.
"""

from __future__ import annotations

import contextvars
import random
from collections.abc import Awaitable, Callable, Iterable

from .._errors import LimiterTimeout
from .._limiter import LimiterSet, LimiterState, QuotaFeedback, RateLimiter

__all__ = ["EFFECT_CALLS", "QuotaDeferred", "QuotaGate", "before_send", "come_back", "eta"]

#: The calls a job defers for: the scarce quotas (100 per minute each).
EFFECT_CALLS = ("skills.start", "runs.create")

#: Awaited with the call's name after each grant of an effect call, before the request is
#: sent (set per task by a job; ``None``: nothing to do).
before_send: contextvars.ContextVar[Callable[[str], Awaitable[None]] | None] = (
    contextvars.ContextVar("aily_async_queue_before_send", default=None)
)


class QuotaDeferred(Exception):
    """The quota of ``call`` has no grant within the gate's hold: nothing was sent. The job
    should come back in about ``retry_in`` seconds."""

    def __init__(self, call: str, retry_in: float) -> None:
        super().__init__(f"{call}: no quota for {retry_in:.2f}s; the job steps aside")
        self.call = call
        self.retry_in = retry_in


def eta(limiter: RateLimiter) -> float:
    """Seconds until ``limiter`` could grant a request asked for now (0 when unknown)."""
    if not isinstance(limiter, LimiterState):
        return 0.0
    try:
        return max(0.0, limiter.queue_wait())
    except RuntimeError:  # no running loop
        return 0.0


def come_back(wait: float, hold: float) -> float:
    """When a job whose grant is ``wait`` seconds away should come back: shortly before the
    grant, so that it waits for the rest in its slot (within ``hold``), spread over most of
    ``hold`` so that the jobs deferred together do not all come back at once. (Early costs
    one more look at the quota; late, a grant nobody takes.)"""
    return max(0.05, wait - hold * random.uniform(0.2, 0.9))


class _Gated:
    """The limiter of an effect call behind the gate (a :class:`RateLimiter`; when its limiter
    is one, a :class:`LimiterState`; and it passes answers on to a limiter that learns from
    them, a :class:`QuotaFeedback`)."""

    __slots__ = ("_call", "_feedback", "_hold", "_inner", "_state")

    def __init__(self, call: str, inner: RateLimiter, hold: float) -> None:
        self._call = call
        self._inner = inner
        # What the inner limiter can do beyond a RateLimiter, decided once.
        self._feedback = inner if isinstance(inner, QuotaFeedback) else None
        self._state = inner if isinstance(inner, LimiterState) else None
        self._hold = hold

    async def acquire(self, timeout: float | None = None, *, first: bool = False) -> None:
        own = timeout is not None and timeout <= self._hold  # the call's deadline is sooner
        wait = timeout if own else self._hold
        try:
            if first and self._feedback is not None:
                await self._feedback.acquire(wait, first=True)
            else:
                await self._inner.acquire(wait)
        except LimiterTimeout:
            if own:
                raise
            raise QuotaDeferred(self._call, come_back(eta(self._inner), self._hold)) from None
        hook = before_send.get()
        if hook is not None:
            await hook(self._call)

    async def pause(self, seconds: float, *, limit: int | None = None) -> None:
        if self._feedback is not None:
            await self._feedback.pause(seconds, limit=limit)
        else:
            await self._inner.pause(seconds)

    def confirm(self) -> None:
        if self._feedback is not None:
            self._feedback.confirm()

    @property
    def waiting(self) -> int:
        return 0 if self._state is None else self._state.waiting

    @property
    def interval(self) -> float:
        return 0.0 if self._state is None else self._state.interval

    def next_grant_in(self) -> float:
        return 0.0 if self._state is None else self._state.next_grant_in()

    def queue_wait(self) -> float:
        return 0.0 if self._state is None else self._state.queue_wait()

    def __repr__(self) -> str:
        return f"<gated {self._call} hold={self._hold:g}s {self._inner!r}>"


class QuotaGate:
    """A :class:`LimiterSet` over ``limits`` whose ``calls`` wait at most ``hold`` seconds
    for a grant, then raise :class:`QuotaDeferred` (see the module docs)."""

    __slots__ = ("_calls", "_gated", "_hold", "_limits")

    def __init__(
        self, limits: LimiterSet, *, hold: float, calls: Iterable[str] = EFFECT_CALLS
    ) -> None:
        if not hold >= 0:
            raise ValueError(f"hold must be >= 0 seconds, got {hold!r}")
        self._limits = limits
        self._hold = float(hold)
        self._calls = frozenset(calls)
        self._gated: dict[str, _Gated] = {}

    @property
    def hold(self) -> float:
        """The longest wait for a grant of an effect call made in a worker slot."""
        return self._hold

    def for_call(self, call: str) -> RateLimiter:
        """The limiter of ``call``: gated for an effect call, the shared one otherwise."""
        if call not in self._calls:
            return self._limits.for_call(call)
        gated = self._gated.get(call)
        if gated is None:
            gated = self._gated[call] = _Gated(call, self._limits.for_call(call), self._hold)
        return gated

    def eta(self, call: str) -> float:
        """Seconds until ``call``'s limiter could grant (from what this process last saw)."""
        return eta(self._limits.for_call(call))

    def __repr__(self) -> str:
        return f"QuotaGate({self._limits!r}, hold={self._hold:g}, calls={sorted(self._calls)})"
