"""Every per-call quota of the client, each a bucket in one shared Redis: the one setting.

:class:`RedisLimits` is the :class:`~aily_async.LimiterSet` to give ``AilyClient(limiter=...)``:
as :class:`~aily_async.Limits` it sizes one bucket per API call to its quota, but each is a
:class:`RedisTokenBucket` keyed by app and call, and all of them share one connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import cast

from .._limiter import Limits, Quota, quota_windows
from ._backend import OnFailure, RedisBackend, RedisLike, check_on_failure
from ._bucket import RedisTokenBucket

__all__ = ["RedisLimits"]


class RedisLimits:
    """Every per-call quota bucket of the client, kept in one Redis: the one setting.

    ``AilyClient(..., limiter=RedisLimits("redis://host:6379/0", app_id="cli_x"))`` gives
    each API call a :class:`RedisTokenBucket` sized to its quota (as
    :class:`~aily_async.Limits` does: 1000 per minute *and* 50 per second for the calls without
    a quota of their own), under the key ``f"{key_prefix}:{app_id}:{call}"``, so every process
    of the app shares each quota. ``app_id`` is the app the quota belongs to. ``quotas`` and
    ``default`` override the documented quotas as in :class:`~aily_async.Limits`.
    ``on_failure``, ``local_fraction``, ``redis_timeout``, ``probe_interval`` and
    ``confirm_after``: see :class:`RedisTokenBucket`; one outage logs one warning for all
    buckets. Given a URL it owns the connection: use ``async with`` or :meth:`aclose`.
    """

    __slots__ = (
        "_app_id",
        "_backend",
        "_confirm_after",
        "_limits",
        "_local_fraction",
        "_on_failure",
        "_prefix",
    )

    def __init__(
        self,
        redis: RedisLike,
        *,
        app_id: str,
        key_prefix: str = "aily",
        quotas: Mapping[str, Quota] | None = None,
        default: Quota | None = None,
        on_failure: OnFailure = "closed",
        local_fraction: float = 0.5,
        redis_timeout: float = 1.0,
        probe_interval: float = 1.0,
        confirm_after: float = 1.0,
    ) -> None:
        if not isinstance(app_id, str) or not app_id:
            raise ValueError(f"app_id must be a non-empty string, got {app_id!r}")
        check_on_failure(on_failure, local_fraction)
        self._backend = RedisBackend(redis, timeout=redis_timeout, probe_interval=probe_interval)
        self._app_id = app_id
        self._prefix = key_prefix
        self._on_failure: OnFailure = on_failure
        self._local_fraction = local_fraction
        self._confirm_after = confirm_after
        self._limits = (
            Limits(quotas, factory=self._bucket)
            if default is None
            else Limits(quotas, default=quota_windows(default), factory=self._bucket)
        )

    def key_for(self, call: str) -> str:
        """The Redis key of ``call``'s bucket."""
        return f"{self._prefix}:{self._app_id}:{call}"

    def for_call(self, call: str) -> RedisTokenBucket:
        """The shared bucket of ``call`` (e.g. ``"skills.start"``), created on first use."""
        return cast(RedisTokenBucket, self._limits.for_call(call))

    def _bucket(self, call: str, windows: tuple[tuple[int, float], ...]) -> RedisTokenBucket:
        (rate, per), *also = windows
        return RedisTokenBucket(
            self._backend,
            self.key_for(call),
            rate,
            per,
            also=also,
            on_failure=self._on_failure,
            local_fraction=self._local_fraction,
            confirm_after=self._confirm_after,
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
