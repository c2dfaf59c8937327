"""One quota for every process and machine: token buckets kept in Redis.

Aily quotas belong to the app, not to a process: eight workers with a local
:class:`~aily_async.TokenBucket` each send up to eight times the quota. Here every process
that shares a key shares one bucket, kept in Redis::

    from aily_async.redis import RedisLimits

    async with RedisLimits("redis://localhost:6379/0", app_id="cli_x") as limits:
        async with AilyClient("cli_x", secret, limiter=limits) as client:
            ...

**The guarantee** is :class:`~aily_async.TokenBucket`'s, across every process sharing the key
(all of them configured with the same ``rate``, ``per``, ``burst`` and ``margin``): never more
than ``rate`` grants in any window of ``per + margin`` seconds, and under saturation
``(rate + 1 - burst) / (rate * (1 + margin/per))`` of the quota granted (≥ 96% with the
defaults for every documented Aily quota). It is the same GCRA: grants spaced by
``T = (per + margin) / (rate + 1 - burst)`` with a tolerance of ``burst - 1`` early grants,
whose one state, the theoretical arrival time (TAT), lives in one Redis key.

**How.** Each attempt is one Lua script, atomic on the server, that reads the time from the
server (``TIME``: the clocks of the machines running the workers play no part), checks and
moves the TAT, and sets the key to expire when the bucket is full again (an idle bucket
leaves nothing behind). It answers "granted" or "wait N µs"; a waiter sleeps that long
instead of polling. When the grant is at most a moment away (half an interval, at most
0.1 s), the script reserves it and the caller sleeps until its instant, so waking late costs
no capacity. Waiters of one process queue locally in FIFO order in front of the script, so
one process makes one Redis attempt at a time per bucket. Scripts run by ``EVALSHA`` and are
sent again by ``EVAL`` after ``NOSCRIPT`` (a ``SCRIPT FLUSH`` or a new server).

A 429 seen by any process (:meth:`RedisTokenBucket.pause`) moves the shared TAT forward, so
every process pauses.

**When Redis fails** (refused connection, timeout, any Redis error), ``on_failure`` decides:

* ``"closed"`` (default): :meth:`~RedisTokenBucket.acquire` raises
  :class:`~aily_async.AilyRateLimiterError` naming Redis. Nothing is sent unthrottled.
* ``"local"``: the process falls back to a local :class:`~aily_async.TokenBucket` at
  ``local_fraction`` of the quota (default 0.5, which keeps the quota for up to two
  processes: use ``1 / number of processes`` to keep it for all), logging one warning per
  outage. Redis is tried again at most every ``probe_interval`` seconds and used again once
  it answers; the grants made locally in the last window are then charged to the shared
  bucket.

Nothing hangs: every Redis call is bounded by ``redis_timeout`` seconds (1 s by default).
A Redis that restarts without its data forgets the bucket; each process then re-seeds the
key from the latest TAT it saw, so the window that spans the restart stays close to the quota.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, TypeAlias, cast

try:
    import redis.asyncio as aioredis
    from redis import Redis as SyncRedis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import NoScriptError, RedisError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "aily_async.redis needs the 'redis' package: pip install 'aily-async[redis]'"
    ) from exc

from ._errors import AilyRateLimiterError, LimiterTimeout
from ._limiter import Limits, TokenBucket

__all__ = ["RedisLimits", "RedisTokenBucket"]

logger = logging.getLogger("aily_async")

OnFailure = Literal["closed", "local"]

#: A ``redis.asyncio.Redis`` client, or a ``redis://`` / ``rediss://`` / ``unix://`` URL.
RedisLike: TypeAlias = "aioredis.Redis | str"

# -- the scripts ----------------------------------------------------------------------------
# Times are integer microseconds of the server's clock (``TIME``), exact in Lua's doubles.
# Numbers are written with '%.0f': Lua's default number format keeps only 14 digits.

_PRELUDE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function store(key, tat)
  redis.call('SET', key, string.format('%.0f', tat),
             'PX', string.format('%.0f', math.ceil((tat - now) / 1000) + 1))
end
"""

# ARGV: interval, tolerance, lead, floor, debt.
# Returns {granted, wait, tat after, tat before, now}.
_ACQUIRE = (
    _PRELUDE
    + """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local stored = tonumber(redis.call('GET', KEYS[1]) or '') or 0
local tat = math.max(stored, tonumber(ARGV[4]), now) + tonumber(ARGV[5])
local wait = tat - tolerance - now
if wait > tonumber(ARGV[3]) then
  if tat > stored and tat > now then store(KEYS[1], tat) end
  return {0, wait, tat, tat, now}
end
if wait < 0 then wait = 0 end
store(KEYS[1], tat + interval)
return {1, wait, tat + interval, tat, now}
"""
)

