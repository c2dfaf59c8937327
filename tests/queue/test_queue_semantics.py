"""aily_async.queue, one rule at a time: the gate, the skill mark, adoption, outages, records.

The gate tests run on local buckets; the others run a worker in this process (arq's burst
mode: it stops once the queue is empty) on a real redis-server, against a FakeAily.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _queue_support import APP, FEISHU_APP, RedisServer, free_port

from aily_async import AilyClient, LimiterTimeout, Limits, QuotaFeedback, TokenBucket
from aily_async.batch import BatchResult
from aily_async.queue import (
    AilyQueue,
    Entry,
    QuotaDeferred,
    QuotaGate,
    WorkerOptions,
    close_worker,
    create_worker,
)
from aily_async.queue._gate import before_send
from aily_async.testing import FakeAily, RunPlan, SkillRequest

# -- the gate -----------------------------------------------------------------------------------


class Later:
    """A limiter whose next grant is ``after`` seconds away (a RateLimiter and LimiterState)."""

    waiting = 0
    interval = 1.0

    def __init__(self, after: float) -> None:
        self.after = after
        self.granted = 0

    async def acquire(self, timeout: float | None = None) -> None:
        if timeout is not None and timeout < self.after:
            raise LimiterTimeout("not in time", call="limiter")
        await asyncio.sleep(self.after)
        self.granted += 1

    async def pause(self, seconds: float) -> None:
        self.after = seconds

    def next_grant_in(self) -> float:
        return self.after

    def queue_wait(self) -> float:
        return self.after


class Set:
    def __init__(self, **limiters: Later) -> None:
        self.limiters = limiters

    def for_call(self, call: str) -> Later:
        return self.limiters[call.replace(".", "_")]


async def test_the_gate_defers_an_effect_call_beyond_its_hold_and_nothing_else() -> None:
    """An effect call whose grant is further than ``hold`` raises QuotaDeferred at once,
    consuming nothing, to come back a little before the grant; one within ``hold`` waits;
    other calls are not gated, and a call's own shorter deadline stays its own."""
    limits = Set(skills_start=Later(8.0), runs_create=Later(0.05), runs_get=Later(8.0))
    gate = QuotaGate(limits, hold=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(QuotaDeferred) as deferred:
        await gate.for_call("skills.start").acquire()
    assert loop.time() - start < 0.05
    assert deferred.value.call == "skills.start"
    assert 8.0 - 0.2 * 0.9 <= deferred.value.retry_in <= 8.0 - 0.2 * 0.2
    assert limits.limiters["skills_start"].granted == 0
    await gate.for_call("runs.create").acquire()
    assert limits.limiters["runs_create"].granted == 1
    assert gate.for_call("runs.get") is limits.limiters["runs_get"]
    with pytest.raises(LimiterTimeout):
        await gate.for_call("runs.create").acquire(timeout=0.01)
    await limits.limiters["skills_start"].pause(0.1)  # a 429's pause, shorter than the hold
    await gate.for_call("skills.start").acquire()


class Learning(TokenBucket):
    """A bucket that notes the 429s it is told of and the grants asked ahead of the queue."""

    __slots__ = ("firsts", "limits")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits: list[int | None] = []
        self.firsts = 0

    async def acquire(self, timeout: float | None = None, *, first: bool = False) -> None:
        self.firsts += first
        await super().acquire(timeout, first=first)

    async def pause(self, seconds: float, *, limit: int | None = None) -> None:
        self.limits.append(limit)
        await super().pause(seconds, limit=limit)


async def test_the_gate_passes_answers_on_to_a_learning_bucket() -> None:
    """Behind the gate a learning bucket still hears every answer: confirm() lets its ramp go
    on at once, a 429's limit reaches pause(), and a call retried after a 429 asks first."""
    inner = Learning(10, 60.0)  # ramping: the second grant waits for the first's answer
    gated = QuotaGate(Limits(factory=lambda call, windows: inner), hold=1.0)
    gate = gated.for_call("runs.create")
    assert isinstance(gate, QuotaFeedback)
    await gate.acquire()
    assert inner.next_grant_in() > 0.5
    gate.confirm()
    assert inner.next_grant_in() == 0.0
    await gate.acquire(first=True)
    assert inner.firsts == 1
    await gate.pause(0.0, limit=10)
    assert inner.limits == [10]


async def test_the_skill_mark_is_written_after_the_grant_and_before_the_request() -> None:
    """The gate awaits the job's before_send hook after the grant: the fake has not seen the
    skill call yet when the hook runs, and has seen it once the call returns."""
    seen: list[int] = []
    async with FakeAily() as fake:
        gate = QuotaGate(Limits(), hold=1.0)
        async with AilyClient(FEISHU_APP, "secret", base_url=fake.url, limiter=gate) as client:

            async def hook(call: str) -> None:
                assert call == "skills.start"
                seen.append(fake.route_counts()["skills.start"])

            token = before_send.set(hook)
            try:
                await client.skills.start(APP, "skill_echo", query="hi")
            finally:
                before_send.reset(token)
        assert seen == [0]
        assert fake.route_counts()["skills.start"] == 1


# -- a worker in this process -------------------------------------------------------------------


def options(redis_url: str, fake: FakeAily, **extra: Any) -> WorkerOptions:
    return WorkerOptions(
        redis=redis_url,
        app_id=FEISHU_APP,
        app_secret="secret",
        base_url=fake.url,
        default_quota=(100_000, 60.0),
        poll_delay=0.05,
        poll_interval=0.05,
        lease=2.0,
        name="local",
        **extra,
    )


async def drain(opts: WorkerOptions, timeout: float = 20.0) -> None:
    """Run a worker in this process until the queue is empty."""
    worker = create_worker(opts, burst=True, handle_signals=False)
    try:
        await asyncio.wait_for(worker.async_run(), timeout)
    finally:
        await close_worker(worker)


@contextlib.asynccontextmanager
async def queue_of(redis_url: str) -> AsyncIterator[AilyQueue]:
    async with AilyQueue(redis_url) as queue:
        yield queue


async def test_a_skill_call_that_may_be_in_the_air_is_not_sent_again(
    redis_server: RedisServer,
) -> None:
    """A skill item whose entry says its call may be in the air (a worker died after the
    grant) fails with SkillOutcomeUnknown and sends nothing; enqueued again, it is sent once.
    Done items are not enqueued again at all."""
    calls: Counter[str] = Counter()

    def skill(request: SkillRequest) -> str:
        calls[str(request.query)] += 1
        return json.dumps({"echo": request.query})

    async with FakeAily(skill_handler=skill) as fake, queue_of(redis_server.url) as queue:
        store = await queue.store("marks")
        await store.claim(
            {"kind": "skills.start", "app_id": APP, "skill_id": "skill_echo", "biz_user_id": None}
        )
        record = {"key": 1, "index": 1, "input": "b"}
        await store.put("1", Entry("an-earlier-job", "sending", record))
        batch = await queue.skills(APP, "skill_echo", ["a", "b"], name="marks")
        assert batch.enqueued == 2
        await drain(options(redis_server.url, fake))
        first = await batch
        assert first[0].ok
        assert not first[1].ok
        assert first[1].error is not None
        assert "SkillOutcomeUnknown" in str(first[1].error)
        assert calls == {"a": 1}

        again = await queue.skills(APP, "skill_echo", ["a", "b"], name="marks")
        assert again.enqueued == 1  # the failed one; the done one is resumed
        await drain(options(redis_server.url, fake))
        second = await again
        assert [r.ok for r in second] == [True, True]
        assert second[0].resumed
        assert not second[1].resumed
        assert calls == {"a": 1, "b": 1}


async def test_a_run_item_adopts_the_run_its_record_keeps(redis_server: RedisServer) -> None:
    """A run item whose pending record names its session and message (the worker died
    with the create on the wire, and the run landed) adopts that run: one run in all."""
    async with (
        FakeAily(run_script=RunPlan(duration=0.3)) as fake,
        queue_of(redis_server.url) as queue,
    ):
        async with AilyClient(FEISHU_APP, "secret", base_url=fake.url) as client:
            session = await client.sessions.create()
            message = await client.messages.create(session.id, "what changed?")
            await client.runs.create(session.id, app_id=APP)
        store = await queue.store("adopt")
        await store.claim({"kind": "runs", "app_id": APP, "skill_id": None, "biz_user_id": None})
        pending = {
            "session_id": session.id,
            "message_id": message.id,
            "message_created_at": message.created_at,
        }
        record = {"key": 0, "index": 0, "input": "what changed?", "pending": pending}
        await store.put("0", Entry("an-earlier-job", "pending", record))
        batch = await queue.runs(APP, ["what changed?"], name="adopt")
        await drain(options(redis_server.url, fake))
        [result] = await batch
        assert result.ok, result.error
        assert result.value is not None
        assert result.value.run.session_id == session.id
        assert fake.created_runs == 1
        assert fake.created_sessions == 1


async def test_a_limiter_outage_defers_failing_closed_then_the_item_goes_through(
    redis_server: RedisServer,
) -> None:
    """With the quotas' Redis down and on_failure="closed", a skill item sends nothing and
    steps aside (it does not fail); once that Redis is up, the item is done, once."""
    limits = RedisServer(redis_server.binary)  # not started yet: its port refuses
    async with FakeAily() as fake, queue_of(redis_server.url) as queue:
        batch = await queue.skills(APP, "skill_echo", ["x"], name="outage")
        opts = options(redis_server.url, fake, limits_redis=limits.url, outage_retry=0.3)
        drained = asyncio.create_task(drain(opts))
        events = await queue.store("outage")
        await asyncio.sleep(1.5)
        assert fake.route_counts()["skills.start"] == 0
        kinds = [e.kind for e in await events.events("0-0", block=0.01)]
        assert "deferred" in kinds
        assert "done" not in kinds
        limits.start()
        try:
            await drained
        finally:
            limits.kill()
        [result] = await batch
        assert result.ok, result.error
        assert fake.route_counts()["skills.start"] == 1


async def test_records_export_as_a_checkpoint_of_the_same_batch(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A queued batch's records read back as client.batch's checkpoint: header first, one
    record per key; a bad or duplicate key fails at once and is never enqueued; a name of
    another batch is refused."""
    async with FakeAily() as fake, queue_of(redis_server.url) as queue:
        rows = [{"id": "a", "query": "1"}, {"id": "b", "query": "2"}, {"id": "a", "query": "3"}]
        batch = await queue.skills(APP, "skill_echo", rows, name="export", key="id")
        assert (batch.total, batch.enqueued) == (3, 2)
        await drain(options(redis_server.url, fake))
        results: list[BatchResult[Any]] = await batch
        assert [r.ok for r in results] == [True, True, False]
        assert "duplicate key" in str(results[2].error)
        path = tmp_path / "export.jsonl"
        assert await queue.export("export", str(path)) == 2
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert lines[0]["batch"] == {
            "kind": "skills.start",
            "app_id": APP,
            "skill_id": "skill_echo",
            "biz_user_id": None,
        }
        assert [(line["key"], line["ok"]) for line in lines[1:]] == [("a", True), ("b", True)]
        assert lines[1]["input"] == {"id": "a", "query": "1"}
        with pytest.raises(Exception, match="belongs to another batch"):
            await queue.skills(APP, "skill_0001", rows, name="export", key="id")
    assert free_port()  # the helper stays importable for other tests
