"""RedisTokenBucket when Redis fails: closed and local modes, a silent Redis, a restart.

Real redis-server processes, killed and started again; real time, small scaled quotas.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
import redis.asyncio as aioredis
from _redis_support import AILY_APP, APP, RedisServer, accepted, max_in_window

from aily_async import AilyClient, AilyRateLimiterError
from aily_async.redis import RedisLimits, RedisTokenBucket
from aily_async.testing import FakeAily


async def test_closed_mode_raises_promptly_when_redis_dies_and_recovers(
    redis_server: RedisServer, buckets: list[RedisTokenBucket]
) -> None:
    """With on_failure="closed" a dead Redis makes acquire raise AilyRateLimiterError naming
    Redis at once, and a restarted one serves again."""
    bucket = RedisTokenBucket(redis_server.url, "t:closed", 100, 1.0, name="skills.start")
    buckets.append(bucket)
    loop = asyncio.get_running_loop()
    await bucket.acquire()
    redis_server.kill()
    start = loop.time()
    with pytest.raises(AilyRateLimiterError, match=r"^skills.start: Redis at 127.0.0.1:\d+/0"):
        await bucket.acquire()
    assert loop.time() - start < 0.5
    assert not bucket.using_redis
    redis_server.start()
    await bucket.acquire()
    assert bucket.using_redis


async def test_an_unanswering_redis_never_hangs_a_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Redis that accepts connections but never answers fails acquire after redis_timeout
    ("closed") or sends it to the local bucket with one warning ("local")."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections complete in the backlog; nothing ever answers
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        closed = RedisTokenBucket(url, "t:silent", 100, 1.0, redis_timeout=0.3)
        local = RedisTokenBucket(url, "t:silent", 100, 1.0, redis_timeout=0.3, on_failure="local")
        loop = asyncio.get_running_loop()
        try:
            start = loop.time()
            with pytest.raises(AilyRateLimiterError, match="Redis"):
                await closed.acquire()
            assert loop.time() - start < 0.6
            start = loop.time()
            with caplog.at_level(logging.WARNING, logger="aily_async"):
                for _ in range(3):
                    await local.acquire()
            assert loop.time() - start < 0.6  # one probe timed out, then the local bucket
            assert len([r for r in caplog.records if "falls back" in r.getMessage()]) == 1
        finally:
            await closed.aclose()
            await local.aclose()


async def test_local_mode_survives_a_redis_restart_mid_run(
    redis_server: RedisServer, rclient: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """With on_failure="local" a client run goes on through a Redis restart, with one warning,
    no 429, half the quota meanwhile (counting the grants just made through Redis), and
    returns to Redis, where the grants made meanwhile are recorded."""
    loop = asyncio.get_running_loop()
    quotas = {"skills.start": (20, 1.0)}
    caplog.set_level(logging.WARNING, logger="aily_async")
    async with (
        FakeAily(rate_limits={"skills.start": [(20, 1.0)]}) as fake,
        RedisLimits(
            redis_server.url, app_id=APP, quotas=quotas, on_failure="local", probe_interval=0.2
        ) as limits,
        AilyClient(APP, "secret", base_url=fake.url, limiter=limits) as client,
    ):
        start = loop.time()
        stop = start + 6.0

        async def caller() -> None:
            while loop.time() < stop:
                await client.skills.start(AILY_APP, "skill_echo", input="{}")

        callers = [asyncio.create_task(caller()) for _ in range(6)]
        await asyncio.sleep(1.0)
        redis_server.kill()
        killed = loop.time()
        await asyncio.sleep(2.5)
        redis_server.start()
        restarted = loop.time()
        await asyncio.gather(*callers)
        assert limits.for_call("skills.start").using_redis
    times = accepted(fake)
    refused = [r.time for r in fake.requests if r.status == 429]
    assert fake.rate_limited["skills.start"] == 0, (killed, restarted, refused, times)
    assert max_in_window(times, 1.0) <= 20
    during = [t for t in times if killed + 0.1 < t < restarted]
    # The local rule: half the quota, counting this process's grants of the last window.
    assert 10 <= len(during) <= 30
    assert max_in_window(during, 0.9) <= 10  # (0.9 s: the fake sees the requests jittered)
    assert any(t > restarted + 0.3 for t in times)
    assert await rclient.exists(f"aily:{APP}:skills.start")  # back on the new server
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "falls back to local buckets" in m]) == 1
    assert len([m for m in messages if "answers again after" in m]) == 1


async def test_a_redis_that_lost_its_data_is_seeded_again(
    redis_server: RedisServer, rclient: aioredis.Redis, buckets: list[RedisTokenBucket]
) -> None:
    """When Redis comes back without its data (here: FLUSHALL), each process puts its grants
    of the window back before the next grant: a bucket that used its quota still waits for its
    tokens."""
    bucket = RedisTokenBucket(redis_server.url, "t:reseed", 5, 1.0)
    buckets.append(bucket)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(5):
        await bucket.acquire()
    await rclient.flushall()
    await bucket.acquire()  # the record is empty: ours go back in, and this one waits
    assert loop.time() - start >= 1.0  # no sixth grant inside the first window
    assert await rclient.zcard("t:reseed") == 6