# ARGV: seconds of pause in µs, tolerance, floor. Returns {tat, now}.
_PAUSE = (
    _PRELUDE
    + """
local stored = tonumber(redis.call('GET', KEYS[1]) or '') or 0
local tat = math.max(stored, tonumber(ARGV[3]), now + tonumber(ARGV[1]) + tonumber(ARGV[2]))
store(KEYS[1], tat)
return {tat, now}
"""
)

# ARGV: the TAT a grant set, the TAT before it. Gives the grant back if nothing moved since.
_RELEASE = (
    _PRELUDE
    + """
local stored = tonumber(redis.call('GET', KEYS[1]) or '')
if stored == nil or stored ~= tonumber(ARGV[1]) then return {0} end
local before = tonumber(ARGV[2])
if before > now then store(KEYS[1], before) else redis.call('DEL', KEYS[1]) end
return {1}
"""
)


class _Script:
    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


_SCRIPTS = {
    name: _Script(src)
    for name, src in (("acquire", _ACQUIRE), ("pause", _PAUSE), ("release", _RELEASE))
}


class _RedisDown(Exception):
    """Redis did not answer (or answered with an error): the caller applies ``on_failure``."""


def _describe(client: Any) -> str:
    """Where the client points, without credentials: ``host:port/db`` or the socket path."""
    pool = getattr(client, "connection_pool", None)
    kwargs: Mapping[str, Any] = getattr(pool, "connection_kwargs", None) or {}
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    if "host" in kwargs:
        return f"{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    return type(client).__name__


class _Backend:
    """One Redis connection and its health, shared by the buckets of a :class:`RedisLimits`."""

    __slots__ = ("_owned", "down_since", "probe_at", "probe_interval", "redis", "timeout", "where")

    def __init__(self, redis: RedisLike, *, timeout: float, probe_interval: float) -> None:
        if not timeout > 0 or not math.isfinite(timeout):
            raise ValueError(f"redis_timeout must be a positive number of seconds, got {timeout!r}")
        if not probe_interval >= 0 or not math.isfinite(probe_interval):
            raise ValueError(f"probe_interval must be >= 0, got {probe_interval!r}")
        self._owned = isinstance(redis, str)
        if isinstance(redis, str):
            # One retry without backoff: a pooled connection that a Redis restart broke is
            # replaced at once; anything longer is the outage that on_failure handles.
            redis = aioredis.Redis.from_url(
                redis,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 1),
            )
        elif isinstance(redis, SyncRedis) or not hasattr(redis, "evalsha"):
            raise TypeError(f"redis must be a redis.asyncio client or a URL, got {redis!r}")
        self.redis: Any = redis
        self.timeout = float(timeout)
        self.probe_interval = float(probe_interval)
        self.where = _describe(redis)
        self.down_since: float | None = None  # loop time of the first failure of an outage
        self.probe_at = 0.0  # loop time before which a "local" bucket does not try Redis

    async def run(self, name: str, key: str, *args: int) -> list[int]:
        """Run a script on ``key``: EVALSHA, then EVAL after NOSCRIPT; bounded by the timeout."""
        script = _SCRIPTS[name]
        try:
            result = await asyncio.wait_for(self._eval(script, key, args), self.timeout)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            detail = str(exc) or f"no answer in {self.timeout:g}s"
            raise _RedisDown(f"{type(exc).__name__}: {detail}") from exc
        return [int(value) for value in result]

    async def _eval(self, script: _Script, key: str, args: tuple[int, ...]) -> Any:
        try:
            return await self.redis.evalsha(script.sha, 1, key, *args)
        except NoScriptError:
            return await self.redis.eval(script.source, 1, key, *args)

    def failed(self, reason: str, *, local: bool, fraction: float) -> None:
        """Note a failure; the first of an outage logs one warning."""
        now = asyncio.get_running_loop().time()
        if self.down_since is None:
            self.down_since = now
            then = (
                f"falls back to local buckets at {fraction:.0%} of each quota"
                if local
                else "fails closed: calls raise AilyRateLimiterError"
            )
            logger.warning(
                "Redis at %s failed (%s): rate limiting %s until Redis answers again",
                self.where,
                reason,
                then,
            )
        self.probe_at = now + self.probe_interval

    def answered(self) -> None:
        """Note an answer: ends an outage."""
        if self.down_since is not None:
            outage = asyncio.get_running_loop().time() - self.down_since
            self.down_since = None
            logger.warning(
                "Redis at %s answers again after %.1fs: back to the shared buckets",
                self.where,
                outage,
            )

    async def aclose(self) -> None:
        if self._owned:
            close = getattr(self.redis, "aclose", None) or self.redis.close
            await close()


def _check_on_failure(on_failure: str, local_fraction: float) -> None:
    if on_failure not in ("closed", "local"):
        raise ValueError(f"on_failure must be 'closed' or 'local', got {on_failure!r}")
    if not 0 < local_fraction <= 1:
        raise ValueError(f"local_fraction must be in (0, 1], got {local_fraction!r}")


