"""A window bucket whose record of grants lives in Redis, shared by every process on the key.

:class:`RedisTokenBucket` keeps :class:`~aily_async.TokenBucket`'s window rule with the record
in a Redis sorted set (see :mod:`aily_async.redis` for the guarantee and the scripts). Waiters of
one process queue locally in FIFO order in front of the script (``acquire(first=True)`` at the
head), so a process makes one Redis attempt at a time per bucket; a waiter told "wait N µs"
sleeps that long instead of polling, and a grant at most a moment away is reserved and slept
towards, and given back if its caller is cancelled. When Redis fails, ``on_failure`` decides:
raise, or grant from a local window rule at a fraction of the quota, which starts from this
process's own recent grants; those made locally are added to the shared record when Redis
answers again.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections import deque
from collections.abc import Iterable

from .._buckets import MAX_PAUSE, TokenBucket, window_specs
from .._errors import AilyRateLimiterError, LimiterTimeout
from .._windows import Windows
from ._backend import OnFailure, RedisBackend, RedisDown, RedisLike, check_on_failure

__all__ = ["RedisTokenBucket"]


class RedisTokenBucket:
    """A token bucket in Redis, shared by every process using ``key`` (a :class:`RateLimiter`).

    ``redis`` is a ``redis.asyncio`` client or a URL (then the bucket owns its connection:
    :meth:`aclose` it), or the backend of a :class:`~aily_async.redis.RedisLimits`, whose
    buckets share one connection (then ``redis_timeout`` and ``probe_interval`` are the
    backend's, and :meth:`aclose` leaves it open). ``rate``, ``per``, ``also``, ``margin`` and
    ``confirm_after`` mean what they mean for :class:`~aily_async.TokenBucket`, and so does the
    guarantee, across all processes: see :mod:`aily_async.redis`. There is no ramp: the shared
    record is the history. Every process sharing ``key`` must use the same windows.

    ``on_failure`` is what happens when Redis fails: ``"closed"`` raises
    :class:`~aily_async.AilyRateLimiterError`; ``"local"`` grants from a local window at
    ``local_fraction`` of the quota, with one warning logged, and returns to Redis when it
    answers (tried at most every ``probe_interval`` s). Each Redis call is bounded by
    ``redis_timeout`` seconds.
    """

    __slots__ = (
        "_acked",
        "_args",
        "_backend",
        "_busy",
        "_confirm_after",
        "_confirmed",
        "_count",
        "_interval",
        "_keys",
        "_lead_us",
        "_local",
        "_local_fraction",
        "_longest",
        "_mine",
        "_name",
        "_next_at",
        "_nfirst",
        "_offset_us",
        "_on_failure",
        "_owns_backend",
        "_paused_until",
        "_per",
        "_prefix",
        "_probes",
        "_queue",
        "_rate",
        "_reseed",
        "_seq",
        "_windows",
    )

    def __init__(
        self,
        redis: RedisLike | RedisBackend,
        key: str,
        rate: int,
        per: float = 60.0,
        *,
        also: Iterable[tuple[int, float]] = (),
        margin: float | None = None,
        on_failure: OnFailure = "closed",
        local_fraction: float = 0.5,
        redis_timeout: float = 1.0,
        probe_interval: float = 1.0,
        confirm_after: float = 1.0,
        name: str = "",
    ) -> None:
        check_on_failure(on_failure, local_fraction)
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        also = list(also)
        # Validates every argument as TokenBucket does.
        shape = TokenBucket(rate, per, also=also, margin=margin, confirm_after=confirm_after)
        self._windows = window_specs(rate, per, also, margin)
        self._owns_backend = not isinstance(redis, RedisBackend)
        self._backend = (
            redis
            if isinstance(redis, RedisBackend)
            else RedisBackend(redis, timeout=redis_timeout, probe_interval=probe_interval)
        )
        self._keys = (key, f"{key}:learnt")
        self._args: list[int | str] = [len(self._windows)]
        for r, p, m in self._windows:
            self._args += [r, math.ceil((p + m) * 1e6) + 1, math.ceil(p * 1e6)]
        self._longest = max(p + m for _, p, m in self._windows)
        self._rate = rate
        self._per = float(per)
        self._interval = shape.interval
        self._confirm_after = float(confirm_after)
        self._lead_us = min(math.ceil(shape.interval * 1e6) // 2, 100_000)
        self._on_failure: OnFailure = on_failure
        self._local_fraction = local_fraction
        self._local: Windows | None = None  # the fallback rule while Redis is down ("local")
        self._name = name
        self._prefix = secrets.token_hex(6)  # makes this process's members unique
        self._count = 0
        self._mine: deque[tuple[int, str]] = deque()  # own grants: (server µs, member)
        self._offset_us = 0.0  # Redis's clock minus the loop's, µs, at the latest answer
        self._reseed = False  # add our recent grants to the record (Redis lost them)
        self._seq = 0  # grants made by this process
        self._acked = 0  # of them answered (confirm() and 429s), in order
        self._probes: deque[tuple[int, str]] = deque()  # our grants above a learnt limit
        self._confirmed: list[str] = []  # of them confirmed, to tell Redis
        self._paused_until = -math.inf  # a pause that Redis could not take (loop time)
        self._next_at = -math.inf  # when Redis said the next grant could come (loop time)
        self._busy = False  # one waiter of this process is at the script
        self._queue: deque[asyncio.Future[None]] = deque()
        self._nfirst = 0

    # -- public surface -------------------------------------------------------------------

    @property
    def key(self) -> str:
        """The Redis key holding this bucket's grants (what was learnt is in ``key:learnt``)."""
        return self._keys[0]

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
        """Grants that may go at once into an empty window: ``rate``."""
        return self._rate

    @property
    def interval(self) -> float:
        """Mean seconds per grant at the full quota of the tightest window (an average: grants
        come in bursts as tokens return)."""
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
        """Seconds until this process expects to be granted (0 when it can now), ignoring the
        queue: what Redis said at its latest answer, or a pause Redis could not take, or during
        an outage in ``"local"`` mode the local rule's wait. Grants by other processes since
        can only make it longer. Reads the running loop's clock (``RuntimeError`` without one).
        """
        now = asyncio.get_running_loop().time()
        wait = max(self._next_at, self._paused_until) - now
        if self._local is not None and not self.using_redis:
            wait = max(wait, self._local.next_in(now))
        return max(0.0, wait)

    def queue_wait(self) -> float:
        """Seconds until a caller of this process queued now would be granted, behind this
        process's waiters (0 when at once): at least :meth:`next_grant_in`, plus one window
        for each full quota waiting ahead. Other processes' grants can only make it longer."""
        waiting = self.waiting
        rounds = max((waiting // r) * (p + m) for r, p, m in self._windows)
        return self.next_grant_in() + rounds

    async def acquire(self, timeout: float | None = None, *, first: bool = False) -> None:
        """Wait for a grant (FIFO within the process; ``first=True`` at the head).

        Raises :class:`~aily_async.LimiterTimeout` if none can come within ``timeout`` seconds
        (nothing is consumed then), and :class:`~aily_async.AilyRateLimiterError` if Redis
        fails and ``on_failure="closed"``.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + max(0.0, timeout)
        await self._enter(loop, deadline, first)
        try:
            reservation = await self._take(loop, deadline)
        finally:
            self._leave()
        if reservation is not None:
            wait, member = reservation
            try:
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                await self._give_back(member)
                raise

    def confirm(self) -> None:
        """A granted request was answered, and not with 429 (in the order of the grants): a
        probe above a learnt limit that went through raises the shared limit."""
        if self._acked < self._seq:
            self._acked += 1
        while self._probes and self._probes[0][0] <= self._acked:
            self._confirmed.append(self._probes.popleft()[1])

    async def pause(self, seconds: float, *, limit: int | None = None) -> None:
        """A request was answered 429: grant nothing for ``seconds`` in any process sharing
        the key, and learn that the window was full (``limit``: the answer's
        ``x-ogw-ratelimit-limit``, if known). If Redis cannot take it, this process alone
        pauses (it never raises)."""
        if self._acked < self._seq:
            self._acked += 1
        self._probes.clear()  # the round is over; a refused probe proved nothing
        seconds = min(float(seconds), MAX_PAUSE) if seconds >= 0 else 0.0  # NaN: 0
        loop = asyncio.get_running_loop()
        try:
            _, now_us, _ = await self._backend.run(
                "refused", self._keys, [*self._args, round(seconds * 1e6), limit or 0]
            )
        except RedisDown as exc:
            self._paused_until = max(self._paused_until, loop.time() + seconds)
            if self._local is not None:
                self._local.refused(loop.time(), seconds, limit)
            self._failed(str(exc))
            return
        self._answered(loop, now_us)
        self._next_at = max(self._next_at, loop.time() + seconds)

    async def aclose(self) -> None:
        """Close the Redis connection if this bucket opened it (given a URL)."""
        if self._owns_backend:
            await self._backend.aclose()

    def __repr__(self) -> str:
        name = f"{self._name!r}, " if self._name else ""
        state = "redis" if self.using_redis else f"down, on_failure={self._on_failure!r}"
        return (
            f"RedisTokenBucket({name}key={self.key!r}, rate={self._rate}, "
            f"per={self._per:g}, redis={self._backend.where} ({state}), waiting={self.waiting})"
        )

    # -- the local FIFO in front of the script --------------------------------------------

    async def _enter(
        self, loop: asyncio.AbstractEventLoop, deadline: float | None, first: bool
    ) -> None:
        if not self._busy:  # then nobody is queued either: _leave empties the queue first
            self._busy = True
            return
        fut: asyncio.Future[None] = loop.create_future()
        if first:
            self._queue.insert(self._nfirst, fut)
            self._nfirst += 1
        else:
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
            if self._nfirst:
                self._nfirst -= 1
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
    ) -> tuple[float, str] | None:
        """Get a grant: ``None`` if it is now, else ``(sleep, member)`` of a reserved one."""
        backend = self._backend
        while True:
            now = loop.time()
            if self._paused_until > now:
                if deadline is not None and self._paused_until > deadline:
                    raise self._timeout_error("paused")
                await asyncio.sleep(self._paused_until - now)
                continue
            remaining = None if deadline is None else max(0.0, deadline - now)
            local = self._on_failure == "local" and backend.down_since is not None
            if local and now < backend.probe_at:
                await self._local_grant(loop, remaining)
                return None
            self._count += 1
            member = f"{self._prefix}:{self._count}"
            lead = self._lead_us if remaining is None else min(self._lead_us, int(remaining * 1e6))
            confirmed, self._confirmed = self._confirmed, []
            # Back from an outage, or Redis lost the record: our grants of the window count.
            returning = backend.down_since is not None or self._local is not None
            seeds = self._seeds(now) if self._reseed or returning else []
            expect = int(self._holds_ours(now + 0.1))  # ours surely still in the record
            try:
                granted, wait_us, probe, now_us, after_us, before = await backend.run(
                    "acquire",
                    self._keys,
                    [
                        *self._args,
                        round(self._confirm_after * 1e6),
                        lead,
                        member,
                        expect,
                        len(confirmed),
                        *confirmed,
                        len(seeds) // 2,
                        *seeds,
                    ],
                )
            except RedisDown as exc:
                self._confirmed[:0] = confirmed  # told next time
                if self._on_failure == "closed":
                    backend.failed(str(exc), local=False, fraction=self._local_fraction)
                    raise AilyRateLimiterError(
                        f"Redis at {backend.where} failed ({exc}); the shared rate limiter "
                        "fails closed (on_failure='closed')",
                        call=self._name or self.key,
                    ) from exc
                self._failed(str(exc))
                await self._local_grant(loop, remaining)
                return None
            self._answered(loop, now_us)
            # An empty record while ours should be in it: Redis restarted without its data.
            self._reseed = before == 0 and not seeds and expect > 0
            self._next_at = loop.time() + after_us / 1e6
            wait = wait_us / 1e6
            if granted:
                self._granted(now_us + wait_us, member, bool(probe))
                return (wait, member) if wait_us > 0 else None
            if remaining is not None and wait > remaining:
                raise self._timeout_error(f"the next grant is {wait:.3f}s away")
            # Come back when the grant is half a lead away: the script then reserves it.
            await asyncio.sleep(max(0.0, wait - self._lead_us / 2e6))

    def _granted(self, at_us: int, member: str, probe: bool) -> None:
        self._seq += 1
        if probe:
            self._probes.append((self._seq, member))
        mine = self._mine
        mine.append((at_us, member))
        while mine and mine[0][0] <= at_us - self._longest * 1e6:
            mine.popleft()

    def _since(self, now: float) -> float:
        """Where the longest window that ends at ``now`` (loop time) starts, on Redis' clock
        (µs)."""
        return now * 1e6 + self._offset_us - self._longest * 1e6

    def _seeds(self, now: float) -> list[int | str]:
        """Our grants of the longest window, as ``score, member`` pairs for the script."""
        since = self._since(now)
        return [x for at, member in self._mine if at > since for x in (at, member)]

    def _holds_ours(self, now: float) -> bool:
        """Whether the record should still hold one of our grants at ``now`` (newest first:
        an answer at the first look, nearly always)."""
        since = self._since(now)
        return any(at > since for at, _ in reversed(self._mine))

    def _answered(self, loop: asyncio.AbstractEventLoop, now_us: int) -> None:
        """Note an answer of Redis (read at ``now_us`` on its clock)."""
        self._local = None
        self._backend.answered()
        # Mapped when the answer arrived, after Redis read its clock: errs late, the safe way.
        self._offset_us = now_us - loop.time() * 1e6

    async def _local_grant(self, loop: asyncio.AbstractEventLoop, remaining: float | None) -> None:
        """A grant from the local fallback rule, which starts from our own recent grants."""
        rule = self._local
        if rule is None:
            rule = self._local = Windows(
                [(max(1, math.floor(r * self._local_fraction)), p, m) for r, p, m in self._windows],
                ramp=False,
                confirm_after=self._confirm_after,
            )
            for at, _ in self._mine:
                rule.record((at - self._offset_us) / 1e6)
        deadline = None if remaining is None else loop.time() + remaining
        while not rule.grant_now(loop.time()):
            wait = rule.next_in(loop.time())
            if deadline is not None and loop.time() + wait > deadline:
                raise self._timeout_error(f"the local fallback's next grant is {wait:.3f}s away")
            await asyncio.sleep(wait)
        self._count += 1
        self._granted(
            round(loop.time() * 1e6 + self._offset_us), f"{self._prefix}:{self._count}", False
        )

    def _failed(self, reason: str) -> None:
        self._backend.failed(
            reason, local=self._on_failure == "local", fraction=self._local_fraction
        )

    async def _give_back(self, member: str) -> None:
        """Return a reserved grant whose caller was cancelled."""
        try:
            await self._backend.run("release", self._keys, [*self._args, member])
        except RedisDown:
            return  # the grant stays used: conservative
        self._seq -= 1
        self._acked = min(self._acked, self._seq)
        if self._probes and self._probes[-1][1] == member:
            self._probes.pop()
        if self._mine and self._mine[-1][1] == member:
            self._mine.pop()
