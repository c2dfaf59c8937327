"""RunHandle against FakeAily on virtual time: waiting, watching, sharing, cancelling, polling.

Each test serves a FakeAily on a fast-forwarding virtual-time loop (``_vloop``); the fake's
run clock and the client's poll timers read the same clock, so minutes of polling take
milliseconds and the fake's request log gives exact poll times.
"""

from __future__ import annotations

import asyncio
import itertools
from contextlib import suppress
from typing import Any

import pytest
from _handles import FIXED, aily, client_tasks
from _vloop import virtual_time

from aily_async import (
    AilyClient,
    AilyClosedError,
    AilyResponseError,
    PollPolicy,
    RetryPolicy,
    Run,
    RunHandle,
    RunStatus,
    RunWaitTimeout,
    _poller,
)
from aily_async._wire import AiohttpWire
from aily_async.testing import FakeAily, RunPlan

APP_ID = "spring_449d72db2f__c"


async def start_run(client: AilyClient, **options: Any) -> RunHandle:
    """A new session with one run in it."""
    session = await client.sessions.create()
    return await client.runs.create(session.id, app_id=APP_ID, **options)


def gets(fake: FakeAily, handle: RunHandle) -> list[float]:
    """Arrival times of the GETs of ``handle``'s run, as the fake logged them."""
    suffix = f"/runs/{handle.id}"
    return sorted(
        r.time for r in fake.requests if r.route == "runs.get" and r.path.endswith(suffix)
    )


def create_time(fake: FakeAily, handle: RunHandle) -> float:
    """When the fake received the create of ``handle``'s run."""
    prefix = f"/open-apis/aily/v1/sessions/{handle.session_id}/runs"
    return next(r.time for r in fake.requests if r.route == "runs.create" and r.path == prefix)


def sleep_timers() -> list[asyncio.TimerHandle]:
    """Pending sleep timers of the running loop: ``asyncio.sleep``'s and the poll loop's."""
    scheduled: list[asyncio.TimerHandle] = getattr(asyncio.get_running_loop(), "_scheduled", [])
    wakes = (getattr(asyncio.futures, "_set_result_unless_cancelled", object()), _poller._wake)
    return [h for h in scheduled if not h.cancelled() and getattr(h, "_callback", None) in wakes]


# -- awaiting ---------------------------------------------------------------------------------


@virtual_time
async def test_await_returns_the_terminal_run() -> None:
    """``await handle`` polls until the run ends and returns the final run; awaiting a finished
    handle returns at once without another request."""
    async with aily(run_script=RunPlan(duration=3.0)) as (fake, client):
        handle = await start_run(client)
        run = await handle
        assert run.status is RunStatus.COMPLETED
        assert handle.done
        assert handle.run is run
        assert handle.polls == len(gets(fake, handle)) >= 1
        again = await handle
        assert again is run
        assert handle.polls == len(gets(fake, handle))


@pytest.mark.parametrize("outcome", ["FAILED", "EXPIRED", "SOMETHING_NEW"])
@virtual_time
async def test_any_non_active_status_ends_the_wait(outcome: str) -> None:
    """Failed, expired and unknown statuses are terminal: the wait returns the run."""
    async with aily(run_script=RunPlan(duration=1.0, outcome=outcome)) as (_, client):
        run = await (await start_run(client))
        assert run.status.value == outcome
        assert run.status.is_terminal
        if outcome == "FAILED":
            assert run.error is not None


@virtual_time
async def test_requires_message_is_polled_through() -> None:
    """A run in REQUIRES_MESSAGE does not end the wait: polling goes on until the caller answers
    with ``messages.create``, and then the run completes."""
    plan = RunPlan(queued=0.05, duration=4.0, requires_message=True)
    async with aily(run_script=plan) as (fake, client):
        loop = asyncio.get_running_loop()
        handle = await start_run(client)
        waiter = loop.create_task(handle.wait())
        await asyncio.sleep(20.0)
        assert not waiter.done()
        assert handle.run.status is RunStatus.REQUIRES_MESSAGE
        polled = len(gets(fake, handle))
        await asyncio.sleep(20.0)
        assert len(gets(fake, handle)) > polled  # still polling while it waits for the user
        await client.messages.create(handle.session_id, "yes, go on")
        run = await waiter
        assert run.status is RunStatus.COMPLETED
        assert [m.text for m in await handle.messages()] == ["Echo: yes, go on"]


