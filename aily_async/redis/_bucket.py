"""A token bucket whose one state lives in Redis, so every process sharing the key shares it.

:class:`RedisTokenBucket` is :class:`~aily_async.TokenBucket`'s GCRA with the TAT in a Redis
key (see :mod:`aily_async.redis` for the guarantee). Waiters of one process queue locally in
FIFO order in front of the script, so a process makes one Redis attempt at a time per bucket;
a waiter told "wait N µs" sleeps that long instead of polling, and a grant at most a moment
away is reserved and slept towards, and given back if its caller is cancelled. When Redis
fails, ``on_failure`` decides: raise, or grant from a local bucket whose grants are charged to
the shared one when Redis answers again.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

from .._errors import AilyRateLimiterError, LimiterTimeout
from .._limiter import TokenBucket
from ._backend import OnFailure, RedisBackend, RedisDown, RedisLike, check_on_failure

__all__ = ["RedisTokenBucket"]


class RedisTokenBucket:
    """A token bucket in Redis, shared by every process using ``key`` (a :class:`RateLimiter`).

    ``redis`` is a ``redis.asyncio`` client or a URL (then the bucket owns its connection:
    :meth:`aclose` it), or the backend of a :class:`~aily_async.redis.RedisLimits`, whose
    buckets share one connection (then ``redis_timeout`` and ``probe_interval`` are the
    backend's, and :meth:`aclose` leaves it open). ``rate``, ``per``, ``burst`` and ``margin``
    mean what they mean for :class:`~aily_async.TokenBucket`, and so does the guarantee, across
    all processes: see :mod:`aily_async.redis`. Every process sharing ``key`` must use the same
    values.

    ``on_failure`` is what happens when Redis fails: ``"closed"`` raises
    :class:`~aily_async.AilyRateLimiterError`; ``"local"`` falls back to a local bucket at
    ``local_fraction`` of the quota, with one warning logged, and returns to Redis when it
    answers (tried at most every ``probe_interval`` s). Each Redis call is bounded by
    ``redis_timeout`` seconds.
    """

    __slots__ = (
        "_backend",
        "_burst",
        "_busy",
        "_debt_times",
        "_floor",
        "_floor_local",
        "_in_local",
        "_interval",
        "_interval_us",
        "_key",
        "_lead_us",
        "_local",
        "_local_fraction",
        "_name",
        "_on_failure",
        "_owns_backend",
        "_paused_until",
        "_per",
        "_queue",
        "_rate",
        "_tolerance_us",
        "_window",
    )

    def __init__(
        self,
        redis: RedisLike | RedisBackend,
        key: str,
        rate: int,
        per: float = 60.0,
        *,
        burst: int | None = None,
        margin: float | None = None,
        on_failure: OnFailure = "closed",
        local_fraction: float = 0.5,
        redis_timeout: float = 1.0,
        probe_interval: float = 1.0,
        name: str = "",
    ) -> None:
        check_on_failure(on_failure, local_fraction)
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        shape = TokenBucket(rate, per, burst=burst, margin=margin)  # validates, as TokenBucket
        self._owns_backend = not isinstance(redis, RedisBackend)
        self._backend = (
            redis
            if isinstance(redis, RedisBackend)
            else RedisBackend(redis, timeout=redis_timeout, probe_interval=probe_interval)
        )
        self._key = key
        self._rate = rate
        self._per = float(per)
        self._burst = shape.burst
        self._interval_us = math.ceil(shape.interval * 1e6)  # rounded up: never faster
        self._interval = self._interval_us / 1e6
        self._tolerance_us = (shape.burst - 1) * self._interval_us
        self._lead_us = min(self._interval_us // 2, 100_000)
        self._window = shape.interval * (rate + 1 - shape.burst)  # per + margin
        self._on_failure = on_failure
        self._local_fraction = local_fraction
        self._local = TokenBucket(
            max(1, math.floor(rate * local_fraction)), per, margin=margin, name=name
        )
        self._name = name
        self._floor = 0  # the latest TAT seen: re-seeds a key that a Redis restart lost
        self._floor_local = -math.inf  # the same instant on the loop's clock
        self._in_local = False  # grants come from self._local (Redis failed, "local" mode)
        self._debt_times: deque[float] = deque()  # local grants not yet charged to Redis
        self._paused_until = -math.inf  # a pause that Redis could not take (loop time)
        self._busy = False  # one waiter of this process is at the script
        self._queue: deque[asyncio.Future[None]] = deque()

    # -- public surface -------------------------------------------------------------------

    @property
    def key(self) -> str:
        """The Redis key holding this bucket."""
        return self._key

    @property
    def rate(self) -> int:
        """Grants allowed per ``per`` seconds, across all processes."""
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
        """How many callers of this process are waiting for a grant now."""
        return sum(1 for fut in self._queue if not fut.done()) + int(self._busy)

    @property
    def using_redis(self) -> bool:
        """Whether grants come from Redis (``False`` during an outage, in either mode)."""
        return self._backend.down_since is None

    def next_grant_in(self) -> float:
        """Seconds until this process expects to be granted (0 when it can now), ignoring the queue.

        A local estimate, made without asking Redis: the wait that the latest TAT this process
        saw implies, or a pause that Redis could not take, or during an outage in ``"local"``
        mode the local bucket's wait. Grants by other processes since Redis last answered can
        only make the real wait longer. Reads the running loop's clock (``RuntimeError``
        without one).
        """
        now = asyncio.get_running_loop().time()
        wait = max(self._floor_local - self._tolerance_us / 1e6, self._paused_until) - now
        if self._on_failure == "local" and not self.using_redis:
            wait = max(wait, self._local.next_grant_in())
        return max(0.0, wait)

    async def acquire(self, timeout: float | None = None) -> None:
        """Wait for a grant (FIFO within the process).

        Raises :class:`~aily_async.LimiterTimeout` if none can come within ``timeout`` seconds
        (nothing is consumed then), and :class:`~aily_async.AilyRateLimiterError` if Redis
        fails and ``on_failure="closed"``.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + max(0.0, timeout)
        await self._enter(loop, deadline)
        try:
            reservation = await self._take(loop, deadline)
        finally:
            self._leave()
        if reservation is not None:
            wait, after, before = reservation
            try:
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                await self._give_back(after, before)
                raise

    async def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds`` in any process sharing the key (after a 429).

        If Redis cannot take the pause, this process alone pauses (it never raises).
        """
        if not seconds > 0:
            return
        seconds = min(float(seconds), 86400.0)
        loop = asyncio.get_running_loop()
        try:
            tat, now_us = await self._backend.run(
                "pause", self._key, round(seconds * 1e6), self._tolerance_us, self._floor
            )
        except RedisDown as exc:
            self._paused_until = max(self._paused_until, loop.time() + seconds)
            await self._local.pause(seconds)
            self._failed(str(exc))
            return
        self._answered(loop, tat, now_us)

    async def aclose(self) -> None:
        """Close the Redis connection if this bucket opened it (given a URL)."""
        if self._owns_backend:
            await self._backend.aclose()

    def __repr__(self) -> str:
        name = f"{self._name!r}, " if self._name else ""
        state = "redis" if self.using_redis else f"down, on_failure={self._on_failure!r}"
        return (
            f"RedisTokenBucket({name}key={self._key!r}, rate={self._rate}, "
            f"per={self._per:g}, burst={self._burst}, redis={self._backend.where} ({state}), "
            f"waiting={self.waiting})"
        )

    # -- the local FIFO in front of the script --------------------------------------------

    async def _enter(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> None:
        if not self._busy:  # then nobody is queued either: _leave empties the queue first
            self._busy = True
            return
        fut: asyncio.Future[None] = loop.create_future()
        self._queue.append(fut)
        expiry = loop.call_at(deadline, self._expire, fut) if deadline is not None else None
        try:
            await fut  # resolved by _leave: the turn passes to us
        except BaseException:
            if not fut.done():
                fut.cancel()
            elif not fut.cancelled() and fut.exception() is None:
                self._leave()  # our turn came but we are gone: pass it on
            raise
        finally:
            if expiry is not None:
                expiry.cancel()

    def _expire(self, fut: asyncio.Future[None]) -> None:
        if not fut.done():
            fut.set_exception(self._timeout_error("waiting behind other callers"))

    def _leave(self) -> None:
        while self._queue:
            fut = self._queue.popleft()
            if not fut.done():
                fut.set_result(None)
                return  # _busy stays True: the turn went to fut
        self._busy = False

    def _timeout_error(self, why: str) -> LimiterTimeout:
        return LimiterTimeout(f"no grant in time ({why}) from {self!r}", call="limiter")

    # -- one grant --------------------------------------------------------------------------

    async def _take(
        self, loop: asyncio.AbstractEventLoop, deadline: float | None
    ) -> tuple[float, int, int] | None:
        """Get a grant: ``None`` if it is now, else ``(sleep, tat after, tat before)``."""
        backend = self._backend
        while True:
            now = loop.time()
            if self._paused_until > now:
                if deadline is not None and self._paused_until > deadline:
                    raise self._timeout_error("paused")
                await asyncio.sleep(self._paused_until - now)
                continue
            remaining = None if deadline is None else max(0.0, deadline - now)
            if (
                self._on_failure == "local"
                and backend.down_since is not None
                and (now < backend.probe_at)
            ):
                await self._local_grant(loop, remaining)
                return None
            lead = self._lead_us if remaining is None else min(self._lead_us, int(remaining * 1e6))
            debt = self._debt(now)
            try:
                granted, wait_us, after, before, now_us = await backend.run(
                    "acquire",
                    self._key,
                    self._interval_us,
                    self._tolerance_us,
                    lead,
                    self._floor,
                    debt * self._interval_us,
                )
            except RedisDown as exc:
                if self._on_failure == "closed":
                    backend.failed(str(exc), local=False, fraction=self._local_fraction)
                    raise AilyRateLimiterError(
                        f"Redis at {backend.where} failed ({exc}); the shared rate limiter "
                        "fails closed (on_failure='closed')",
                        call=self._name or self._key,
                    ) from exc
                self._failed(str(exc))
                await self._local_grant(loop, remaining)
                return None
            self._answered(loop, after, now_us)
            self._debt_times.clear()
            wait = wait_us / 1e6
            if granted:
                return (wait, after, before) if wait_us > 0 else None
            if remaining is not None and wait > remaining:
                raise self._timeout_error(f"the next grant is {wait:.3f}s away")
            # Come back when the grant is half a lead away: the script then reserves it.
            await asyncio.sleep(max(0.0, wait - self._lead_us / 2e6))

    def _answered(self, loop: asyncio.AbstractEventLoop, tat: int, now_us: int) -> None:
        """Note a TAT that Redis answered (and when that is on the loop's clock)."""
        self._backend.answered()
        self._in_local = False
        if tat > self._floor:
            self._floor = tat
            # Mapped when the answer arrived, after Redis read its clock: errs late, the safe way.
            self._floor_local = loop.time() + (tat - now_us) / 1e6

    async def _local_grant(self, loop: asyncio.AbstractEventLoop, remaining: float | None) -> None:
        """A grant from the local fallback bucket, which goes on where the shared one was."""
        if not self._in_local:
            self._in_local = True
            ahead = self._floor_local - loop.time()
            if ahead > 0:
                await self._local.pause(ahead)
        await self._local.acquire(remaining)
        self._debt_times.append(loop.time())

    def _debt(self, now: float) -> int:
        """Local grants of the last window, to charge to the shared bucket on return."""
        times = self._debt_times
        while times and times[0] <= now - self._window:
            times.popleft()
        return len(times)

    def _failed(self, reason: str) -> None:
        self._backend.failed(
            reason, local=self._on_failure == "local", fraction=self._local_fraction
        )

    async def _give_back(self, after: int, before: int) -> None:
        """Return a reserved grant whose caller was cancelled, unless others moved the TAT."""
        try:
            (released,) = await self._backend.run("release", self._key, after, before)
        except RedisDown:
            return  # the grant stays used: conservative
        if released and self._floor == after:
            self._floor = before
