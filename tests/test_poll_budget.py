"""The shared polling budget: few runs are polled often (sub-second detection), many share
the ``runs.get`` quota fairly, never beyond it."""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from typing import Any

from _vloop import virtual_time

from aily_async import AilyClient, Limits, PollPolicy, RetryPolicy
from aily_async.testing import FakeAily, RunPlan, RunRequest

APP_ID = "spring_449d72db2f__c"


def by_message(request: RunRequest) -> RunPlan:
    """Each run lasts the number of seconds its question says."""
    return RunPlan(queued=0.0, duration=float(request.last_user_message or "1"))


async def detect(client: AilyClient, durations: list[float]) -> list[float]:
    """Start one run per duration at once; return how long after its end each was noticed."""
    loop = asyncio.get_running_loop()

    async def one(seconds: float) -> float:
        session = await client.sessions.create()
        await client.messages.create(session.id, str(seconds))
        began = loop.time()
        handle = await client.runs.create(session.id, app_id=APP_ID)
        await handle
        return loop.time() - began - seconds

    return list(await asyncio.gather(*(one(d) for d in durations)))


@virtual_time
async def test_ten_runs_are_each_noticed_within_a_second() -> None:
    """With the default client (shared budget, documented quotas), 10 runs of 2–8 s are each
    noticed within 1 s of their end (the frugal schedule of 0.1.0 took up to 8 s)."""
    async with (
        FakeAily(run_script=by_message, rate_limits=True) as fake,
        AilyClient("cli_test", "test-secret", base_url=fake.url) as client,
    ):
        delays = await detect(client, [2.0 + 6.0 * i / 9 for i in range(10)])
        assert max(delays) <= 1.0, delays
        assert fake.rate_limited["runs.get"] == 0


@virtual_time
async def test_three_hundred_runs_share_a_strict_quota_fairly() -> None:
    """300 runs polled under a strict runs.get window (100 per 10 s, the budget set to 80% of
    it): every run is noticed, no 429, and no run waits more than 3x the median delay."""
    quota = {"runs.get": (100, 10.0)}
    client_options: dict[str, Any] = {
        "limiter": Limits(quotas=quota),
        "poll": PollPolicy.shared(share=0.8 * 100 / 10.0),
        "retry": RetryPolicy(),
    }
    async with (
        FakeAily(run_script=by_message, rate_limits={"runs.get": [(100, 10.0)]}) as fake,
        AilyClient("cli_test", "test-secret", base_url=fake.url, **client_options) as client,
    ):
        delays = await detect(client, [5.0 + (i % 20) for i in range(300)])
        assert len(delays) == 300
        assert fake.rate_limited["runs.get"] == 0
        median = statistics.median(delays)
        assert max(delays) <= 3 * median, (max(delays), median)


def test_the_shared_gap_divides_the_budget() -> None:
    """Each of n pollers polls every max(interval, n / share) seconds."""
    policy = PollPolicy.shared(share=10.0, interval=0.5)
    assert policy.shared_gap(1) == 0.5
    assert policy.shared_gap(5) == 0.5
    assert policy.shared_gap(50) == 5.0
    assert PollPolicy.frugal().share is None


@virtual_time
async def test_the_frugal_schedule_notices_runs_within_half_their_age() -> None:
    """``PollPolicy.frugal()`` on log-normal durations (median 10 s, sigma 0.8): once it has
    learnt the durations, every run lasting at least their 5% quantile is noticed within half
    its age at that moment, and it spends under 3 GETs per run."""
    rng = random.Random(7)
    random.seed(7)  # the polls' jitter
    loop = asyncio.get_running_loop()

    async def measure(client: AilyClient, durations: list[float]) -> list[tuple[float, float, int]]:
        """Per run: its duration, its age when noticed, and the GETs it took."""

        async def one(seconds: float) -> tuple[float, float, int]:
            session = await client.sessions.create()
            await client.messages.create(session.id, f"{seconds:.3f}")
            began = loop.time()
            handle = await client.runs.create(session.id, app_id=APP_ID)
            await handle
            return float(f"{seconds:.3f}"), loop.time() - began, handle.polls

        return list(await asyncio.gather(*(one(d) for d in durations)))

    def lognormal(n: int) -> list[float]:
        return [rng.lognormvariate(math.log(10.0), 0.8) for _ in range(n)]

    async with (
        FakeAily(run_script=by_message) as fake,
        AilyClient(
            "cli_test", "test-secret", base_url=fake.url, limiter=None, poll=PollPolicy.frugal()
        ) as client,
    ):
        await measure(client, lognormal(100))  # learning
        p5 = client.durations.quantile(0.05)
        runs = await measure(client, lognormal(200))
    late = [(d, age) for d, age, _ in runs if d >= p5 and age - d > 0.5 * age + 0.01]
    assert not late, late
    ratios = sorted((age - d) / age for d, age, _ in runs)
    assert ratios[int(0.95 * len(ratios))] <= 0.5
    gets = statistics.mean(polls for _, _, polls in runs)
    assert gets <= 3.0, gets
    # Not a fixed interval in disguise: long runs are polled further apart.
    assert max(polls for _, _, polls in runs) >= 4