@virtual_time
async def test_wait_timeout_raises_and_waiting_again_resumes() -> None:
    """``wait(timeout)`` raises :class:`RunWaitTimeout` (a ``TimeoutError``) on time, polling
    stops while nobody waits, the run goes on server-side, and waiting again resumes."""
    async with aily(run_script=RunPlan(duration=20.0)) as (fake, client):
        loop = asyncio.get_running_loop()
        handle = await start_run(client)
        started = loop.time()
        with pytest.raises(RunWaitTimeout) as caught:
            await handle.wait(timeout=3.0)
        assert isinstance(caught.value, TimeoutError)
        assert loop.time() - started == pytest.approx(3.0, abs=1e-3)
        assert caught.value.run is handle.run
        assert fake.get_run(handle.id)["status"] == "IN_PROGRESS"
        polled = len(gets(fake, handle))
        await asyncio.sleep(5.0)
        assert len(gets(fake, handle)) == polled  # nobody waits: no polling
        assert not client_tasks()
        run = await handle.wait(timeout=60.0)
        assert run.status is RunStatus.COMPLETED
        assert len(gets(fake, handle)) > polled


@virtual_time
async def test_watch_yields_each_status_change_including_requires_message() -> None:
    """``watch()`` yields the run at each status change, REQUIRES_MESSAGE included (answered
    from inside the loop), and the last one yielded is terminal."""
    plan = RunPlan(queued=0.05, duration=8.0, requires_message=True)
    async with aily(run_script=plan) as (_, client):
        handle = await start_run(client, poll=FIXED)
        seen = []
        async for run in handle.watch():
            seen.append(run.status)
            if run.status is RunStatus.REQUIRES_MESSAGE:
                await client.messages.create(handle.session_id, "confirmed")
        assert seen[:3] == [RunStatus.QUEUED, RunStatus.IN_PROGRESS, RunStatus.REQUIRES_MESSAGE]
        assert seen[-1] is RunStatus.COMPLETED
        assert all(a != b for a, b in itertools.pairwise(seen))
        assert all(s.is_active for s in seen[:-1])


@virtual_time
async def test_watch_of_a_finished_run_yields_it_once() -> None:
    """Watching a handle whose run has ended yields that run once and sends nothing."""
    async with aily(run_script=RunPlan(duration=1.0)) as (fake, client):
        handle = await start_run(client)
        final = await handle
        before = len(fake.requests)
        assert [run async for run in handle.watch()] == [final]
        assert len(fake.requests) == before


@virtual_time
async def test_leaving_watch_early_stops_polling() -> None:
    """Breaking out of ``watch()`` stops the polling it started."""
    async with aily(run_script=RunPlan(duration=60.0)) as (fake, client):
        handle = await start_run(client)
        async for run in handle.watch():
            if run.status is RunStatus.IN_PROGRESS:
                break
        await asyncio.sleep(0)
        polled = len(gets(fake, handle))
        await asyncio.sleep(100.0)
        assert len(gets(fake, handle)) == polled
        assert not client_tasks()


# -- one-shot calls ---------------------------------------------------------------------------


@virtual_time
async def test_cancel_returns_the_final_run_and_ends_waits() -> None:
    """``cancel()`` cancels server-side and returns the cancelled run; a pending awaiter gets
    the same final run, and polling stops."""
    async with aily(run_script=RunPlan(duration=60.0)) as (fake, client):
        loop = asyncio.get_running_loop()
        handle = await start_run(client)
        waiter = loop.create_task(handle.wait())
        await asyncio.sleep(2.0)
        run = await handle.cancel()
        assert run.status is RunStatus.CANCELLED
        assert fake.get_run(handle.id)["status"] == "CANCELLED"
        assert (await waiter).status is RunStatus.CANCELLED
        polled = len(gets(fake, handle))
        await asyncio.sleep(60.0)
        assert len(gets(fake, handle)) == polled


