"""One Redis connection and its health: scripts run with a deadline, outages noticed once.

A :class:`RedisBackend` runs the scripts of :mod:`._scripts` by ``EVALSHA`` (sent again by
``EVAL`` after ``NOSCRIPT``: a ``SCRIPT FLUSH`` or a new server), each call bounded by a
timeout. Any failure (refused connection, timeout, any Redis error) comes out as
:class:`RedisDown`; the buckets sharing the backend then apply their ``on_failure`` and report
it with :meth:`RedisBackend.failed`, which logs one warning per outage and sets when Redis is
probed again, and :meth:`RedisBackend.answered`, which ends the outage.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

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

from ._scripts import SCRIPTS, Script

__all__ = ["OnFailure", "RedisBackend", "RedisDown", "RedisLike", "check_on_failure"]

logger = logging.getLogger("aily_async")

#: What a bucket does when Redis fails: raise (``"closed"``) or grant from a local bucket.
OnFailure = Literal["closed", "local"]

#: A ``redis.asyncio.Redis`` client, or a ``redis://`` / ``rediss://`` / ``unix://`` URL.
RedisLike: TypeAlias = "aioredis.Redis | str"


class RedisDown(Exception):
    """Redis did not answer (or answered with an error): the caller applies ``on_failure``."""


def check_on_failure(on_failure: str, local_fraction: float) -> None:
    """Refuse an unknown failure mode or a ``local_fraction`` outside (0, 1]."""
    if on_failure not in ("closed", "local"):
        raise ValueError(f"on_failure must be 'closed' or 'local', got {on_failure!r}")
    if not 0 < local_fraction <= 1:
        raise ValueError(f"local_fraction must be in (0, 1], got {local_fraction!r}")


def _describe(client: Any) -> str:
    """Where the client points, without credentials: ``host:port/db`` or the socket path."""
    pool = getattr(client, "connection_pool", None)
    kwargs: Mapping[str, Any] = getattr(pool, "connection_kwargs", None) or {}
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    if "host" in kwargs:
        return f"{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    return type(client).__name__


class RedisBackend:
    """One Redis connection and its health, shared by the buckets that use it.

    Given a URL it opens (and owns) the connection, with ``timeout`` for connecting and for
    every socket operation; given a ``redis.asyncio`` client it uses it as it is and leaves
    closing it to its owner. ``probe_interval`` is how long a bucket in ``"local"`` mode keeps
    away from Redis after a failure.
    """

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

    async def run(self, name: str, keys: Sequence[str], args: Sequence[int | str]) -> list[int]:
        """Run a script on ``keys``: EVALSHA, then EVAL after NOSCRIPT; bounded by the timeout.

        Raises :class:`RedisDown` if Redis fails or does not answer in time.
        """
        script = SCRIPTS[name]
        try:
            result = await asyncio.wait_for(self._eval(script, keys, args), self.timeout)
            return [int(value) for value in result]
        except (RedisError, OSError, asyncio.TimeoutError, ValueError, TypeError) as exc:
            detail = str(exc) or f"no answer in {self.timeout:g}s"
            raise RedisDown(f"{type(exc).__name__}: {detail}") from exc

    async def _eval(self, script: Script, keys: Sequence[str], args: Sequence[int | str]) -> Any:
        try:
            return await self.redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.redis.eval(script.source, len(keys), *keys, *args)

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
        """Close the connection if this backend opened it (given a URL)."""
        if self._owned:
            close = getattr(self.redis, "aclose", None) or self.redis.close
            await close()
