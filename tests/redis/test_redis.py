"""RedisTokenBucket and RedisLimits in one process, against a real redis-server.

Redis reads its own clock, so these tests run in real time, on small scaled quotas (a window of
a second or less). Failures of Redis are in ``test_redis_failures.py``, several processes in
``test_redis_processes.py``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
import redis
import redis.asyncio as aioredis
from _redis_support import ROOT, RedisServer, command_calls, max_in_window

from aily_async import LimiterSet, LimiterState, LimiterTimeout, QuotaFeedback, RateLimiter
from aily_async.redis import RedisLimits, RedisTokenBucket


async def test_one_process_gets_the_burst_then_the_window(
    redis_server: RedisServer, rclient: aioredis.Redis, buckets: list[RedisTokenBucket]
) -> None:
    """Fifty tasks on a 20-per-second bucket: 20 go at once, 20 more when those tokens are back
    (1.1 s), the last 10 a window later; never more than 20 in a second; and the process asks
    Redis about twice per grant, not once per waiter."""
    bucket = RedisTokenBucket(redis_server.url, "t:one", 20, 1.0)
    buckets.append(bucket)
    await bucket.acquire()  # a warm connection
    await asyncio.sleep(1.1)
    await rclient.config_resetstat()
    loop = asyncio.get_running_loop()
    start = loop.time()
    times: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        times.append(loop.time() - start)

    await asyncio.gather(*(one() for _ in range(50)))
    assert max_in_window(times, 1.0) <= 20
    assert max(times[:20]) < 0.3
    assert min(times[20:]) >= 1.0
    assert max(times[20:40]) < 1.4
    assert 2.0 <= min(times[40:]) < 2.4
    assert await command_calls(rclient, "evalsha") <= 3 * len(times)


async def test_waiters_of_one_process_are_served_in_fifo_order(
    redis_server: RedisServer, buckets: list[RedisTokenBucket]
) -> None:
    """Callers of one process get their grants in the order they asked; ``first=True`` goes
    ahead of the plain waiters queued (a call retried after a 429 keeps its turn), behind the
    one already asking Redis."""
    bucket = RedisTokenBucket(redis_server.url, "t:fifo", 1, 0.1)  # a grant per 0.102 s
    buckets.append(bucket)
    order: list[str] = []

    async def one(name: str, first: bool = False) -> None:
        await bucket.acquire(first=first)
        order.append(name)

    tasks = []
    for i in range(6):
        tasks.append(asyncio.create_task(one(f"p{i}")))
        await asyncio.sleep(0.001)
    tasks.append(asyncio.create_task(one("retry", first=True)))
    await asyncio.gather(*tasks)
    # p1 is at Redis (its grant is a token away) when the retry comes: the retry goes next.
    assert order == ["p0", "p1", "retry", "p2", "p3", "p4", "p5"]


async def test_acquire_times_out_promptly_and_consumes_nothing(
    redis_server: RedisServer, buckets: list[RedisTokenBucket]
) -> None:
    """acquire(timeout) raises LimiterTimeout at once for a grant beyond it, or when its turn
    does not come in time, and consumes nothing."""
    bucket = RedisTokenBucket(redis_server.url, "t:timeout", 2, 1.0)  # tokens back in 1.1 s
    buckets.append(bucket)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await bucket.acquire()
    await bucket.acquire()
    with pytest.raises(LimiterTimeout):
        await bucket.acquire(timeout=0.1)
    assert loop.time() - start < 0.2  # it saw the grant was a second away and gave up at once
    queued = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0.01)
    with pytest.raises(LimiterTimeout):  # behind a local waiter
        await bucket.acquire(timeout=0.05)
    await queued
    assert 1.05 < loop.time() - start < 1.3
    await bucket.acquire()  # the second token: the timed-out callers took nothing
    assert loop.time() - start < 1.3


async def test_a_cancelled_waiter_gives_its_grant_back(
    redis_server: RedisServer, buckets: list[RedisTokenBucket]
) -> None:
    """A caller cancelled while sleeping towards its reserved grant gives it back to the next."""
    bucket = RedisTokenBucket(redis_server.url, "t:cancel", 1, 0.3)  # a token back in 0.33 s
    buckets.append(bucket)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await bucket.acquire()
    doomed = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0.3)  # it has reserved the grant at 0.33 s and sleeps towards it
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await bucket.acquire()
    assert loop.time() - start < 0.5  # the grant at 0.33 s, not the one after it


async def test_a_429_pauses_every_bucket_on_the_key_and_teaches_the_share(
    redis_server: RedisServer, rclient: aioredis.Redis, buckets: list[RedisTokenBucket]
) -> None:
    """A 429 (``pause``) reported by one bucket holds back another with its own connection for
    the reset, and both keep to the share the server held (the refused grant left out)."""
    first = RedisTokenBucket(redis_server.url, "t:pause", 100, 1.0)
    second = RedisTokenBucket(redis_server.url, "t:pause", 100, 1.0)
    buckets.extend([first, second])
    loop = asyncio.get_running_loop()
    for _ in range(10):
        await second.acquire()
    start = loop.time()
    await first.pause(0.4)
    assert await rclient.hget("t:pause:learnt", "l1") == b"9"
    await second.acquire()  # waits for the pause, then for the tokens of the share (or a probe)
    assert 0.39 < loop.time() - start < 1.3


async def test_a_limit_learnt_is_probed_one_grant_at_a_time(
    redis_server: RedisServer, rclient: aioredis.Redis, buckets: list[RedisTokenBucket]
) -> None:
    """Once the window after a 429 is over, the shared limit is probed: one grant above it at
    a time, each confirmed one (``confirm()``, or ``confirm_after`` of silence) raising it."""
    bucket = RedisTokenBucket(redis_server.url, "t:probe", 10, 0.3, confirm_after=0.1)
    buckets.append(bucket)
    for _ in range(4):
        await bucket.acquire()
        bucket.confirm()
    await bucket.pause(0.0)  # the server held 3 of ours: the rest is someone else's
    assert await rclient.hget("t:probe:learnt", "l1") == b"3"
    loop = asyncio.get_running_loop()
    start = loop.time()
    times = []
    for _ in range(7):  # the slot the reset announced, the share once its tokens are back,
        await bucket.acquire()  # then probes
        bucket.confirm()
        times.append(loop.time() - start)
    # Each probe confirmed raised the limit (the latest one is told with the next call).
    assert int(await rclient.hget("t:probe:learnt", "l1") or 0) >= 5
    assert times[-1] < 1.2


async def test_keys_expire_when_the_window_is_over(
    redis_server: RedisServer, rclient: aioredis.Redis, buckets: list[RedisTokenBucket]
) -> None:
    """The record of grants expires one span after the newest grant; what a 429 taught lives
    9 windows (the longest backoff and one)."""
    bucket = RedisTokenBucket(redis_server.url, "t:ttl", 10, 0.2)  # span 0.22 s
    buckets.append(bucket)
    await bucket.acquire()
    assert 0 < await rclient.pttl("t:ttl") <= 222
    assert not await rclient.exists("t:ttl:learnt")
    await asyncio.sleep(0.3)
    assert not await rclient.exists("t:ttl")
    await bucket.acquire()
    await bucket.pause(0.1)
    assert 1500 < await rclient.pttl("t:ttl:learnt") <= 9 * 221


async def test_scripts_are_loaded_again_after_script_flush(
    redis_server: RedisServer, rclient: aioredis.Redis, buckets: list[RedisTokenBucket]
) -> None:
    """After SCRIPT FLUSH (NOSCRIPT) the bucket sends its script again and goes on granting."""
    from aily_async.redis._scripts import SCRIPTS

    shas = [SCRIPTS[name].sha for name in ("acquire", "refused", "release")]
    bucket = RedisTokenBucket(redis_server.url, "t:flush", 1000, 1.0)
    buckets.append(bucket)
    await bucket.acquire()
    await rclient.script_flush()
    assert await rclient.script_exists(*shas) == [False, False, False]
    await bucket.acquire()
    await bucket.pause(0.001)
    assert (await rclient.script_exists(*shas))[:2] == [True, True]
    assert await command_calls(rclient, "eval") == 3  # first use, after the flush, first pause
    other = RedisTokenBucket(redis_server.url, "t:flush:other", 1000, 1.0)  # nothing learnt
    buckets.append(other)
    evalsha = await command_calls(rclient, "evalsha")
    await other.acquire()
    assert await command_calls(rclient, "evalsha") == evalsha + 1  # cached again
    assert await command_calls(rclient, "eval") == 3


async def test_next_grant_in_estimates_the_wait_from_the_latest_answer(
    redis_server: RedisServer, buckets: list[RedisTokenBucket]
) -> None:
    """next_grant_in() is 0 before any grant, then the wait Redis last announced: until the
    tokens are back, or the end of a pause."""
    bucket = RedisTokenBucket(redis_server.url, "t:next", 2, 1.0)  # tokens back in 1.1 s
    buckets.append(bucket)
    assert bucket.next_grant_in() == 0.0
    await bucket.acquire()
    assert bucket.next_grant_in() == 0.0
    await bucket.acquire()
    assert 1.0 < bucket.next_grant_in() <= 1.11
    await asyncio.sleep(0.2)
    assert 0.8 < bucket.next_grant_in() <= 0.91
    await bucket.pause(1.5)
    assert 1.45 < bucket.next_grant_in() <= 1.51


# -- API --------------------------------------------------------------------------------------


async def test_redis_limits_gives_each_call_its_own_key_and_quota(
    redis_server: RedisServer, rclient: aioredis.Redis
) -> None:
    """RedisLimits keys buckets by prefix, app and call, and sizes them to the documented
    quotas: 100 per minute for skills.start, 1000 per minute and 50 per second for runs.get."""
    async with RedisLimits(redis_server.url, app_id="cli_x", key_prefix="q") as limits:
        start = limits.for_call("skills.start")
        assert start is limits.for_call("skills.start")
        assert (start.key, start.rate, start.per) == ("q:cli_x:skills.start", 100, 60.0)
        other = limits.for_call("runs.get")
        assert (other.key, other.rate, other.per) == ("q:cli_x:runs.get", 1000, 60.0)
        loop = asyncio.get_running_loop()
        began = loop.time()
        for _ in range(55):
            await other.acquire()
        assert 1.0 < loop.time() - began < 1.5  # the 51st waited for the 50-per-second window
        await start.acquire()
        assert await rclient.zcard("q:cli_x:runs.get") == 55


async def test_buckets_and_limits_meet_the_limiter_protocols(redis_server: RedisServer) -> None:
    """A RedisTokenBucket is a RateLimiter, a LimiterState and takes feedback; RedisLimits is a
    LimiterSet."""
    async with RedisLimits(redis_server.url, app_id="cli_x") as limits:
        limiter_set: LimiterSet = limits
        bucket = limits.for_call("runs.get")
        limiter: RateLimiter = bucket
        state: LimiterState = bucket
        assert isinstance(limiter_set, LimiterSet)
        assert isinstance(limiter, RateLimiter)
        assert isinstance(state, LimiterState)
        assert isinstance(bucket, QuotaFeedback)
        assert state.waiting == 0
        assert state.interval == pytest.approx(61.0 / 1000, rel=1e-6)
        assert bucket.burst == 1000


async def test_closing_a_bucket_of_redis_limits_leaves_the_shared_connection_open(
    redis_server: RedisServer, rclient: aioredis.Redis
) -> None:
    """The buckets of a RedisLimits share its one connection, which only the limits close."""
    async with RedisLimits(redis_server.url, app_id="cli_x") as limits:
        first, second = limits.for_call("runs.get"), limits.for_call("skills.start")
        await first.acquire()
        await second.acquire()
        assert len(await rclient.client_list()) == 2  # rclient and the limits' connection
        await first.aclose()
        await asyncio.sleep(0.05)
        assert len(await rclient.client_list()) == 2
        await second.acquire()  # on the same connection
        assert len(await rclient.client_list()) == 2
    await asyncio.sleep(0.05)
    assert len(await rclient.client_list()) == 1


def test_bad_arguments_are_refused() -> None:
    """Unknown failure modes, fractions outside (0, 1], empty keys and app ids, bad windows
    raise ValueError, and a synchronous Redis client TypeError."""
    url = "redis://127.0.0.1:1/0"
    with pytest.raises(ValueError, match="on_failure"):
        RedisTokenBucket(url, "k", 10, on_failure="open")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="local_fraction"):
        RedisTokenBucket(url, "k", 10, on_failure="local", local_fraction=0)
    with pytest.raises(ValueError, match="key"):
        RedisTokenBucket(url, "", 10)
    with pytest.raises(ValueError, match="rate"):
        RedisTokenBucket(url, "k", 0)
    with pytest.raises(ValueError, match="per"):
        RedisTokenBucket(url, "k", 10, also=[(5, 0.0)])
    with pytest.raises(ValueError, match="app_id"):
        RedisLimits(url, app_id="")
    with pytest.raises(TypeError, match=r"redis\.asyncio"):
        RedisTokenBucket(redis.Redis(), "k", 10)  # type: ignore[arg-type]


def test_missing_redis_package_names_the_extra() -> None:
    """Importing aily_async.redis without the redis package says to install aily-async[redis]."""
    code = "import sys; sys.modules['redis'] = None; import aily_async.redis"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode != 0
    assert "pip install 'aily-async[redis]'" in result.stderr