@virtual_time
async def test_refresh_fetches_once() -> None:
    """``refresh()`` sends exactly one GET, returns the run and updates ``handle.run``; it
    starts no polling."""
    async with aily(run_script=RunPlan(queued=0.05, duration=5.0)) as (fake, client):
        handle = await start_run(client)
        assert handle.run.status is RunStatus.QUEUED
        await asyncio.sleep(1.0)
        run = await handle.refresh()
        assert run.status is RunStatus.IN_PROGRESS
        assert handle.run is run
        assert len(gets(fake, handle)) == 1
        await asyncio.sleep(30.0)
        assert len(gets(fake, handle)) == 1
        assert "idle" in repr(handle)


@virtual_time
async def test_messages_and_result_return_the_answer() -> None:
    """``messages()`` returns the run's assistant answer; ``result()`` waits and returns the run
    with it."""
    answer = "Your meeting with Ada is at 10:00."
    async with aily(run_script=RunPlan(duration=2.0, answer=answer)) as (_, client):
        handle = await start_run(client)
        result = await handle.result()
        assert result.ok
        assert result.text == answer
        messages = await handle.messages()
        assert [m.text for m in messages] == [answer]
        assert all(m.is_assistant and m.run_id == handle.id for m in messages)


@virtual_time
async def test_stream_yields_deltas_that_add_up_to_the_answer() -> None:
    """``stream()`` yields the answer in growing pieces whose concatenation is the whole answer,
    and ends once the run has ended."""
    answer = " ".join(f"word{i}" for i in range(60))
    async with aily(run_script=RunPlan(queued=0.05, duration=3.0, answer=answer)) as (
        fake,
        client,
    ):
        loop = asyncio.get_running_loop()
        handle = await start_run(client)
        deltas = [delta async for delta in handle.stream(interval=0.2)]
        assert len(deltas) >= 5
        assert all(deltas)
        assert "".join(deltas) == answer
        ended = create_time(fake, handle) + 3.05
        assert ended <= loop.time() <= ended + 1.0
        assert handle.done


@virtual_time
async def test_stream_takes_one_last_look_after_the_run_ends() -> None:
    """When the run ends between a pass over the messages and the status check, ``stream()``
    reads the messages once more, so no text written at the end is lost."""
    answer = "written all at the very end"
    plan = RunPlan(queued=2.0, duration=0.5, answer=answer)
    async with aily(run_script=plan) as (fake, client):
        handle = await start_run(client)
        # The first pass finds no message; the status check that follows is answered 10 s
        # late, after the run has ended.
        fake.inject("runs.get", status=None, delay=10.0)
        deltas = [delta async for delta in handle.stream(interval=30.0)]
        assert "".join(deltas) == answer
        assert handle.done


@virtual_time
async def test_runs_run_does_the_round_trip() -> None:
    """``runs.run`` sends the message, creates the run, waits and returns run and answer, in a
    new session or in a given one."""
    async with aily(run_script=RunPlan(duration=2.0)) as (fake, client):
        result = await client.runs.run("hello", app_id=APP_ID)
        assert result.ok
        assert result.run.status is RunStatus.COMPLETED
        assert result.text == "Echo: hello"
        session = await client.sessions.create()
        again = await client.runs.run("again", app_id=APP_ID, session_id=session.id)
        assert again.text == "Echo: again"
        assert again.run.session_id == session.id
        assert fake.created_runs == 2
        assert fake.created_messages == 2


# -- shared polling and cancellation ------------------------------------------------------------


@virtual_time
async def test_five_awaiters_share_one_poll_loop() -> None:
    """Five tasks awaiting one handle cost exactly the GETs of one task awaiting another run of
    the same length."""
    async with aily(run_script=RunPlan(duration=12.0)) as (fake, client):
        shared = await start_run(client, poll=FIXED)
        single = await start_run(client, poll=FIXED)
        results = await asyncio.gather(*(shared.wait() for _ in range(5)), single.wait())
        assert all(r.status is RunStatus.COMPLETED for r in results)
        assert len(gets(fake, shared)) == len(gets(fake, single)) == shared.polls >= 3
        assert all(r is results[0] for r in results[:5])


