"""Rate limiting: the limiter protocols, and ``Limits``, one bucket per API call by its quota.

A limiter is anything with ``acquire()`` and ``pause()`` (:class:`RateLimiter`); the client asks
a :class:`LimiterSet` (:class:`Limits` by default) for the limiter of each call. The buckets
themselves are :class:`~aily_async.TokenBucket` (``aily_async._buckets``), which keeps every
window of a quota from its first grant on, starts full, and learns from the answers.

A limiter may also take feedback (:class:`QuotaFeedback`): the client then calls ``confirm()``
after each answer that is not a 429, passes a 429's ``x-ogw-ratelimit-limit`` to
``pause(..., limit=)``, and queues a call retried after a 429 with ``acquire(first=True)``, so
that call keeps its turn.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeAlias, cast, runtime_checkable

from ._buckets import TokenBucket as TokenBucket  # re-exported: its home is _buckets

__all__ = [
    "DEFAULT_LIMITS",
    "DOCUMENTED_QUOTAS",
    "LimiterOption",
    "LimiterSet",
    "LimiterState",
    "Limits",
    "QuotaFeedback",
    "RateLimiter",
    "limiter_set",
]

#: The quotas of the Aily OpenAPI, per call, per app: ``(rate, per_seconds)``. Every other call
#: has two: 1000 per minute and 50 per second (``Limits``' default, both enforced).
DOCUMENTED_QUOTAS: Mapping[str, tuple[int, float]] = {
    "runs.create": (100, 60.0),
    "skills.start": (100, 60.0),
}
_OTHER_QUOTA = ((1000, 60.0), (50, 1.0))

#: A quota: ``(rate, per)``, or several such windows that must all hold.
Quota: TypeAlias = "tuple[int, float] | Sequence[tuple[int, float]]"


def quota_windows(quota: Quota) -> tuple[tuple[int, float], ...]:
    """The ``(rate, per)`` windows of a quota given as one pair or as a list of pairs."""
    if quota and not isinstance(quota[0], Sequence):
        return (cast("tuple[int, float]", tuple(quota)),)
    windows = tuple(cast("Sequence[tuple[int, float]]", quota))
    if not windows:
        raise ValueError("a quota needs at least one (rate, per) window")
    return windows


@runtime_checkable
class RateLimiter(Protocol):
    """What the client needs of a limiter: wait for a grant, and pause everyone after a 429."""

    async def acquire(self, timeout: float | None = None) -> None:
        """Wait until a request may be sent; raise :class:`LimiterTimeout` after ``timeout``."""
        ...

    async def pause(self, seconds: float) -> None:
        """A request was answered 429: grant nothing for ``seconds`` (the server's
        ``x-ogw-ratelimit-reset``)."""
        ...


@runtime_checkable
class QuotaFeedback(Protocol):
    """A limiter that learns from the answers (optional; :class:`TokenBucket` is one).

    The client calls :meth:`confirm` once for every granted request answered with anything but
    a 429, tells :meth:`pause` of each 429 with the quota the answer named, and retries a call
    answered 429 with ``acquire(first=True)``.
    """

    def confirm(self) -> None:
        """A granted request was answered, and not with 429."""
        ...

    async def pause(self, seconds: float, *, limit: int | None = None) -> None:
        """A request was answered 429: grant nothing for ``seconds``; ``limit`` is the
        answer's ``x-ogw-ratelimit-limit`` (which quota was full), ``None`` if it had none."""
        ...

    async def acquire(self, timeout: float | None = None, *, first: bool = False) -> None:
        """Wait for a grant; ``first=True`` queues ahead of every other waiter."""
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

    def queue_wait(self) -> float:
        """Seconds until a caller queued now would be granted, behind the callers already
        waiting, if nothing else changes (0 when at once). An estimate that errs short: what
        a caller with a deadline is told before it queues."""
        ...


@runtime_checkable
class LimiterSet(Protocol):
    """Chooses the limiter of each API call (``Limits`` is one)."""

    def for_call(self, call: str) -> RateLimiter:
        """The limiter that ``call`` (e.g. ``"runs.get"``) goes through."""
        ...


#: Builds the limiter of a call from its quota's windows: ``factory(call, ((rate, per), ...))``.
LimiterFactory = Callable[[str, tuple[tuple[int, float], ...]], RateLimiter]


def _local_bucket(call: str, windows: tuple[tuple[int, float], ...]) -> RateLimiter:
    (rate, per), *also = windows
    return TokenBucket(rate, per, also=also, name=call)


class Limits:
    """One limiter per API call, sized to the documented quotas (the client's default).

    The Aily gateway counts every API separately: ``runs.create`` and ``skills.start`` get 100
    per minute each, every other call 1000 per minute and 50 per second: its bucket keeps both
    windows. ``quotas`` overrides or adds ``{call: (rate, per)}`` (or a list of such windows,
    all kept), ``default`` is the quota of the calls it does not name; ``factory`` builds each
    limiter from ``(call, windows)`` (e.g. a Redis-backed one).
    """

    __slots__ = ("_default", "_factory", "_limiters", "_quotas")

    def __init__(
        self,
        quotas: Mapping[str, Quota] | None = None,
        *,
        default: Quota = _OTHER_QUOTA,
        factory: LimiterFactory = _local_bucket,
    ) -> None:
        self._quotas = {call: quota_windows(q) for call, q in DOCUMENTED_QUOTAS.items()}
        if quotas:
            self._quotas.update((call, quota_windows(q)) for call, q in quotas.items())
        self._default = quota_windows(default)
        self._factory = factory
        self._limiters: dict[str, RateLimiter] = {}

    @classmethod
    def scaled(
        cls,
        scale: float,
        quotas: Mapping[str, Quota] | None = None,
        *,
        default: Quota = _OTHER_QUOTA,
        factory: LimiterFactory = _local_bucket,
    ) -> Limits:
        """The documented quotas (with ``quotas`` over them, ``default`` for the calls not
        named) with every window's ``per`` multiplied by ``scale``: the client's match for a
        ``FakeAily(time_scale=scale)``, so a test or a demo runs at the quota in a fraction
        of the time (0.05: 100 per minute becomes 100 per 3 s)."""
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")

        def shrink(quota: Quota) -> list[tuple[int, float]]:
            return [(rate, per * scale) for rate, per in quota_windows(quota)]

        table = {call: shrink(quota) for call, quota in DOCUMENTED_QUOTAS.items()}
        table.update((call, shrink(quota)) for call, quota in (quotas or {}).items())
        return cls(table, default=shrink(default), factory=factory)

    def for_call(self, call: str) -> RateLimiter:
        """The limiter of ``call`` (e.g. ``"runs.get"``), created on first use."""
        limiter = self._limiters.get(call)
        if limiter is None:
            windows = self._quotas.get(call, self._default)
            limiter = self._limiters[call] = self._factory(call, windows)
        return limiter

    def __repr__(self) -> str:
        def quota(windows: tuple[tuple[int, float], ...]) -> str:
            return " and ".join(f"{rate}/{per:g}s" for rate, per in windows)

        quotas = [f"{call}={quota(w)}" for call, w in sorted(self._quotas.items())]
        quotas.append(f"default={quota(self._default)}")
        made = ", ".join(sorted(self._limiters))
        return f"Limits({', '.join(quotas)}; in use: {made or 'none yet'})"


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
