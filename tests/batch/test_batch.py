"""The batch API against a real FakeAily: accounting, order, concurrency, checkpoints, sessions."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _support import APP, make_client, runs_created
from _vloop import virtual_time

from aily_async import (
    AilyClient,
    AilyInvalidParamsError,
    BatchProgress,
    BatchResult,
    CheckpointError,
    RunFailedError,
    SkillResult,
)
from aily_async.testing import FakeAily, Faults, RunPlan, RunRequest, SkillRequest

SKILL = "skill_echo"


def records(path: Path) -> list[dict[str, Any]]:
    """The item records of a checkpoint file (its header line left out), split at ``\n``."""
    lines = [json.loads(line) for line in path.read_bytes().split(b"\n") if line.strip()]
    assert lines, "an empty checkpoint"
    assert "batch" in lines[0], "no header line"
    assert "key" not in lines[0], "no header line"
    return lines[1:]


def query_of(request: SkillRequest) -> str:
    return request.query or ""


def batch_tasks() -> list[asyncio.Task[Any]]:
    """Tasks of the batch machinery (workers, run cancellers, run pollers) still alive."""
    names = ("BatchRun.", "cancel_run", "RunHandle.")
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and any(n in task.get_coro().__qualname__ for n in names)  # type: ignore[union-attr]
    ]


class Tracker:
    """A skill handler that counts starts per query and the most calls in progress at once."""

    def __init__(self, delay: float = 0.01, delays: dict[str, float] | None = None) -> None:
        self.delay = delay
        self.delays = delays or {}
        self.starts: Counter[str] = Counter()
        self.active = 0
        self.max_active = 0

    async def __call__(self, request: SkillRequest) -> str:
        query = query_of(request)
        self.starts[query] += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.delays.get(query, self.delay))
        finally:
            self.active -= 1
        return json.dumps({"echo": query, "input": request.input})


async def test_every_item_is_accounted_for_under_injected_server_errors() -> None:
    """With random 5xx on skills.start, every input gets exactly one result: a value or an
    error, never both, and the failures are exactly the faulted calls."""
    faults = Faults(error_rate=0.25, seed=11, routes={"skills.start"})
    async with FakeAily(faults=faults) as fake, make_client(fake) as client:
        inputs = [f"q{n}" for n in range(60)]
        results = await client.batch.skills(APP, SKILL, inputs, concurrency=8)

        assert [r.index for r in results] == list(range(60))
        assert all((r.value is None) != (r.error is None) for r in results)
        faulted = [r for r in fake.requests if r.route == "skills.start" and r.fault == "error"]
        failed = [r for r in results if not r.ok]
        assert 0 < len(failed) == len(faulted)
        for result in results:
            if result.ok:
                assert isinstance(result.value, SkillResult)
                assert result.value.json()["query"] == inputs[result.index]


async def test_awaiting_returns_input_order_and_ordered_iteration_keeps_it() -> None:
    """``await batch`` and ``ordered=True`` give input order even when the first item is the
    slowest; plain iteration yields results as they finish."""
    tracker = Tracker(delay=0.005, delays={"q0": 0.15})
    async with FakeAily(skill_handler=tracker) as fake, make_client(fake) as client:
        inputs = [f"q{n}" for n in range(12)]

        results = await client.batch.skills(APP, SKILL, inputs, concurrency=4)
        assert [r.value.json()["echo"] for r in results if r.value] == inputs

        async with client.batch.skills(APP, SKILL, inputs, concurrency=4, ordered=True) as batch:
            ordered = [r.index async for r in batch]
        assert ordered == list(range(12))

        async with client.batch.skills(APP, SKILL, inputs, concurrency=4) as batch:
            finished = [r.index async for r in batch]
        assert sorted(finished) == list(range(12))
        assert finished[0] != 0  # q0 is the slowest: it does not come first


async def test_concurrency_bound_is_respected_and_used() -> None:
    """No more than ``concurrency`` skill calls are ever in progress at the server at once,
    and the batch does use that many."""
    tracker = Tracker(delay=0.03)
    async with FakeAily(skill_handler=tracker) as fake, make_client(fake) as client:
        results = await client.batch.skills(APP, SKILL, [f"q{n}" for n in range(30)], concurrency=5)
    assert all(r.ok for r in results)
    assert tracker.max_active == 5


async def test_async_iterable_of_strings_and_dicts() -> None:
    """An async iterable of query strings and dicts of start() arguments works, and unknown
    fields fail only their own item."""

    async def inputs() -> AsyncIterator[Any]:
        yield "plain query"
        yield {"query": "with input", "input": {"row": 1}}
        yield {"qurey": "typo"}
        await asyncio.sleep(0)
        yield {"input": {"row": 2}, "variables": {"lang": "en"}}

    async with FakeAily() as fake, make_client(fake) as client:
        results = await client.batch.skills(APP, SKILL, inputs(), concurrency=2)
    assert [r.ok for r in results] == [True, True, False, True]
    assert results[1].value is not None
    assert results[1].value.json()["input"] == {"row": 1}
    assert "qurey" in str(results[2].error)
    assert results[3].value is not None
    assert results[3].value.json()["variables"] == {"lang": "en"}


async def test_interrupted_checkpointed_batch_finishes_each_item_exactly_once(
    tmp_path: Path,
) -> None:
    """A checkpointed batch cancelled midway leaves no task behind, and started again skips
    what is done: every item's skill is started exactly once and the file ends compacted."""
    path = tmp_path / "results.jsonl"
    tracker = Tracker(delay=0.02)
    inputs = [f"q{n}" for n in range(40)]
    async with FakeAily(skill_handler=tracker) as fake, make_client(fake) as client:
        seen: list[BatchResult[SkillResult]] = []
        ten_done = asyncio.Event()

        async def consume() -> None:
            async with client.batch.skills(
                APP, SKILL, inputs, concurrency=4, checkpoint=path
            ) as batch:
                async for result in batch:
                    seen.append(result)
                    if len(seen) == 10:
                        ten_done.set()

        task = asyncio.create_task(consume())
        await ten_done.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert batch_tasks() == []
        done_before = len(records(path))
        assert 10 <= done_before < 40
        assert sum(tracker.starts.values()) == done_before  # calls underway were finished

        results = await client.batch.skills(APP, SKILL, inputs, concurrency=4, checkpoint=path)

    assert [r.ok for r in results] == [True] * 40
    assert sum(r.resumed for r in results) == done_before
    assert tracker.starts == Counter(inputs)  # each exactly once
    assert [r.value.json()["echo"] for r in results if r.value] == inputs
    lines = records(path)
    assert [line["key"] for line in lines] == list(range(40))