@virtual_time
async def test_cancelling_the_only_awaiter_stops_polling_at_once() -> None:
    """Cancelling the only task awaiting a handle stops its polling at once: no task and no poll
    timer is left, and no GET arrives afterwards."""
    async with aily(run_script=RunPlan(duration=120.0)) as (fake, client):
        loop = asyncio.get_running_loop()
        handle = await start_run(client)
        waiter = loop.create_task(handle.wait())
        await asyncio.sleep(3.0)
        assert client_tasks()
        assert sleep_timers()
        waiter.cancel()
        with suppress(asyncio.CancelledError):
            await waiter
        cancelled_at = loop.time()
        await asyncio.sleep(0)
        assert not client_tasks()
        assert not sleep_timers()
        assert "idle" in repr(handle)
        await asyncio.sleep(200.0)
        assert not [t for t in gets(fake, handle) if t > cancelled_at]


@virtual_time
async def test_cancelling_the_awaiter_mid_request_releases_the_connection() -> None:
    """Cancelling the awaiter while a poll is on the wire leaves no task and no connection
    checked out of the pool."""
    async with aily(run_script=RunPlan(duration=120.0)) as (fake, client):
        loop = asyncio.get_running_loop()
        handle = await start_run(client)
        fake.inject("runs.get", status=None, delay=10.0)  # the first poll hangs for 10 s
        waiter = loop.create_task(handle.wait())
        await asyncio.sleep(3.0)
        assert isinstance(client.wire, AiohttpWire)
        connector: Any = client.wire.pool
        assert connector is not None
        assert len(connector._acquired) == 1
        waiter.cancel()
        with suppress(asyncio.CancelledError):
            await waiter
        cancelled_at = loop.time()
        await asyncio.sleep(0)
        assert not client_tasks()
        assert len(connector._acquired) == 0
        await asyncio.sleep(100.0)
        assert not [t for t in gets(fake, handle) if t > cancelled_at]


@virtual_time
async def test_cancelling_one_of_two_awaiters_keeps_the_other_going() -> None:
    """When one of two awaiters is cancelled the other keeps being served to the end."""
    async with aily(run_script=RunPlan(duration=15.0)) as (fake, client):
        loop = asyncio.get_running_loop()
        handle = await start_run(client)
        first = loop.create_task(handle.wait())
        second = loop.create_task(handle.wait())
        await asyncio.sleep(2.0)
        first.cancel()
        cancelled_at = loop.time()
        run = await second
        assert run.status is RunStatus.COMPLETED
        assert first.cancelled()
        assert [t for t in gets(fake, handle) if t > cancelled_at]


# -- the poll schedule --------------------------------------------------------------------------


@virtual_time
async def test_first_poll_after_interval_then_gaps_grow_to_the_cap() -> None:
    """Without jitter the first GET comes ``interval`` after the create and the gaps grow by
    ``backoff`` up to ``max_interval``."""
    policy = PollPolicy(interval=0.5, backoff=2.0, max_interval=4.0, jitter=0.0, adaptive=False)
    async with aily(run_script=RunPlan(duration=30.0)) as (fake, client):
        handle = await start_run(client, poll=policy)
        await handle
        times = [create_time(fake, handle), *gets(fake, handle)]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # GETs at 0.5, 1.5, 3.5, 7.5, 11.5, ... 31.5 s: the last sees the run done at 30.05 s.
        assert gaps == pytest.approx([0.5, 1.0, 2.0] + [4.0] * 7, abs=1e-3)


@virtual_time
async def test_jittered_gaps_stay_within_bounds() -> None:
    """With jitter, the first GET is never earlier than ``interval`` (per-call override), no gap
    is shorter than it, and the gaps grow toward the cap within the jitter's bounds."""
    async with aily(run_script=RunPlan(duration=60.0), client={"poll_interval": 2.0}) as (
        fake,
        client,
    ):
        handle = await start_run(client, poll_interval=0.25)
        await handle
        policy = PollPolicy(interval=0.25)
        times = [create_time(fake, handle), *gets(fake, handle)]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert 0.25 - 1e-6 <= gaps[0] <= 0.25 * (1 + policy.jitter) + 1e-6
        assert min(gaps) >= 0.25 - 1e-6
        planned = 0.25
        for gap in gaps[1:]:
            planned = min(policy.max_interval, planned * policy.backoff)
            assert planned * (1 - policy.jitter) - 1e-6 <= gap
            assert gap <= planned * (1 + policy.jitter) + 1e-6
        assert max(gaps) > 0.8 * policy.max_interval  # it reached the cap


