"""Per-call deadlines: ``timeout=`` bounds everything a call does (limiter queue, token,
attempts, waits); a call the limiter cannot serve in time fails at once, sending nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from _fake_client import fake_and_client
from _vloop import run_virtual, virtual_time

from aily_async import (
    AilyClient,
    AilyServerError,
    AilyValidationError,
    DeadlineExceeded,
    RetryPolicy,
    RunWaitTimeout,
    TokenBucket,
)
from aily_async.testing import ROUTES, FakeAily, RunPlan

APP_ID = "spring_449d72db2f__c"


def aily(
    *, client: dict[str, Any] | None = None, **fake: Any
) -> AbstractAsyncContextManager[tuple[FakeAily, AilyClient]]:
    """A FakeAily and a client for it (no limiter, the default retries)."""
    return fake_and_client({"limiter": None, "retry": RetryPolicy()}, client, **fake)


@virtual_time
async def test_a_slow_answer_ends_the_call_at_its_deadline() -> None:
    """An answer delayed past the call's timeout ends the call with DeadlineExceeded (a
    TimeoutError) at the deadline, not at the transport's 30 s."""
    async with aily() as (fake, client):
        session = await client.sessions.create()
        fake.inject("sessions.get", status=None, delay=20.0)
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(DeadlineExceeded) as info:
            await client.sessions.get(session.id, timeout=2.0)
        assert isinstance(info.value, TimeoutError)
        assert 2.0 <= loop.time() - began < 2.1
        assert str(info.value).startswith("sessions.get: ")


@virtual_time
async def test_retries_stop_at_the_deadline() -> None:
    """A storm of 5xx on a read is retried with backoff only while the deadline allows: when
    the next back-off would end past it, the call ends at once with the last answer's error
    (more telling than a timeout), before the deadline."""
    policy = RetryPolicy(max_attempts=50, base_delay=0.5, max_delay=0.5)
    async with aily(client={"retry": policy}) as (fake, client):
        session = await client.sessions.create()
        fake.inject("sessions.get", status=503, times=100)
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(AilyServerError):
            await client.sessions.get(session.id, timeout=3.0)
        assert 2.5 <= loop.time() - began <= 3.0
        assert 6 <= fake.route_counts()["sessions.get"] < 50


@virtual_time
async def test_a_call_the_limiter_cannot_serve_in_time_fails_at_once() -> None:
    """With the quota spent (a bucket of one grant per minute), a call with a 1 s timeout fails
    at once with DeadlineExceeded saying why, and sends nothing (a web app answers 503 now)."""
    bucket = TokenBucket(1, 60.0)
    async with aily(client={"limiter": bucket}) as (fake, client):
        session = await client.sessions.create()  # spends the one grant
        sent = fake.route_counts()["sessions.get"]
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(DeadlineExceeded, match="rate limiter cannot grant"):
            await client.sessions.get(session.id, timeout=1.0)
        assert loop.time() - began < 0.01
        assert fake.route_counts()["sessions.get"] == sent
        assert bucket.waiting == 0


@virtual_time
async def test_a_window_bucket_is_asked_when_it_can_really_grant() -> None:
    """A window bucket of 10 per minute, spent at once, with 5 calls queued behind: the 6th
    token comes back at the minute, so a call with a 70 s timeout queues and is served then,
    while one with 55 s fails at once, sending nothing. (Counting a pace of one grant per 6 s
    behind the 5 queued, it would wrongly refuse the 70 s call too.)"""
    bucket = TokenBucket(10, 60.0, ramp=False)
    async with aily(client={"limiter": bucket}) as (fake, client):
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.gather(*(client.sessions.create() for _ in range(10)))
        queued = [asyncio.ensure_future(client.sessions.create()) for _ in range(5)]
        await asyncio.sleep(0)
        assert bucket.waiting == 5
        assert 60.0 <= bucket.queue_wait() <= 62.0
        with pytest.raises(DeadlineExceeded, match="rate limiter cannot grant"):
            await client.sessions.create(timeout=55.0)
        assert loop.time() - began < 0.01
        assert fake.route_counts()["sessions.create"] == 10
        session = await client.sessions.create(timeout=70.0)
        assert 60.0 <= loop.time() - began <= 62.0
        assert session.id
        # 15 more at t=61: 4 take the last tokens of that round, 10 the next (t=122), so one
        # queued behind them waits for the round after (t=183).
        more = [asyncio.ensure_future(client.sessions.create()) for _ in range(15)]
        await asyncio.sleep(0)
        assert bucket.waiting == 11
        assert 182.0 <= bucket.queue_wait() + (loop.time() - began) <= 184.0
        await asyncio.gather(*queued, *more)
        assert fake.route_counts()["sessions.create"] == 31