async def test_failed_items_are_redone_on_restart_and_done_items_are_not(tmp_path: Path) -> None:
    """Items that failed are recorded as failed and done again when the batch restarts; the
    rest come back from the checkpoint without a call."""
    path = tmp_path / "results.jsonl"
    tracker = Tracker(delay=0.0)
    inputs = [f"q{n}" for n in range(10)]
    async with FakeAily(skill_handler=tracker) as fake, make_client(fake) as client:
        fake.inject("skills.start", status=400, times=3)
        first = await client.batch.skills(APP, SKILL, inputs, concurrency=1, checkpoint=path)
        assert [r.ok for r in first] == [False] * 3 + [True] * 7
        assert isinstance(first[0].error, AilyInvalidParamsError)
        calls = fake.route_counts()["skills.start"]

        second = await client.batch.skills(APP, SKILL, inputs, concurrency=1, checkpoint=path)
        assert [r.ok for r in second] == [True] * 10
        assert [r.resumed for r in second] == [False] * 3 + [True] * 7
        assert fake.route_counts()["skills.start"] == calls + 3


async def test_torn_last_line_is_dropped_and_a_locked_checkpoint_is_refused(
    tmp_path: Path,
) -> None:
    """A line torn by a kill is cut off on restart, and a second batch cannot use a file
    another running batch holds."""
    path = tmp_path / "results.jsonl"
    async with FakeAily() as fake, make_client(fake) as client:
        await client.batch.skills(APP, SKILL, ["a", "b"], checkpoint=path)
        with path.open("a") as file:
            file.write('{"key": 2, "index": 2, "ok": tr')
        results = await client.batch.skills(APP, SKILL, ["a", "b", "c"], checkpoint=path)
        assert [r.resumed for r in results] == [True, True, False]
        assert all(r.ok for r in results)
        assert len(records(path)) == 3

        async with client.batch.skills(APP, SKILL, ["a", "b", "c", "d"], checkpoint=path) as one:
            iterator = aiter(one)
            await anext(iterator)  # the first batch holds the file now
            with pytest.raises(CheckpointError, match="in use"):
                await client.batch.skills(APP, SKILL, ["a"], checkpoint=path)


