"""Quotas end to end: the client's limiter against FakeAily's strict sliding windows.

All on virtual time (``_vloop``): the fake's windows, the buckets and the poll timers share
the loop's clock, so minutes of quota take a fraction of a second.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import statistics
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from _vloop import virtual_time

from aily_async import (
    AilyClient,
    AilyRateLimitError,
    Limits,
    RetryPolicy,
    RunHandle,
    RunStatus,
    TokenBucket,
)
from aily_async.testing import FakeAily, RunPlan, RunRequest

APP_ID = "spring_449d72db2f__c"
SKILL = "skill_echo"


@asynccontextmanager
async def aily(
    *, client: dict[str, Any] | None = None, **fake_options: Any
) -> AsyncIterator[tuple[FakeAily, AilyClient]]:
    """A FakeAily and a client for it (the client's default limiter and retries)."""
    async with (
        FakeAily(**fake_options) as fake,
        AilyClient("cli_test", "test-secret", base_url=fake.url, **(client or {})) as aily_client,
    ):
        yield fake, aily_client


def max_in_window(times: Sequence[float], length: float) -> int:
    """The most requests in any half-open window of ``length`` seconds."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + length) - i for i, t in enumerate(times)), default=0)


def arrivals(fake: FakeAily, route: str) -> list[float]:
    """When the fake received each accepted request of ``route``."""
    return [r.time for r in fake.requests if r.route == route and r.status == 200]


async def start_skills(client: AilyClient, n: int) -> list[Any]:
    return await asyncio.gather(
        *(client.skills.start(APP_ID, SKILL, input={"i": i}) for i in range(n)),
        return_exceptions=True,
    )


# -- a strict window, three times over --------------------------------------------------------

N, W = 20, 2.0


@pytest.mark.parametrize(
    "limiter",
    [
        pytest.param(lambda: TokenBucket(N, W), id="one-bucket"),
        pytest.param(lambda: Limits({"skills.start": (N, W)}), id="per-call-limits"),
    ],
)
@virtual_time
async def test_three_windows_of_skill_starts_get_no_429(limiter: Any) -> None:
    """3N concurrent skill starts through a client limited to N per W seconds all succeed
    against a server enforcing N per W strictly, without a single 429."""
    async with aily(rate_limits={"skills.start": [(N, W)]}, client={"limiter": limiter()}) as (
        fake,
        client,
    ):
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await start_skills(client, 3 * N)
        elapsed = loop.time() - started
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert fake.rate_limited["skills.start"] == 0
        assert client.stats.rate_limited == 0
        times = arrivals(fake, "skills.start")
        assert len(times) == 3 * N
        assert max_in_window(times, W) <= N
        assert elapsed < 3 * W * 1.1  # and it did not crawl


@virtual_time
async def test_without_a_limiter_the_same_burst_gets_429s() -> None:
    """With ``limiter=None`` the same 3N starts are answered 429 beyond the first N: the
    window above is really enforced, so that test can fail."""
    async with aily(
        rate_limits={"skills.start": [(N, W)]},
        client={"limiter": None, "retry": RetryPolicy(max_attempts=1, max_quota_wait=0)},
    ) as (fake, client):
        results = await start_skills(client, 3 * N)
        refused = [r for r in results if isinstance(r, AilyRateLimitError)]
        assert len(refused) == 2 * N
        assert fake.rate_limited["skills.start"] == 2 * N
        assert client.stats.rate_limited == 2 * N


# -- the documented quotas, with another worker of the same app --------------------------------


@virtual_time
async def test_foreign_consumer_causes_a_couple_of_429s_not_a_storm() -> None:
    """When another worker of the app has used up most of the quota, the default per-call
    limits meet it with one or two 429s: the first pauses the bucket for everyone until the
    reset, then all calls succeed."""
    async with aily(rate_limits=True) as (fake, client):
        fake.external_load("skills.start", 95)
        results = await start_skills(client, 40)
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert 1 <= fake.rate_limited["skills.start"] <= 2
        assert client.stats.rate_limited == fake.rate_limited["skills.start"]


@virtual_time
async def test_foreign_consumer_without_the_pause_is_a_storm() -> None:
    """The same foreign load met without a limiter gets dozens of 429s: the pause is what
    keeps the previous test calm."""
    async with aily(rate_limits=True, client={"limiter": None}) as (fake, client):
        fake.external_load("skills.start", 95)
        await start_skills(client, 40)
        assert fake.rate_limited["skills.start"] >= 30


# -- 200 concurrent runs ------------------------------------------------------------------------

SCALED = 0.01  # every quota window x0.01: 100 runs.create per 0.6 s, 50 GETs per 10 ms


def _limits(scale: float) -> Limits:
    per = 60.0 * scale
    return Limits({"runs.create": (100, per), "skills.start": (100, per)}, default=(1000, per))


@pytest.mark.parametrize("scale", [1.0, SCALED], ids=["documented-quotas", "windows-x0.01"])
@virtual_time
async def test_200_concurrent_runs_all_complete_within_quota(scale: float) -> None:
    """200 concurrent runs of random 0.2–2 s, polled from ``poll_interval=0.1`` through the
    per-call limits, all complete with zero 429s; prints GETs per run and detection delay."""
    rng = random.Random(20240607)
    ends: dict[str, float] = {}  # session id -> planned end of its run, on the fake's clock
    fake_clock: list[asyncio.AbstractEventLoop] = []

    def plan(request: RunRequest) -> RunPlan:
        duration = rng.uniform(0.2, 2.0)
        ends[request.session_id] = fake_clock[0].time() + 0.05 + duration
        return RunPlan(queued=0.05, duration=duration)

    async with aily(
        run_script=plan,
        rate_limits=True,
        time_scale=scale,
        client={"limiter": _limits(scale), "poll_interval": 0.1},
    ) as (fake, client):
        loop = asyncio.get_running_loop()
        fake_clock.append(loop)
        started = loop.time()

        async def one() -> tuple[RunHandle, float]:
            session = await client.sessions.create()
            handle = await client.runs.create(session.id, app_id=APP_ID)
            await handle
            return handle, loop.time()

        done = await asyncio.gather(*(one() for _ in range(200)))
        elapsed = loop.time() - started

        assert all(h.run.status is RunStatus.COMPLETED for h, _ in done)
        assert sum(fake.rate_limited.values()) == 0
        assert client.stats.rate_limited == 0
        get_counts = fake.route_counts()
        assert get_counts["runs.get"] == sum(h.polls for h, _ in done)
        polls = [h.polls for h, _ in done]
        delays = sorted(returned - ends[h.session_id] for h, returned in done)
        assert min(delays) >= 0  # nobody saw a run end before it did
        mean_polls = statistics.fmean(polls)
        p95 = delays[int(0.95 * len(delays))]
        print(
            f"\n200 runs ({'documented quotas' if scale == 1.0 else 'quota windows x0.01'}): "
            f"{elapsed:.1f}s virtual, GETs/run mean {mean_polls:.2f} max {max(polls)}, "
            f"detection delay mean {statistics.fmean(delays):.3f}s "
            f"p50 {statistics.median(delays):.3f}s p95 {p95:.3f}s max {max(delays):.3f}s"
        )
        assert mean_polls <= 6
        assert p95 <= 1.5
