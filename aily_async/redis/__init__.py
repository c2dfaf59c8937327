"""One quota shared by every process and machine, through token buckets kept in Redis.

Aily quotas belong to the app, not to a process: eight workers with a local
:class:`~aily_async.TokenBucket` each send up to eight times the quota. Here every process
that shares a key shares one bucket, kept in Redis::

    from aily_async.redis import RedisLimits

    async with RedisLimits("redis://localhost:6379/0", app_id="cli_x") as limits:
        async with AilyClient("cli_x", secret, limiter=limits) as client:
            ...

**The guarantee** is :class:`~aily_async.TokenBucket`'s, across every process sharing the key
(all of them configured with the same windows and margin): never more than ``rate`` grants in
any window of ``per + margin`` seconds, from the first grant on. The bucket starts full: ``K ≤
rate`` calls go at once, more as the tokens come back, so N processes get the burst and the
pace of one, and a process that starts (or restarts) knows what the others, and its previous
run, spent: there is no ramp, the shared record is the history.

**How.** The record is a sorted set of grant times in one Redis key, trimmed to the longest
window. Each attempt is one Lua script, atomic on the server, that reads the time from the
server (``TIME``: the clocks of the machines running the workers play no part), counts the
grants younger than each window's span, and either adds the grant or answers how long until a
token is back; a waiter sleeps that long instead of polling. When the grant is at most a moment
away (half the mean interval, at most 0.1 s), the script records it at that instant and the
caller sleeps until then, so waking late costs no capacity. Waiters of one process queue
locally in FIFO order in front of the script, so one process makes one Redis attempt at a time
per bucket. Scripts run by ``EVALSHA`` and are sent again by ``EVAL`` after ``NOSCRIPT``. The
keys expire by themselves when idle.

**A 429** seen by any process (:meth:`RedisTokenBucket.pause`) pauses every process for the
announced reset, and teaches all of them the share of the quota left to them (kept in a second
key, ``key:learnt``): one grant above it is probed at a time once the window is over, backing
off up to 8 windows while the probes fail, as :class:`~aily_async.TokenBucket` does.

**When Redis fails** (refused connection, timeout, any Redis error), ``on_failure`` decides:

* ``"closed"`` (default): :meth:`~RedisTokenBucket.acquire` raises
  :class:`~aily_async.AilyRateLimiterError` naming Redis. Nothing is sent unthrottled.
* ``"local"``: the process falls back to a local window at ``local_fraction`` of the quota
  (default 0.5, which keeps the quota for up to two processes: use ``1 / number of
  processes`` to keep it for all), counting its own grants of the last window, and logs one
  warning per outage. Redis is tried again at most every ``probe_interval`` seconds and used
  again once it answers; the grants made locally are then added to the shared record.

Nothing hangs: every Redis call is bounded by ``redis_timeout`` seconds (1 s by default).
A Redis that comes back without its data finds its record empty: each process puts its own
grants of the window back before its next grant.
"""

from __future__ import annotations

from ._bucket import RedisTokenBucket
from ._limits import RedisLimits

__all__ = ["RedisLimits", "RedisTokenBucket"]