async def test_reordered_inputs_under_index_keys_are_refused_per_item(tmp_path: Path) -> None:
    """An input that differs from what the checkpoint holds under its key fails that item
    with CheckpointError instead of returning another input's result."""
    path = tmp_path / "results.jsonl"
    async with FakeAily() as fake, make_client(fake) as client:
        await client.batch.skills(APP, SKILL, ["a", "b"], checkpoint=path)
        results = await client.batch.skills(APP, SKILL, ["b", "a", "c"], checkpoint=path)
    assert [type(r.error).__name__ if r.error else "ok" for r in results] == [
        "CheckpointError",
        "CheckpointError",
        "ok",
    ]


async def test_key_field_duplicates_and_bad_keys_fail_only_their_item(tmp_path: Path) -> None:
    """``key="id"`` keys items by that field and does not send it; a duplicate or missing key
    fails that item only."""
    inputs: list[Any] = [
        {"id": "a", "query": "first"},
        {"id": "b", "query": "second"},
        {"id": "a", "query": "again"},
        {"query": "no id"},
    ]
    async with FakeAily() as fake, make_client(fake) as client:
        results = await client.batch.skills(
            APP, SKILL, inputs, key="id", checkpoint=tmp_path / "r.jsonl"
        )
        sent = [r.json for r in fake.requests if r.route == "skills.start"]
    assert [r.ok for r in results] == [True, True, False, False]
    assert [r.key for r in results[:3]] == ["a", "b", "a"]
    assert "duplicate key" in str(results[2].error)
    assert all("id" not in body for body in sent)


async def test_an_input_iterator_that_raises_stops_the_batch() -> None:
    """An error raised by the inputs themselves is not an item failure: the batch stops, its
    tasks end, and the error reaches the caller."""

    def inputs() -> Any:
        yield "one"
        yield "two"
        raise OSError("the input file went away")

    async with FakeAily() as fake, make_client(fake) as client:
        with pytest.raises(OSError, match="went away"):
            await client.batch.skills(APP, SKILL, inputs(), concurrency=2)
    assert batch_tasks() == []


async def test_break_out_of_async_with_stops_quickly_and_leaves_no_tasks() -> None:
    """Leaving the ``async with`` after a few results stops the batch: it takes no more inputs
    and no task survives."""
    tracker = Tracker(delay=0.01)
    async with FakeAily(skill_handler=tracker) as fake, make_client(fake) as client:
        async with client.batch.skills(
            APP, SKILL, [f"q{n}" for n in range(100)], concurrency=3
        ) as batch:
            async for result in batch:
                if result.index >= 2:
                    break
        assert batch_tasks() == []
        assert sum(tracker.starts.values()) <= 3 + 3 + 3


async def test_progress_callback_snapshots_and_reprs() -> None:
    """The progress callback sees counts grow to the total, and results, snapshots and the
    batch have readable reprs."""
    snapshots: list[BatchProgress] = []
    async with FakeAily() as fake, make_client(fake) as client:
        fake.inject("skills.start", status=400, times=1)
        batch = client.batch.skills(APP, SKILL, ["a", "b", "c"], progress=snapshots.append)
        assert "not started" in repr(batch)
        results = await batch
    assert [s.done for s in snapshots[:3]] == [1, 2, 3]
    last = snapshots[-1]
    assert last.finished
    assert (last.total, last.succeeded, last.failed, last.in_flight) == (3, 2, 1, 0)
    assert "3/3 done, 1 failed" in repr(last)
    assert "finished" in repr(batch)
    assert repr(results[0]).startswith("<BatchResult #0 error AilyInvalidParamsError")
    assert repr(results[1]).startswith("<BatchResult #1 ok SkillResult(")


@virtual_time
async def test_a_batch_at_the_documented_quota_gets_no_429() -> None:
    """250 skill calls through the client's default limiter against the documented strict
    100-per-minute window get no 429 and keep the quota busy (virtual time)."""
    loop = asyncio.get_running_loop()
    waits: list[float] = []
    async with (
        FakeAily(rate_limits=True) as fake,
        AilyClient("cli_test", "test-secret", base_url=fake.url) as client,
    ):
        start = loop.time()
        results = await client.batch.skills(
            APP,
            SKILL,
            [f"q{n}" for n in range(250)],
            concurrency=20,
            progress=lambda p: waits.append(p.limiter_wait),
        )
        took = loop.time() - start
    assert all(r.ok for r in results)
    assert sum(fake.rate_limited.values()) == 0
    assert client.stats.rate_limited == 0
    assert 120 < took < 160  # 248 paced grants at ~0.61 s: the quota is used, not wasted
    assert max(waits) > 1.0  # the progress shows the limiter wait


