"""The one retry loop: failed attempts bounded by ``max_attempts`` (adoption included), 429s as
waits for the quota bounded by the wait cap and the deadline, never two runs."""

from __future__ import annotations

import asyncio
import itertools
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from _fake_client import fake_and_client
from _vloop import virtual_time

from aily_async import AilyClient, AilyRateLimitError, AilyServerError, RetryPolicy
from aily_async._retry import call_with_retries
from aily_async.testing import FakeAily, RunPlan

APP_ID = "spring_449d72db2f__c"


def aily(
    policy: RetryPolicy, **fake: Any
) -> AbstractAsyncContextManager[tuple[FakeAily, AilyClient]]:
    """A FakeAily and a client for it with ``policy`` and no limiter."""
    return fake_and_client({"limiter": None, "retry": policy}, **fake)


def posts(fake: FakeAily) -> int:
    return fake.route_counts()["runs.create"]


@pytest.mark.parametrize("attempts", [1, 2, 4])
async def test_create_run_in_a_storm_of_5xx_sends_at_most_max_attempts_posts(attempts: int) -> None:
    """A runs.create answered 5xx (before the server acted) every time sends exactly
    ``max_attempts`` POSTs, with the recovery look-ups in between, and creates no run."""
    async with aily(RetryPolicy.no_wait(max_attempts=attempts)) as (fake, client):
        session = await client.sessions.create()
        fake.inject("runs.create", status=503, times=50)
        with pytest.raises(AilyServerError):
            await client.runs.create(session.id, app_id=APP_ID)
        assert posts(fake) == attempts
        assert fake.run_count(session.id) == 0


async def test_create_run_in_a_storm_of_drops_after_the_write_makes_one_run() -> None:
    """A runs.create whose answer is lost after the run was made, again and again, sends one
    POST: the run that landed is found and adopted, never created twice."""
    async with aily(RetryPolicy.no_wait(), run_script=RunPlan(duration=0.2)) as (fake, client):
        session = await client.sessions.create()
        await client.messages.create(session.id, "hello")
        fake.inject("runs.create", drop="after", times=50)
        handle = await client.runs.create(session.id, app_id=APP_ID)
        assert posts(fake) == 1
        assert fake.run_count(session.id) == 1
        run = await handle.wait(timeout=30)
        assert run.status.value == "COMPLETED"


async def test_create_run_with_429s_then_5xx_counts_only_the_failures() -> None:
    """429s do not spend attempts: three 429s then a storm of 5xx give 3 + max_attempts POSTs
    (the nested loops of 0.1.0 sent up to 16)."""
    async with aily(RetryPolicy.no_wait(max_attempts=3)) as (fake, client):
        session = await client.sessions.create()
        fake.inject("runs.create", status=429, headers={"x-ogw-ratelimit-reset": "0"}, times=3)
        fake.inject("runs.create", status=500, times=50)
        with pytest.raises(AilyServerError):
            await client.runs.create(session.id, app_id=APP_ID)
        assert posts(fake) == 3 + 3
        assert fake.run_count(session.id) == 0


@virtual_time
async def test_a_storm_of_429s_waits_each_announced_reset_then_stops_at_the_cap() -> None:
    """Each 429 is followed by a wait of the announced reset (never shorter), and the call ends
    with AilyRateLimitError once the waits reach ``max_quota_wait``."""
    policy = RetryPolicy(max_attempts=2, base_delay=0.0, max_quota_wait=20.0)
    async with aily(policy) as (fake, client):
        session = await client.sessions.create()
        fake.inject("runs.create", status=429, headers={"x-ogw-ratelimit-reset": "3"}, times=50)
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(AilyRateLimitError):
            await client.runs.create(session.id, app_id=APP_ID)
        took = loop.time() - began
    times = [r.time for r in fake.requests if r.route == "runs.create"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 6 waits of 3 s fit in 20 s; the 7th 429 ends the call.
    assert len(times) == 7
    assert all(gap >= 3.0 for gap in gaps), gaps
    assert 18.0 <= took < 19.0
    assert fake.run_count(session.id) == 0


@virtual_time
async def test_a_storm_of_429s_stops_at_the_deadline() -> None:
    """With a deadline, a 429 whose reset would end after it ends the call at once."""
    calls: list[float] = []
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def attempt() -> None:
        calls.append(loop.time() - began)
        raise AilyRateLimitError(
            "rate limited", code=99991400, http_status=429, call="x", retry_after=4.0
        )

    async def quota_wait(exc: AilyRateLimitError, wait: float) -> None:
        await asyncio.sleep(wait)

    async def on_retry(*args: Any) -> None:
        raise AssertionError("a 429 is not a retry of a failed attempt")

    with pytest.raises(AilyRateLimitError):
        await call_with_retries(
            attempt,
            call="x",
            safety="unsafe",
            policy=RetryPolicy(),
            quota_wait=quota_wait,
            on_retry=on_retry,
            deadline=began + 10.0,
        )
    # Waits end at 4 and 8 s; a third would end at 12 s, after the deadline.
    assert calls == [0.0, 4.0, 8.0]