@virtual_time
async def test_adaptive_first_poll_comes_near_the_typical_duration() -> None:
    """Once the client has seen enough runs of about ``D`` seconds end, the first GET of a new
    run comes near ``D`` rather than after ``poll_interval``, and it needs one or two GETs."""
    duration = 6.0
    async with aily(run_script=RunPlan(queued=0.0, duration=duration)) as (fake, client):
        policy = client.poll_policy
        assert policy.adaptive
        learning = [await start_run(client) for _ in range(policy.min_samples)]
        await asyncio.gather(*learning)
        assert len(client.durations) == policy.min_samples
        first_gets = [gets(fake, h)[0] - create_time(fake, h) for h in learning]
        assert max(first_gets) <= 0.5 * (1 + policy.jitter) + 1e-6
        naive = min(len(gets(fake, h)) for h in learning)
        handle = await start_run(client)
        await handle
        first = gets(fake, handle)[0] - create_time(fake, handle)
        assert (1 - policy.jitter) * duration - 1e-6 <= first <= duration + 1e-6
        assert len(gets(fake, handle)) <= 2 < naive


# -- closing and failures -----------------------------------------------------------------------


@virtual_time
async def test_closing_the_client_ends_pending_waits_promptly() -> None:
    """``client.close()`` ends every pending wait and watch with :class:`AilyClosedError` at
    once, leaves no task, and later waits fail the same way."""
    async with aily(run_script=RunPlan(duration=600.0)) as (_, client):
        loop = asyncio.get_running_loop()
        one, two = await start_run(client), await start_run(client)

        async def watch_all() -> None:
            async for _ in two.watch():
                pass

        pending: list[asyncio.Task[Any]] = [loop.create_task(one.wait()) for _ in range(2)]
        pending.append(loop.create_task(watch_all()))
        await asyncio.sleep(5.0)
        closed_at = loop.time()
        await client.close()
        results = await asyncio.gather(*pending, return_exceptions=True)
        assert loop.time() - closed_at < 0.01
        assert all(isinstance(r, AilyClosedError) for r in results), results
        await asyncio.sleep(0)
        assert not client_tasks()
        with pytest.raises(AilyClosedError):
            await one
        assert "waiters=0" in repr(one)


@virtual_time
async def test_a_passing_poll_failure_does_not_end_the_waits() -> None:
    """Polls failing with 5xx beyond their retries do not end the waits: polling goes on and
    every awaiter gets the finished run."""
    async with aily(
        run_script=RunPlan(duration=5.0), client={"retry": RetryPolicy.no_wait(max_attempts=3)}
    ) as (fake, client):
        handle = await start_run(client)
        fake.inject("runs.get", status=500, times=6)
        results = await asyncio.gather(handle.wait(), handle.wait(), return_exceptions=True)
        assert all(isinstance(r, Run) and r.status is RunStatus.COMPLETED for r in results)
        statuses = [r.status for r in fake.requests if r.route == "runs.get"]
        assert statuses[:6] == [500] * 6
        assert statuses[-1] == 200


@virtual_time
async def test_poll_failure_reaches_every_awaiter_and_waiting_again_resumes() -> None:
    """When a poll fails for a reason that is not passing (an answer that cannot be read),
    every awaiter gets the :class:`AilyError`; the run is not lost, and waiting again resumes
    polling to the end."""
    async with aily(
        run_script=RunPlan(duration=5.0), client={"retry": RetryPolicy.no_wait(max_attempts=3)}
    ) as (fake, client):
        handle = await start_run(client)
        fake.inject("runs.get", status=200, body={"code": 0, "data": {"run": "not an object"}})
        results = await asyncio.gather(handle.wait(), handle.wait(), return_exceptions=True)
        assert all(isinstance(r, AilyResponseError) for r in results), results
        assert not handle.done
        assert len(gets(fake, handle)) == 1
        run = await handle
        assert run.status is RunStatus.COMPLETED
