"""Exactly once off the happy path: no wrong run adopted, no duplicate under a skewed server
clock, no resend behind the library's back, waits that ride through outages and take a last
look, and streams that survive rewritten text. Every test here failed on 0.1.0."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from _fake_client import fake_and_client
from _vloop import virtual_time

from aily_async import (
    AilyClient,
    AilyConnectionError,
    PollPolicy,
    RetryPolicy,
    RunStatus,
    TextDelta,
)
from aily_async.testing import FakeAily, RunPlan

APP_ID = "spring_449d72db2f__c"


def aily(
    *, client: dict[str, Any] | None = None, **fake: Any
) -> AbstractAsyncContextManager[tuple[FakeAily, AilyClient]]:
    """A FakeAily and a client for it (no limiter, retries without waiting)."""
    return fake_and_client({"limiter": None, "retry": RetryPolicy.no_wait()}, client, **fake)


# -- 1, 2: adopting only a run this create could have made ------------------------------------


@virtual_time
async def test_a_create_refused_before_the_server_acted_never_adopts_the_previous_run() -> None:
    """A runs.create answered 5xx before the server acted creates a new run for the new
    question; the session's previous (completed) run is not handed back as its answer."""
    async with aily(run_script=RunPlan(queued=0.0, duration=0.2)) as (fake, client):
        session = await client.sessions.create()
        await client.messages.create(session.id, "first question")
        first = await (await client.runs.create(session.id, app_id=APP_ID))
        assert first.status is RunStatus.COMPLETED
        await client.messages.create(session.id, "second question")
        fake.inject("runs.create", status=503)
        handle = await client.runs.create(session.id, app_id=APP_ID)
        assert handle.id != first.id
        assert fake.run_count(session.id) == 2
        result = await handle.result(timeout=30)
        assert "second question" in result.text


@pytest.mark.parametrize("offset", [-600.0, 600.0])
@virtual_time
async def test_a_lost_answer_with_a_skewed_server_clock_adopts_the_run_that_landed(
    offset: float,
) -> None:
    """With the server's clock 10 minutes off the client's, a create whose answer is held
    back past the client's timeout (the run landed and ended meanwhile) adopts that run:
    one run in the session, never two."""
    async with aily(
        clock_offset=offset,
        run_script=RunPlan(queued=0.0, duration=0.1),
        client={"timeout": 1.0},
    ) as (fake, client):
        session = await client.sessions.create()
        await client.messages.create(session.id, "hello")
        fake.inject("runs.create", hold=3.0)
        handle = await client.runs.create(session.id, app_id=APP_ID)
        run = await handle.wait(timeout=30)
        assert run.status is RunStatus.COMPLETED
        await asyncio.sleep(3.0)  # the held answer is logged once it is sent
        assert fake.run_count(session.id) == 1
        assert fake.route_counts()["runs.create"] == 1


# -- 3: no resend behind the library's back -------------------------------------------------------


async def test_an_update_dropped_after_the_server_acted_reaches_it_once() -> None:
    """sessions.update (unsafe to repeat) whose kept-alive connection drops after the server
    acted is not sent again by aiohttp: the server sees it once, the caller a drop."""
    async with aily() as (fake, client):
        session = await client.sessions.create()
        fake.inject("sessions.update", drop="after")
        with pytest.raises(AilyConnectionError):
            await client.sessions.update(session.id, metadata={"v": 2})
        assert fake.route_counts()["sessions.update"] == 1
        assert client.stats.by_call["sessions.update"] == 1


async def test_a_delete_dropped_after_the_server_acted_is_a_success() -> None:
    """sessions.delete whose answer is lost after the session was deleted is retried by the
    library (counted), and the retry's "not found" means the delete is done."""
    async with aily() as (fake, client):
        session = await client.sessions.create()
        fake.inject("sessions.delete", drop="after")
        await client.sessions.delete(session.id)
        assert session.id not in fake.session_ids()
        assert fake.route_counts()["sessions.delete"] == 2
        assert client.stats.by_call["sessions.delete"] == 2
        assert client.stats.retries == 1


# -- 4: waits ride through a token outage ---------------------------------------------------------


@virtual_time
async def test_forty_waits_ride_through_a_five_second_token_outage() -> None:
    """With the token endpoint answering 503 for 5 s while 40 handles poll (their token just
    expired), every await still ends with the finished run, and the endpoint sees a few
    fetches, not one per poll."""
    async with aily(
        run_script=RunPlan(queued=0.0, duration=8.0),
        client={"retry": RetryPolicy(), "poll": PollPolicy(interval=0.5, adaptive=False)},
    ) as (fake, client):
        handles = []
        for _ in range(40):
            session = await client.sessions.create()
            await client.messages.create(session.id, "q")
            handles.append(await client.runs.create(session.id, app_id=APP_ID))
        fake.expire_tokens()
        fake.outage("auth", 5.0)
        runs = await asyncio.gather(*(h.wait(timeout=60) for h in handles))
        assert all(run.status is RunStatus.COMPLETED for run in runs)
        refused = [r for r in fake.requests if r.route == "auth" and r.status == 503]
        assert refused, "the outage was not met"
        # The 40 pollers share each fetch and the gaps after a failed one (0.1 s, doubling):
        # a handful of fetches, not one per poll attempt (without the gap: about 300).
        assert len(refused) <= 8, len(refused)


# -- 10: a last look before a wait gives up -------------------------------------------------------


@virtual_time
async def test_a_run_that_ended_before_the_deadline_is_returned_not_timed_out() -> None:
    """A 0.25 s run awaited with wait(timeout=1.0) (first poll due after 1 s) is returned
    COMPLETED: the wait looks once more just before its deadline."""
    async with aily(
        run_script=RunPlan(queued=0.05, duration=0.2), client={"poll_interval": 1.0}
    ) as (_fake, client):
        session = await client.sessions.create()
        await client.messages.create(session.id, "q")
        handle = await client.runs.create(session.id, app_id=APP_ID)
        loop = asyncio.get_running_loop()
        began = loop.time()
        run = await handle.wait(timeout=1.0)
        assert run.status is RunStatus.COMPLETED
        assert loop.time() - began <= 1.0


# -- 11: a stream survives rewritten text ---------------------------------------------------------


@virtual_time
async def test_a_stream_ends_with_the_final_answer_when_a_placeholder_is_rewritten() -> None:
    """A partial message that first shows a placeholder and is then replaced by the answer:
    the stream marks the replacement as a rewrite and its concatenation holds the answer."""
    answer = "The answer is forty-two, written slowly."
    async with aily(
        run_script=RunPlan(queued=0.0, duration=4.0, answer=answer, placeholder="…thinking…"),
        client={"poll_interval": 0.1},
    ) as (_fake, client):
        session = await client.sessions.create()
        await client.messages.create(session.id, "q")
        handle = await client.runs.create(session.id, app_id=APP_ID)
        deltas = [delta async for delta in handle.stream(interval=0.1)]
    assert all(isinstance(d, TextDelta) for d in deltas)
    assert any(d.rewrite for d in deltas)
    assert deltas[0] == "…thinking…"
    assert answer in "".join(deltas)
    # Replaying the rule (append, or replace on a rewrite) gives exactly the final answer.
    shown: dict[str, str] = {}
    for d in deltas:
        shown[d.message_id] = str(d) if d.rewrite else shown.get(d.message_id, "") + d
    assert list(shown.values()) == [answer]