def run_plan(failing: str = "", slow: str = "", duration: float = 0.05) -> Any:
    """A run script: messages containing ``failing`` fail, containing ``slow`` take 60 s."""

    def script(request: RunRequest) -> RunPlan:
        message = request.last_user_message or ""
        if failing and failing in message:
            return RunPlan(queued=0.01, duration=duration, outcome="FAILED")
        if slow and slow in message:
            return RunPlan(queued=0.01, duration=60.0)
        return RunPlan(queued=0.01, duration=duration)

    return script


def assert_one_active_run_per_session(fake: FakeAily) -> None:
    """In every session, each run was created only after the one before it had ended."""
    for session_id in fake.session_ids():
        runs = fake.runs_in(session_id)
        for before, after in itertools.pairwise(runs):
            assert before["status"] not in ("QUEUED", "IN_PROGRESS", "REQUIRES_MESSAGE")
            assert int(before["ended_at"]) <= int(after["created_at"])


async def test_run_batch_fresh_sessions_one_run_each() -> None:
    """A run batch gives each message its own new session and run; a failed run fails only its
    item, with RunFailedError carrying the run."""
    async with FakeAily(run_script=run_plan(failing="#3")) as fake, make_client(fake) as client:
        results = await client.batch.runs(APP, [f"question #{n}" for n in range(8)], concurrency=4)
        assert [r.ok for r in results] == [True] * 3 + [False] + [True] * 4
        assert results[0].value is not None
        assert results[0].value.text == "Echo: question #0"
        error = results[3].error
        assert isinstance(error, RunFailedError)
        assert error.result.run.status.value == "FAILED"
        assert len(fake.session_ids()) == 8
        assert all(fake.run_count(s) == 1 for s in fake.session_ids())


@virtual_time
async def test_per_worker_sessions_never_hold_two_active_runs() -> None:
    """With one session per worker, failures of every kind (a run that fails, runs over their
    timeout, one of which cannot be cancelled, a refused create, a broken poll) never give a
    session a second active run: a session is reused only after its run ended."""
    script = run_plan(failing="fail", slow="slow", duration=0.5)
    async with FakeAily(run_script=script) as fake, make_client(fake) as client:
        fake.inject("runs.create", status=400, times=1)  # the first item's create is refused
        fake.inject("runs.get", status=500, times=2)  # retried by the client
        fake.inject("runs.cancel", status=500, times=4)  # the first timed-out run stays active
        marks = {3: "fail", 10: "fail", 17: "fail", 24: "fail", 4: "slow", 13: "slow", 22: "slow"}
        messages = [f"m{n} {marks.get(n, '')}" for n in range(30)]
        results = await client.batch.runs(
            APP, messages, concurrency=3, session="per_worker", timeout=5.0
        )
        assert len(results) == 30
        kinds = Counter(type(r.error).__name__ for r in results if r.error)
        assert kinds == {"RunFailedError": 4, "RunWaitTimeout": 3, "AilyInvalidParamsError": 1}
        assert isinstance(results[0].error, AilyInvalidParamsError)
        assert_one_active_run_per_session(fake)
        # Slow runs were cancelled server-side when their item timed out.
        statuses = Counter(run["status"] for sid in fake.session_ids() for run in fake.runs_in(sid))
        assert statuses == {"COMPLETED": 22, "FAILED": 4, "CANCELLED": 2, "IN_PROGRESS": 1}
        # Three workers, plus at most a new session after each of the 4 errors that drop one
        # (a run that ended FAILED leaves its session usable).
        assert 3 <= len(fake.session_ids()) <= 3 + 4


@virtual_time
async def test_cancelling_a_run_batch_cancels_its_runs_and_leaves_no_tasks() -> None:
    """Cancelling a run batch whose runs outlast the grace period cancels those runs
    server-side, leaves none active and no task behind."""
    loop = asyncio.get_running_loop()
    three, hooks = runs_created(3)
    async with FakeAily(run_duration=600.0) as fake, make_client(fake, **hooks) as client:
        task = asyncio.create_task(
            client.batch.runs(APP, [f"q{n}" for n in range(9)], concurrency=3, grace=2.0).collect()
        )
        await three.wait()
        start = loop.time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert 2.0 <= loop.time() - start < 10.0  # the grace, then the cancels
        assert batch_tasks() == []
        runs = [run for sid in fake.session_ids() for run in fake.runs_in(sid)]
        assert len(runs) == 3
        assert {run["status"] for run in runs} == {"CANCELLED"}


