"""One quota shared by every process and machine, through token buckets kept in Redis.

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

from ._bucket import RedisTokenBucket
from ._limits import RedisLimits

__all__ = ["RedisLimits", "RedisTokenBucket"]
