"""The fault soak: 500 round trips and 500 skill starts from one client against a faulty server.

FakeAily answers 10% of API calls with a 500/502/503 (HTML or JSON), drops 3% of connections
(half before the call takes effect, half after), delays every answer by up to a second, enforces
the documented rate quotas strictly, and issues tenant tokens that live 3 seconds. The client
uses its defaults (per-call token buckets, 4 attempts with backoff). On virtual time the soak's
minutes of limiter and polling time take seconds of real time.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from _vloop import virtual_time

from aily_async import AilyClient, AilyError, ResponseEvent, RetryEvent, RetryPolicy
from aily_async.testing import FakeAily, Faults, RunPlan

APP = "spring_449d72db2f__c"
RUNS = 500
SKILLS = 500
CONCURRENCY = 64


class _Item:
    """What happened to one soak item."""

    __slots__ = ("error", "handle_id", "ok", "session_id", "step")

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.handle_id: str | None = None
        self.step = ""
        self.ok = False
        self.error: BaseException | None = None


@virtual_time
async def test_fault_soak() -> None:
    """Under 10% 5xx, 3% dropped connections, random delays, strict quotas and 3-second tokens,
    every one of 500 runs and 500 skill starts ends correctly or with an AilyError, no exception
    of another kind escapes, no run is created twice by a retried create, no message is stored
    twice by a retried send, and nothing is left open afterwards."""
    loop = asyncio.get_running_loop()
    wall = time.perf_counter()
    started = loop.time()
    faults = Faults(error_rate=0.10, drop_rate=0.03, delay=(0.0, 1.0), seed=7)
    retries: collections.Counter[str] = collections.Counter()
    codes: collections.Counter[int | None] = collections.Counter()

    def on_retry(event: Any) -> None:
        assert isinstance(event, RetryEvent)
        retries[type(event.error).__name__] += 1

    def on_response(event: Any) -> None:
        assert isinstance(event, ResponseEvent)
        codes[event.code] += 1

    async with FakeAily(
        token_ttl=3.0,
        run_script=RunPlan(queued=0.1, duration=2.0),
        faults=faults,
        rate_limits=True,
    ) as fake:
        client = AilyClient(
            "cli_soak",
            "soak-secret",
            base_url=fake.url,
            retry=RetryPolicy(max_attempts=4, base_delay=0.2, max_delay=2.0),
            poll_interval=0.5,
            event_hooks={"retry": [on_retry], "response": [on_response]},
        )
        runs = [_Item() for _ in range(RUNS)]
        skills = [_Item() for _ in range(SKILLS)]
        async with client:
            gate = asyncio.Semaphore(CONCURRENCY)

            async def round_trip(i: int, item: _Item) -> None:
                async with gate:
                    item.step = "sessions.create"
                    item.session_id = (await client.sessions.create()).id
                    item.step = "messages.create"
                    await client.messages.create(item.session_id, f"question {i}")
                    item.step = "runs.create"
                    handle = await client.runs.create(item.session_id, app_id=APP)
                    item.handle_id = handle.id
                    item.step = "runs.wait"
                    result = await handle.result(timeout=600)
                    assert result.ok, result.run
                    assert result.text == f"Echo: question {i}", result.text
                    item.ok = True

            async def skill(i: int, item: _Item) -> None:
                async with gate:
                    item.step = "skills.start"
                    result = await client.skills.start(APP, "skill_echo", input={"i": i})
                    assert result.json()["input"] == {"i": i}
                    item.ok = True

            async def guarded(work: Any, i: int, item: _Item) -> None:
                try:
                    await work(i, item)
                except (AilyError, TimeoutError, asyncio.CancelledError) as exc:
                    item.error = exc

            await asyncio.gather(
                *(guarded(round_trip, i, item) for i, item in enumerate(runs)),
                *(guarded(skill, i, item) for i, item in enumerate(skills)),
            )
            requests = client.stats.requests
            client_retries = client.stats.retries

        # Every item ended: done, or an AilyError (or a timeout) saying at which step.
        for item in runs + skills:
            assert item.ok or item.error is not None
            if item.error is not None:
                assert isinstance(item.error, AilyError | TimeoutError), repr(item.error)
                assert item.step
                calls = (item.step, "runs.get", "messages.list", "runs.list", "auth.token")
                assert str(item.error).startswith(calls), (item.step, item.error)

        # No duplicates: at most one run and one user message in any session.
        sessions = fake.session_ids()
        most_runs = max(fake.run_count(sid) for sid in sessions)
        user_messages = {
            sid: sum(
                1
                for m in fake.messages_in(sid)
                if (m.get("sender") or {}).get("sender_type") == "USER"
            )
            for sid in sessions
        }
        assert most_runs <= 1, "a retried runs.create made a second run"
        assert max(user_messages.values()) <= 1, "a retried send stored a message twice"
        # Every run the fake made is one the client reported, or the run of an item whose
        # create failed after it landed (an orphan the caller was told about with an error).
        reported = [item for item in runs if item.handle_id is not None]
        for item in reported:
            assert item.session_id is not None
            assert [r["id"] for r in fake.runs_in(item.session_id)] == [item.handle_id]
        orphan_runs = sum(
            1
            for item in runs
            if item.handle_id is None and item.session_id and fake.run_count(item.session_id)
        )
        assert fake.created_runs == len(reported) + orphan_runs
        sent = sum(
            1 for item in runs if item.session_id and item.step not in ("messages.create", "")
        )
        orphan_messages = sum(
            1
            for item in runs
            if item.step == "messages.create" and item.session_id and user_messages[item.session_id]
        )
        assert fake.created_messages == sent + orphan_messages

        # Only the fake server's connection handlers may still be pending.
        leftover = [
            t
            for t in asyncio.all_tasks()
            if t is not asyncio.current_task()
            and "aiohttp" not in getattr(getattr(t.get_coro(), "cr_code", None), "co_filename", "")
        ]
        assert leftover == []
        fake_requests = len(fake.requests)
        faulted = collections.Counter(r.fault for r in fake.requests if r.fault)
        token_fetches = fake.token_fetches
        rate_limited = sum(fake.rate_limited.values())

    ok_runs = sum(item.ok for item in runs)
    ok_skills = sum(item.ok for item in skills)
    failures = collections.Counter(
        f"{item.step}: {type(item.error).__name__}" for item in runs + skills if item.error
    )
    wall = time.perf_counter() - wall
    print(
        f"\nfault soak: {RUNS} runs + {SKILLS} skill starts, concurrency {CONCURRENCY}, "
        f"one client\n"
        f"  ok: runs {ok_runs}/{RUNS}, skills {ok_skills}/{SKILLS}\n"
        f"  failures (AilyError per item, by step): {dict(sorted(failures.items()))}\n"
        f"  requests: {requests} sent by the client, {fake_requests} seen by the fake; "
        f"faults injected: {dict(faulted)}; 429s: {rate_limited}\n"
        f"  retries: {client_retries} ({dict(retries)}); token fetches: {token_fetches}; "
        f"expired tokens refused and refreshed: {codes[99991663]}\n"
        f"  duplicates: 0 runs, 0 messages; runs created {fake.created_runs} = "
        f"{len(reported)} reported + {orphan_runs} orphaned by a failed create; "
        f"messages {fake.created_messages} = {sent} sent + {orphan_messages} orphaned\n"
        f"  virtual time {loop.time() - started:.0f}s, wall time {wall:.1f}s"
    )
    assert ok_runs >= RUNS * 0.6
    assert ok_skills >= SKILLS * 0.6
    assert wall < 60