@virtual_time
async def test_cancelling_while_runs_create_is_on_the_wire_cancels_the_run_it_made() -> None:
    """A run batch cancelled (no grace) while its runs.create requests are on the wire waits
    for their answers and cancels the runs they made: none is left going server-side."""
    async with FakeAily(run_duration=600.0) as fake, make_client(fake) as client:
        fake.inject("runs.create", status=None, delay=5.0, times=3)
        task = asyncio.create_task(
            client.batch.runs(APP, [f"q{n}" for n in range(3)], concurrency=3, grace=0).collect()
        )
        await asyncio.sleep(2.0)  # the three creates are now in the fake's 5 s delay
        assert len([r for r in fake.requests if r.route == "messages.create"]) == 3
        assert fake.created_runs == 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert batch_tasks() == []
        await asyncio.sleep(10.0)  # the server finishes every create it received
        runs = [run for sid in fake.session_ids() for run in fake.runs_in(sid)]
        assert len(runs) == 3
        assert {run["status"] for run in runs} == {"CANCELLED"}, "a run was left going"


@virtual_time
async def test_restarted_run_batch_adopts_runs_a_killed_batch_left(tmp_path: Path) -> None:
    """A run batch that died without cancelling its runs (here: the cancel calls fail) left
    them in the checkpoint; the restarted batch waits for those runs instead of creating new
    ones, so each item's run is created exactly once."""
    path = tmp_path / "runs.jsonl"
    three, hooks = runs_created(3)
    async with FakeAily(run_duration=30.0) as fake, make_client(fake, **hooks) as client:
        messages = [f"q{n}" for n in range(6)]
        task = asyncio.create_task(
            client.batch.runs(APP, messages, concurrency=3, grace=0, checkpoint=path).collect()
        )
        await three.wait()
        fake.inject("runs.cancel", status=500, times=100)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        last = {line["key"]: line for line in records(path)}  # the last line of a key wins
        assert len(last) == 3
        assert all("run_id" in line["pending"] for line in last.values())

        results = await client.batch.runs(APP, messages, concurrency=3, checkpoint=path)
        assert [r.ok for r in results] == [True] * 6
        assert [r.value.text for r in results if r.value] == [f"Echo: {m}" for m in messages]
        assert fake.created_runs == 6
        assert_one_active_run_per_session(fake)


async def test_map_checkpoints_json_values(tmp_path: Path) -> None:
    """``batch.map`` runs any coroutine per input and resumes its JSON values from the
    checkpoint."""
    calls: list[int] = []

    async def square(n: int) -> dict[str, int]:
        calls.append(n)
        await asyncio.sleep(random.uniform(0, 0.005))
        if n == 3:
            raise ValueError("three is unlucky")
        return {"n": n, "square": n * n}

    async with FakeAily() as fake, make_client(fake) as client:
        first = await client.batch.map(square, range(6), checkpoint=tmp_path / "m.jsonl")
        second = await client.batch.map(square, range(6), checkpoint=tmp_path / "m.jsonl")
    assert [r.ok for r in first] == [True, True, True, False, True, True]
    assert [r.value for r in second] == [{"n": n, "square": n * n} for n in (0, 1, 2)] + [
        None,
        {"n": 4, "square": 16},
        {"n": 5, "square": 25},
    ]
    assert sorted(calls) == [0, 1, 2, 3, 3, 4, 5]


def test_client_made_outside_the_loop_works_like_a_notebook() -> None:
    """A client built where no loop runs (a notebook cell) opens lazily and serves batches
    awaited in later cells on the same loop."""
    loop = asyncio.new_event_loop()
    try:
        fake = FakeAily()
        loop.run_until_complete(fake.start())
        client = make_client(fake)  # no running loop here
        assert "unopened" in repr(client)
        first = loop.run_until_complete(client.batch.skills(APP, SKILL, ["a", "b"]).collect())
        second = loop.run_until_complete(client.batch.runs(APP, ["hello"]).collect())
        assert [r.ok for r in first + second] == [True, True, True]
        loop.run_until_complete(client.close())
        loop.run_until_complete(fake.close())
    finally:
        loop.close()