def test_queue_wait_reads_the_record_of_grants() -> None:
    """Grants at t=0 and t=5 of a 2-per-10 s bucket (no margin) and one waiter: the waiter
    takes the token back at t=10, so a caller queued at t=5 behind it is served at t=15, 10 s
    later (the record decides, not the head's wait alone)."""

    async def main() -> float:
        bucket = TokenBucket(2, 10.0, margin=0, ramp=False)
        await bucket.acquire()
        await asyncio.sleep(5.0)
        await bucket.acquire()
        asyncio.get_running_loop().create_task(bucket.acquire())
        await asyncio.sleep(0)
        return bucket.queue_wait()

    assert run_virtual(main(), start=0.0, grace=0.0) == pytest.approx(10.0, abs=1e-5)


@pytest.mark.parametrize("bad", [0, -1.0, True, float("nan"), "5"])
async def test_a_bad_timeout_is_refused_before_anything_is_sent(bad: Any) -> None:
    """timeout must be a positive number of seconds; anything else is AilyValidationError
    naming the field, and no request leaves."""
    async with aily() as (fake, client):
        with pytest.raises(AilyValidationError, match="timeout"):
            await client.sessions.create(timeout=bad)
        assert fake.route_counts()["sessions.create"] == 0


@virtual_time
async def test_runs_run_timeout_bounds_the_whole_round_trip() -> None:
    """runs.run(timeout=) bounds session, message, create and wait together: a run longer
    than what is left ends the wait with RunWaitTimeout at the deadline, and a slow first
    step leaves the rest less time."""
    async with aily(run_script=RunPlan(queued=0.0, duration=30.0)) as (fake, client):
        fake.inject("sessions.create", status=None, delay=3.0)
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(RunWaitTimeout):
            await client.runs.run("q", app_id=APP_ID, timeout=5.0)
        assert 5.0 <= loop.time() - began < 5.2
        fake.inject("sessions.create", status=None, delay=10.0)
        with pytest.raises(DeadlineExceeded) as info:
            await client.runs.run("q", app_id=APP_ID, timeout=5.0)
        # Named after the call the user made and its timeout, with the step it ran out in.
        assert info.value.call == "runs.run"
        assert str(info.value).startswith("runs.run: the round trip's timeout of 5s ran out")
        assert "sessions.create" in str(info.value)
        assert str(info.value).count("runs.run:") == 1  # wrapped once


# -- every call takes timeout= ---------------------------------------------------------------

SID, RID, MID = "session_4dfunz7sp1g8m", "run_4dfunz7sp1g8m", "message_4dfunz7sp1g8m"
SKILL, AGENT = "skill_6cc6166178ca", "agent_7a1c"


