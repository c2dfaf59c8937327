"""Lifecycle hardening: cancellation at every await point, leaks after 1,000 runs, shutdown.

All tests run on the fast-forwarding virtual-time loop (``_vloop``) with a FakeAily on the same
loop, so limiter waits, polling and server delays cost no real time. Sockets are counted from
``/proc/self/fd``; tasks from ``asyncio.all_tasks()``, leaving out the fake server's own
per-connection handler tasks.
"""

from __future__ import annotations

import asyncio
import gc
import os
import stat
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from _vloop import VirtualTimeLoop, virtual_time

from aily_async import (
    AilyClient,
    AilyClosedError,
    AilyError,
    RetryPolicy,
    RunHandle,
    TokenBucket,
)
from aily_async.testing import FakeAily, Faults, RunPlan

APP = "spring_449d72db2f__c"

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="counts sockets through /proc/self/fd"
)


# --------------------------------------------------------------------------- helpers


def socket_count() -> int:
    """Open sockets of this process (client and fake server sides both count)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISSOCK(os.stat(f"/proc/self/fd/{name}").st_mode):
                count += 1
        except OSError:  # closed between listdir and stat
            pass
    return count


def _is_server_task(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    filename = code.co_filename if code is not None else ""
    return f"aiohttp{os.sep}web_" in filename


def stray_tasks() -> list[asyncio.Task[Any]]:
    """Tasks still pending other than the caller's and the fake server's connection handlers."""
    me = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not me and not _is_server_task(t)]


async def settle(iterations: int = 5) -> None:
    """Let callbacks scheduled by a cancellation run (a few loop iterations, no time)."""
    for _ in range(iterations):
        await asyncio.sleep(0)


class LoopComplaints:
    """Collects what the loop's exception handler is told (e.g. "Unclosed client session")."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.messages.append(str(context.get("message")) + " " + repr(context.get("exception")))


def _client(fake: FakeAily, **kwargs: Any) -> AilyClient:
    options: dict[str, Any] = {
        "base_url": fake.url,
        "retry": RetryPolicy(max_attempts=4, base_delay=0.002, max_delay=0.01),
        "poll_interval": 0.005,
    }
    options.update(kwargs)
    return AilyClient("cli_test", "test-secret", **options)


def _runs_and_user_messages(fake: FakeAily) -> tuple[int, int]:
    """The largest number of runs, and of user messages, held by any one session."""
    most_runs = most_messages = 0
    for sid in fake.session_ids():
        most_runs = max(most_runs, fake.run_count(sid))
        users = [
            m for m in fake.messages_in(sid) if (m.get("sender") or {}).get("sender_type") == "USER"
        ]
        most_messages = max(most_messages, len(users))
    return most_runs, most_messages


# --------------------------------------------------------------------------- cancellation

Prepare = Callable[[AilyClient], Awaitable[Callable[[], Awaitable[Any]]]]


async def _prep_create(client: AilyClient) -> Callable[[], Awaitable[Any]]:
    sid = (await client.sessions.create()).id
    return lambda: client.runs.create(sid, app_id=APP)


async def _prep_await(client: AilyClient) -> Callable[[], Awaitable[Any]]:
    sid = (await client.sessions.create()).id
    handle = await client.runs.create(sid, app_id=APP)

    async def wait() -> Any:
        return await handle

    return wait


async def _prep_skill(client: AilyClient) -> Callable[[], Awaitable[Any]]:
    return lambda: client.skills.start(APP, "skill_echo", query="hi")


async def _prep_round_trip(client: AilyClient) -> Callable[[], Awaitable[Any]]:
    return lambda: client.runs.run("hello", app_id=APP, timeout=30)


async def _prep_batch_skills(client: AilyClient) -> Callable[[], Awaitable[Any]]:
    async def batch() -> Any:
        return await client.batch.skills(
            APP, "skill_echo", ["a", "b", "c"], concurrency=2, grace=0.01
        )

    return batch


async def _prep_batch_runs(client: AilyClient) -> Callable[[], Awaitable[Any]]:
    async def batch() -> Any:
        return await client.batch.runs(APP, ["a", "b"], concurrency=2, grace=0.01)

    return batch


OPERATIONS: dict[str, Prepare] = {
    "runs.create": _prep_create,
    "await handle": _prep_await,
    "skills.start": _prep_skill,
    "runs.run": _prep_round_trip,
    "batch.skills": _prep_batch_skills,
    "batch.runs": _prep_batch_runs,
}

#: Virtual seconds that pass with each event-loop iteration of the sweep (about what a real
#: iteration costs), so that timers (limiter, backoff, polling) come due as k grows.
STEP = 0.0005


