"""One quota shared by several processes through Redis, against a strict FakeAily window.

Worker processes (``_redis_worker.py``) are started together; real time, small scaled quotas.
"""

from __future__ import annotations

import asyncio

from _redis_support import APP, RedisServer, accepted, max_in_window, run_workers

from aily_async import AilyClient
from aily_async.redis import RedisLimits
from aily_async.testing import FakeAily

AILY_APP = "spring_449d72db2f__c"


def rounds(times: list[float], gap: float) -> list[int]:
    """Sizes of the groups of ``times`` separated by more than ``gap`` seconds."""
    sizes: list[int] = []
    last = None
    for t in sorted(times):
        if last is None or t - last > gap:
            sizes.append(0)
        sizes[-1] += 1
        last = t
    return sizes


async def test_four_processes_get_the_burst_and_pace_of_one(redis_server: RedisServer) -> None:
    """Four worker processes, each asking for the whole quota, make no 429 on a strict
    40-per-2-s window: together they send the 40 of a window at once, then 40 more each time
    the tokens are back, as one process would."""
    async with FakeAily(rate_limits={"skills.start": [(40, 2.0)]}) as fake:
        results = await run_workers(
            fake,
            redis_server.url,
            [
                ["--name", f"w{i}", "--rate", "40", "--per", "2", "--requests", "40"]
                for i in range(4)
            ],
        )
    times = accepted(fake)
    assert [r["errors"] for r in results] == [[]] * 4
    assert sum(r["ok"] for r in results) == len(times) == 160
    assert fake.rate_limited["skills.start"] == 0
    assert max_in_window(times, 2.0) <= 40
    assert rounds(times, 1.0) == [40, 40, 40, 40]
    assert max(times) - min(times) < 3 * 2.1 + 0.6  # the physical limit: three windows


async def test_clock_skew_between_processes_does_not_matter(redis_server: RedisServer) -> None:
    """Two processes whose clocks are two hours apart share the quota by Redis's clock: no 429,
    the windows kept, and both are served throughout."""
    async with FakeAily(rate_limits={"skills.start": [(40, 2.0)]}) as fake:
        results = await run_workers(
            fake,
            redis_server.url,
            [
                [
                    "--name",
                    name,
                    "--skew",
                    skew,
                    "--mode",
                    "bucket",
                    "--rate",
                    "40",
                    "--per",
                    "2",
                    "--requests",
                    "60",
                    "--concurrency",
                    "4",
                ]
                for name, skew in (("ahead", "3600"), ("behind", "-3600"))
            ],
            timeout=20.0,
        )
    assert [r["ok"] for r in results] == [60, 60]
    started = [r for r in fake.requests if r.route == "skills.start"]
    assert fake.rate_limited["skills.start"] == 0
    times = [r.time for r in started]
    assert max_in_window(times, 2.0) <= 40
    assert rounds(times, 1.0) == [40, 40, 40]
    for name in ("ahead", "behind"):  # each process had grants in the first and last window
        own = [r.time for r in started if r.biz_user_id == name]
        assert min(own) < min(times) + 0.5
        assert max(own) > max(times) - 0.5


async def test_a_restarted_process_knows_what_was_spent(redis_server: RedisServer) -> None:
    """A process that starts right after another spent the whole quota (a restart) waits for
    the tokens to come back instead of sending into the full window: no 429."""
    quotas = {"skills.start": (20, 2.0)}
    async with FakeAily(rate_limits={"skills.start": [(20, 2.0)]}) as fake:
        for _ in range(2):  # the first run of the process, then the restarted one
            async with (
                RedisLimits(redis_server.url, app_id=APP, quotas=quotas) as limits,
                AilyClient(APP, "secret", base_url=fake.url, limiter=limits) as client,
            ):
                await asyncio.gather(
                    *(client.skills.start(AILY_APP, "skill_echo", input="{}") for _ in range(20))
                )
    times = accepted(fake)
    assert fake.rate_limited["skills.start"] == 0
    assert len(times) == 40
    assert rounds(times, 1.0) == [20, 20]
    assert max_in_window(times, 2.0) <= 20


async def test_two_processes_learn_a_foreign_consumer_together(
    redis_server: RedisServer,
) -> None:
    """Two buckets on one key (two processes) with calls always queued, against a strict
    20-per-second window of which a foreign consumer takes 40%: after the first windows, the
    429s of both together drop to at most one per five windows, and they share the 60% left."""
    from aily_async.redis import RedisTokenBucket

    loop = asyncio.get_running_loop()
    window: list[float] = []  # accepted calls, ours and the foreign ones
    refused: list[float] = []
    ours: list[float] = []
    start = loop.time()

    def offer(now: float, foreign: bool = False) -> float | None:
        while window and window[0] <= now - 1.0:
            window.pop(0)
        if len(window) >= 20 and not foreign:
            refused.append(now - start)
            return window[len(window) - 20] + 1.0 - now
        window.append(now)
        if not foreign:
            ours.append(now - start)
        return None

    async def foreign_load() -> None:
        while True:
            offer(loop.time(), foreign=True)
            await asyncio.sleep(0.125)

    buckets = [RedisTokenBucket(redis_server.url, "t:foreign", 20, 1.0) for _ in range(2)]

    async def worker(bucket: RedisTokenBucket, stop: float) -> None:
        first = False
        while loop.time() < stop:
            await bucket.acquire(first=first)
            await asyncio.sleep(0.005)
            reset = offer(loop.time())
            await asyncio.sleep(0.005)
            if reset is None:
                bucket.confirm()
                first = False
            else:
                await bucket.pause(reset)
                first = True

    load = asyncio.create_task(foreign_load())
    await asyncio.sleep(1.0)  # the foreign consumer was there first
    stop = loop.time() + 16.0
    try:
        await asyncio.gather(*(worker(b, stop) for b in buckets for _ in range(6)))
    finally:
        load.cancel()
        for bucket in buckets:
            await bucket.aclose()
    late = [t for t in refused if t >= 6.0]
    settled = [t for t in ours if 6.0 <= t < 16.0]
    print(f"\n429s at {[round(t, 2) for t in refused]}; ours from 6 s to 16 s: {len(settled)}")
    assert len(late) <= 3, refused
    assert 0.8 * 12 * 10 <= len(settled) <= 12 * 10 + 12, len(settled)