class RedisTokenBucket:
    """A token bucket in Redis, shared by every process using ``key`` (a :class:`RateLimiter`).

    ``redis`` is a ``redis.asyncio`` client or a URL (then the bucket owns its connection:
    :meth:`aclose` it). ``rate``, ``per``, ``burst`` and ``margin`` mean what they mean for
    :class:`~aily_async.TokenBucket`, and so does the guarantee, across all processes: see
    :mod:`aily_async.redis`. Every process sharing ``key`` must use the same values.

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
        "_paused_until",
        "_per",
        "_queue",
        "_rate",
        "_tolerance_us",
        "_window",
    )

    def __init__(
        self,
        redis: RedisLike,
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
        _check_on_failure(on_failure, local_fraction)
        backend = _Backend(redis, timeout=redis_timeout, probe_interval=probe_interval)
        self._setup(backend, key, rate, per, burst, margin, on_failure, local_fraction, name)

    def _setup(
        self,
        backend: _Backend,
        key: str,
        rate: int,
        per: float,
        burst: int | None,
        margin: float | None,
        on_failure: OnFailure,
        local_fraction: float,
        name: str,
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        shape = TokenBucket(rate, per, burst=burst, margin=margin)  # validates, as TokenBucket
        self._backend = backend
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
        except _RedisDown as exc:
            self._paused_until = max(self._paused_until, loop.time() + seconds)
            await self._local.pause(seconds)
            self._failed(str(exc))
            return
        self._answered(loop, tat, now_us)

    async def aclose(self) -> None:
        """Close the Redis connection if this bucket opened it (given a URL)."""
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
            except _RedisDown as exc:
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
        except _RedisDown:
            return  # the grant stays used: conservative
        if released and self._floor == after:
            self._floor = before


def _make_bucket(
    backend: _Backend,
    key: str,
    rate: int,
    per: float,
    *,
    burst: int | None,
    margin: float | None,
    on_failure: OnFailure,
    local_fraction: float,
    name: str,
) -> RedisTokenBucket:
    bucket = RedisTokenBucket.__new__(RedisTokenBucket)
    bucket._setup(backend, key, rate, per, burst, margin, on_failure, local_fraction, name)
    return bucket


class RedisLimits:
    """Every per-call quota bucket of the client, kept in one Redis: the one setting.

    ``AilyClient(..., limiter=RedisLimits("redis://host:6379/0", app_id="cli_x"))`` gives
    each API call a :class:`RedisTokenBucket` sized to its quota (as
    :class:`~aily_async.Limits` does), under the key ``f"{key_prefix}:{app_id}:{call}"``,
    so every process of the app shares each quota. ``app_id`` is the app the quota belongs
    to. ``quotas`` and ``default`` override the documented quotas as in
    :class:`~aily_async.Limits`. ``on_failure``, ``local_fraction``, ``redis_timeout`` and
    ``probe_interval``: see :class:`RedisTokenBucket`; one outage logs one warning for all
    buckets. Given a URL it owns the connection: use ``async with`` or :meth:`aclose`.
    """

    __slots__ = ("_app_id", "_backend", "_limits", "_local_fraction", "_on_failure", "_prefix")

    def __init__(
        self,
        redis: RedisLike,
        *,
        app_id: str,
        key_prefix: str = "aily",
        quotas: Mapping[str, tuple[int, float]] | None = None,
        default: tuple[int, float] = (1000, 60.0),
        on_failure: OnFailure = "closed",
        local_fraction: float = 0.5,
        redis_timeout: float = 1.0,
        probe_interval: float = 1.0,
    ) -> None:
        if not isinstance(app_id, str) or not app_id:
            raise ValueError(f"app_id must be a non-empty string, got {app_id!r}")
        _check_on_failure(on_failure, local_fraction)
        self._backend = _Backend(redis, timeout=redis_timeout, probe_interval=probe_interval)
        self._app_id = app_id
        self._prefix = key_prefix
        self._on_failure: OnFailure = on_failure
        self._local_fraction = local_fraction
        self._limits = Limits(quotas, default=default, factory=self._bucket)

    def key_for(self, call: str) -> str:
        """The Redis key of ``call``'s bucket."""
        return f"{self._prefix}:{self._app_id}:{call}"

    def for_call(self, call: str) -> RedisTokenBucket:
        """The shared bucket of ``call`` (e.g. ``"skills.start"``), created on first use."""
        return cast(RedisTokenBucket, self._limits.for_call(call))

    def _bucket(self, call: str, rate: int, per: float) -> RedisTokenBucket:
        return _make_bucket(
            self._backend,
            self.key_for(call),
            rate,
            per,
            burst=None,
            margin=None,
            on_failure=self._on_failure,
            local_fraction=self._local_fraction,
            name=call,
        )

    async def aclose(self) -> None:
        """Close the Redis connection if these limits opened it (given a URL)."""
        await self._backend.aclose()

    async def __aenter__(self) -> RedisLimits:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"RedisLimits(app_id={self._app_id!r}, redis={self._backend.where}, "
            f"on_failure={self._on_failure!r})"
        )