async def drain(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


#: Each call, made with ``timeout=``: how to make it (an awaitable from a client and the
#: timeout). The route is the call's name.
CALLS: dict[str, Callable[[AilyClient, float], Awaitable[Any]]] = {
    "sessions.create": lambda c, t: c.sessions.create(timeout=t),
    "sessions.get": lambda c, t: c.sessions.get(SID, timeout=t),
    "sessions.update": lambda c, t: c.sessions.update(SID, metadata={"a": 1}, timeout=t),
    "sessions.delete": lambda c, t: c.sessions.delete(SID, timeout=t),
    "messages.create": lambda c, t: c.messages.create(SID, "q", timeout=t),
    "messages.get": lambda c, t: c.messages.get(SID, MID, timeout=t),
    "messages.list": lambda c, t: drain(c.messages.list(SID, timeout=t)),
    "runs.create": lambda c, t: c.runs.create(SID, app_id=APP_ID, timeout=t),
    "runs.get": lambda c, t: c.runs.get(SID, RID, timeout=t),
    "runs.list": lambda c, t: drain(c.runs.list(SID, timeout=t)),
    "runs.cancel": lambda c, t: c.runs.cancel(SID, RID, timeout=t),
    "skills.start": lambda c, t: c.skills.start(APP_ID, SKILL, query="q", timeout=t),
    "skills.get": lambda c, t: c.skills.get(APP_ID, SKILL, timeout=t),
    "skills.list": lambda c, t: drain(c.skills.list(APP_ID, timeout=t)),
    "knowledge.ask": lambda c, t: c.knowledge.ask(APP_ID, "q", timeout=t),
    "data_assets.create": lambda c, t: c.data_assets.create(
        APP_ID, connect_type="import", source_type="file", timeout=t
    ),
    "data_assets.list": lambda c, t: drain(c.data_assets.list(APP_ID, timeout=t)),
    "data_assets.get": lambda c, t: c.data_assets.get(APP_ID, "asset_1", timeout=t),
    "data_assets.delete": lambda c, t: c.data_assets.delete(APP_ID, "asset_1", timeout=t),
    "data_assets.upload_file": lambda c, t: c.data_assets.upload_file(APP_ID, b"x", timeout=t),
    "data_asset_tags.list": lambda c, t: drain(c.data_asset_tags.list(APP_ID, timeout=t)),
    "app_stats.list": lambda c, t: drain(
        c.app_stats.list(start_at="1700000000", end_at="1700086400", timeout=t)
    ),
    "agents.sessions.create": lambda c, t: c.agents.sessions.create(AGENT, timeout=t),
    "agents.sessions.get": lambda c, t: c.agents.sessions.get(AGENT, "s1", timeout=t),
    "agents.sessions.list": lambda c, t: drain(c.agents.sessions.list(AGENT, timeout=t)),
    "agents.sessions.delete": lambda c, t: c.agents.sessions.delete(AGENT, "s1", timeout=t),
    "agents.chats.create": lambda c, t: c.agents.chats.create(AGENT, "hi", timeout=t),
    "agents.chats.get": lambda c, t: c.agents.chats.get(AGENT, "c1", timeout=t),
    "agents.artifacts.get": lambda c, t: c.agents.artifacts.get(AGENT, "a1", timeout=t),
    "agents.attachments.create": lambda c, t: c.agents.attachments.create(
        AGENT, doc_url="https://example.com/d", timeout=t
    ),
    "agents.check_visibility": lambda c, t: c.agents.check_visibility(AGENT, "im", timeout=t),
}


def test_the_table_has_every_route_of_the_api() -> None:
    """The table below covers every call FakeAily serves (the whole API)."""
    assert set(CALLS) == set(ROUTES)


@pytest.mark.parametrize("route", sorted(CALLS))
@virtual_time
async def test_every_call_ends_at_its_deadline(route: str) -> None:
    """Each of the API's calls takes ``timeout=``: an answer delayed past it ends the call with
    DeadlineExceeded at the deadline (for a list, its page's request), naming the call."""
    async with aily() as (fake, client):
        fake.inject(route, status=None, delay=30.0)
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(DeadlineExceeded) as info:
            await CALLS[route](client, 2.0)
        assert 2.0 <= loop.time() - began < 2.1
        assert info.value.call == route


@pytest.mark.parametrize("route", sorted(CALLS))
async def test_every_call_refuses_a_bad_timeout_before_sending(route: str) -> None:
    """A bad ``timeout=`` is an AilyValidationError naming the field, before any request."""
    async with aily() as (fake, client):
        with pytest.raises(AilyValidationError, match="timeout"):
            await CALLS[route](client, -1.0)
        assert fake.route_counts().get(route, 0) == 0