@pytest.mark.parametrize("faulty", [False, True], ids=["clean", "faults"])
@pytest.mark.parametrize("op", list(OPERATIONS))
@virtual_time
async def test_cancellation_at_every_await_point(op: str, faulty: bool) -> None:
    """Cancelling an operation after k loop iterations, for every k until it completes on its
    own (and, with random faults on, succeeds), leaves no task, no extra socket, a consistent
    limiter and a usable client, and never a second run or message in a session."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    faults = Faults(error_rate=0.15, drop_rate=0.05, delay=(0.0, 0.004))
    async with FakeAily(run_script=RunPlan(queued=0.005, duration=0.02), token_ttl=1.0) as fake:
        bucket = TokenBucket(200, 1.0, burst=2)
        async with _client(fake, limiter=bucket) as client:
            await client.skills.get(APP, "skill_echo")  # a pooled connection and a token
            await settle()
            sockets = socket_count()
            k = 0
            completed = False
            outcomes: dict[str, int] = {}
            while not completed:
                start = await OPERATIONS[op](client)
                if faulty:
                    fake.set_faults(attrs_evolve_seed(faults, k))
                task = asyncio.ensure_future(start())
                for _ in range(k):
                    loop.advance(STEP)
                    await asyncio.sleep(0)
                finished = task.done()
                task.cancel()
                try:
                    await task
                    outcome = "done"
                except asyncio.CancelledError:
                    outcome = "cancelled"
                except AilyError as exc:  # a fault that retries could not absorb
                    outcome = type(exc).__name__
                # Sweep on until the operation completes on its own, and succeeds.
                completed = finished and outcome == "done"
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                fake.set_faults(None)
                await settle()

                assert stray_tasks() == [], f"k={k}: tasks left behind"
                assert socket_count() <= sockets + 4, f"k={k}: sockets leak"
                assert bucket.waiting == 0, f"k={k}: {bucket!r}"
                grant_within = bucket.next_grant_in() + bucket.interval + 1e-6
                await asyncio.wait_for(bucket.acquire(), timeout=grant_within)
                assert (await client.skills.get(APP, "skill_echo")).id == "skill_echo"
                k += 1
                assert k < 3000, "the operation never completes"
            assert outcomes.get("cancelled", 0) >= 5, outcomes
        await settle()
        assert stray_tasks() == []
        most_runs, most_messages = _runs_and_user_messages(fake)
        assert most_runs <= 1, "a cancelled or retried create made a second run in a session"
        assert most_messages <= 1, "a cancelled or retried send stored a message twice"
    print(f"\n{op} ({'faults' if faulty else 'clean'}): swept k=0..{k - 1}: {outcomes}")


def attrs_evolve_seed(faults: Faults, seed: int) -> Faults:
    """``faults`` with another seed, so each k meets a different but repeatable sequence."""
    return Faults(
        error_rate=faults.error_rate, drop_rate=faults.drop_rate, delay=faults.delay, seed=seed
    )


# --------------------------------------------------------------------------- leaks


async def _thousand_runs(fake: FakeAily) -> int:
    """1,000 round trips through one client, 50 at a time; the sockets open midway."""
    async with _client(fake, limiter=None, poll_interval=0.05) as client:
        gate = asyncio.Semaphore(50)
        peak = 0

        async def one(i: int) -> bool:
            nonlocal peak
            async with gate:
                result = await client.runs.run(f"question {i}", app_id=APP, timeout=60)
                peak = max(peak, socket_count())
                return result.ok and result.text == f"Echo: question {i}"

        results = await asyncio.gather(*(one(i) for i in range(1000)))
    assert all(results)
    return peak


@virtual_time
async def test_no_leak_after_a_thousand_runs() -> None:
    """After 1,000 round trips and ``client.close()``: the socket count is back to where it was,
    no task is pending, and neither a warning nor a loop complaint (unclosed session or
    connector, never-awaited coroutine) comes up, even after a full garbage collection."""
    loop = asyncio.get_running_loop()
    complaints = LoopComplaints()
    loop.set_exception_handler(complaints)
    before = socket_count()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with FakeAily(run_script=RunPlan(queued=0.01, duration=0.05)) as fake:
            listening = socket_count()
            peak = await _thousand_runs(fake)
            await settle()
            assert fake.created_runs == 1000
            assert socket_count() == listening, "a client socket outlived client.close()"
            assert stray_tasks() == []
        await settle()
        gc.collect()
        await settle()
    assert socket_count() == before
    assert stray_tasks() == []
    assert [str(w.message) for w in caught] == []
    assert complaints.messages == []
    print(f"\n1000 runs: up to {peak - listening} sockets open while running, 0 after close")


# --------------------------------------------------------------------------- shutdown


@virtual_time
async def test_close_ends_pending_waits_promptly() -> None:
    """Closing the client while 100 runs are being waited on (await, wait(timeout), result(),
    watch()) and calls are on the wire ends every one of them with AilyClosedError within a
    few loop iterations and no virtual time, and leaves no task behind."""
    loop = asyncio.get_running_loop()
    async with FakeAily(run_duration=3600.0) as fake:
        client = _client(fake, limiter=None, poll_interval=0.5)
        await client.__aenter__()
        handles: list[RunHandle] = []
        for _ in range(100):
            sid = (await client.sessions.create()).id
            handles.append(await client.runs.create(sid, app_id=APP))

        async def plain(handle: RunHandle) -> Any:
            return await handle

        async def watch(handle: RunHandle) -> None:
            async for _ in handle.watch():
                pass

        waits: list[Callable[[RunHandle], Awaitable[Any]]] = [
            plain,
            lambda h: h.wait(timeout=7200),
            lambda h: h.result(),
            watch,
        ]
        tasks = [asyncio.ensure_future(waits[i % 4](h)) for i, h in enumerate(handles)]
        fake.inject("skills.start", status=None, delay=30.0, times=5)
        fake.inject("skills.get", status=None, delay=30.0, times=5)
        on_wire = [
            asyncio.ensure_future(client.skills.start(APP, "skill_echo")) for _ in range(5)
        ] + [asyncio.ensure_future(client.skills.get(APP, "skill_echo")) for _ in range(5)]
        await asyncio.sleep(20)  # the waits poll a few times; the calls wait for answers
        assert not any(t.done() for t in tasks + on_wire)
        polls = sum(h.polls for h in handles)
        assert polls >= 100

        began = loop.time()
        await client.close()
        for _ in range(5):
            if all(t.done() for t in tasks + on_wire):
                break
            await asyncio.sleep(0)
        assert loop.time() - began < 0.001
        assert all(t.done() for t in tasks + on_wire), "a wait outlived close() by 5 iterations"
        for task in tasks + on_wire:
            assert isinstance(task.exception(), AilyClosedError), task.exception()
            assert "closed" in str(task.exception())
        await settle()
        assert stray_tasks() == []
        with pytest.raises(AilyClosedError):
            await handles[0]
        with pytest.raises(AilyClosedError):
            await client.sessions.create()
    print(f"\nclose(): 100 waits ({polls} polls so far) and 10 calls on the wire ended at once")


@virtual_time
async def test_calls_queued_in_the_limiter_end_with_closed_error() -> None:
    """Calls still queued behind the rate limiter when the client closes end at once with
    AilyClosedError, send nothing, and leave the bucket with no waiter."""
    async with FakeAily() as fake:
        bucket = TokenBucket(10, 60.0, burst=1)
        client = _client(fake, limiter=bucket)
        await client.__aenter__()
        await client.skills.get(APP, "skill_echo")
        queued = [asyncio.ensure_future(client.skills.get(APP, "skill_echo")) for _ in range(5)]
        await settle()
        assert bucket.waiting == 5
        sent = len(fake.requests)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await client.close()
        done, pending = await asyncio.wait(queued, timeout=120)
        assert not pending
        assert loop.time() - began < 0.001, "queued calls waited for their turn"
        for task in done:
            assert isinstance(task.exception(), AilyClosedError), task.exception()
        assert len(fake.requests) == sent
        assert bucket.waiting == 0
        assert stray_tasks() == []


@virtual_time
async def test_close_wakes_a_call_sleeping_between_retries() -> None:
    """A call asleep in retry backoff when the client closes ends at once with
    AilyClosedError instead of sleeping on, and its task is not left cancelled."""
    async with FakeAily() as fake:
        client = _client(fake, limiter=None, retry=RetryPolicy(base_delay=30.0, max_delay=30.0))
        await client.__aenter__()
        fake.inject("skills.get", status=503, times=10)
        call = asyncio.ensure_future(client.skills.get(APP, "skill_echo"))
        await settle(50)
        assert [r.status for r in fake.requests if r.route == "skills.get"] == [503]
        loop = asyncio.get_running_loop()
        began = loop.time()
        await client.close()
        with pytest.raises(AilyClosedError, match=r"^skills\.get: "):
            await call
        assert loop.time() - began < 0.001
        assert not call.cancelled()
        assert stray_tasks() == []
