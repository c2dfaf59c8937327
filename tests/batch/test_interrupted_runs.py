"""A run batch interrupted off the happy path, then run again: each question gets one run.

Against a real FakeAily: the client closed mid-batch, the run endpoints failing for a while, and
the batch's process SIGKILLed while its ``runs.create`` calls are on the wire. The counts are
the server's own (``fake.created_runs``, ``fake.run_count``).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from _support import APP, last_records, make_client, runs_created
from _vloop import virtual_time

from aily_async import AilyClosedError, AilyServerError, PollPolicy
from aily_async.testing import FakeAily, RunPlan, RunRequest

SCRIPT = Path(__file__).with_name("run_batch_process.py")


def assert_one_run_per_question(fake: FakeAily, questions: int) -> None:
    """Exactly ``questions`` runs exist, one in each session that has any."""
    assert fake.created_runs == questions
    counts = [fake.run_count(sid) for sid in fake.session_ids()]
    assert sorted(c for c in counts if c) == [1] * questions


async def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``condition`` until it holds (within ``seconds`` of the loop's time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@virtual_time
async def test_closing_the_client_mid_batch_leaves_its_runs_adoptable(tmp_path: Path) -> None:
    """``client.close()`` while a checkpointed batch's runs are going fails those items, and
    the batch run again with a new client adopts the runs (still going) instead of making
    new ones: five runs for five questions.

    Fails without the fix: the failure record (AilyClosedError) replaced the item's pending
    record, so the rerun created a second run per question (10 runs).
    """
    path = tmp_path / "runs.jsonl"
    questions = [f"q{n}" for n in range(5)]
    five, hooks = runs_created(5)
    async with FakeAily(run_duration=30.0) as fake:
        client = make_client(fake, **hooks)
        batch = client.batch.runs(APP, questions, concurrency=5, checkpoint=path)
        task = asyncio.create_task(batch.collect())
        await five.wait()
        await client.close()
        first = await task
        assert all(isinstance(r.error, AilyClosedError) for r in first)
        assert all("run_id" in r["pending"] for r in last_records(path).values())

        async with make_client(fake) as again:
            results = await again.batch.runs(APP, questions, concurrency=5, checkpoint=path)
        assert [r.value.text for r in results if r.value] == [f"Echo: {q}" for q in questions]
        assert_one_run_per_question(fake, 5)


@virtual_time
async def test_per_worker_resume_tells_the_items_run_from_earlier_runs_of_its_session(
    tmp_path: Path,
) -> None:
    """The client closed while an item's ``runs.create`` is on the wire of a reused
    ``per_worker`` session leaves no run id, only the session and the item's message; the
    run lands afterwards. The rerun finds it among the session's runs (the first created at or
    after the item's message, not the earlier item's run) and adopts its answer.

    Fails without the fix: nothing recorded the item's session, so the rerun asked it again in
    a new session (4 runs for 3 questions).
    """
    path = tmp_path / "runs.jsonl"
    questions = ["q0", "q1", "q2"]
    async with FakeAily(run_duration=1.0) as fake:
        fake.inject("runs.create", status=None, times=1)  # q0's create: as usual
        fake.inject("runs.create", status=None, delay=5.0, times=1)  # q1's: held 5 s
        client = make_client(fake)
        task = asyncio.create_task(
            client.batch.runs(
                APP, questions, concurrency=1, session="per_worker", checkpoint=path
            ).collect()
        )
        await wait_for(lambda: fake.created_messages == 2, 60, "q1's message")
        await asyncio.sleep(1.0)  # q1's create is in the fake's delay
        await client.close()
        first = await task
        assert [r.ok for r in first] == [True, False, False]
        (session,) = fake.session_ids()
        await asyncio.sleep(5.0)  # q1's create lands: a second run in the session
        assert fake.run_count(session) == 2

        async with make_client(fake) as again:
            results = await again.batch.runs(
                APP, questions, concurrency=1, session="per_worker", checkpoint=path
            )
        assert [r.value.text for r in results if r.value] == ["Echo: q0", "Echo: q1", "Echo: q2"]
        assert [r.resumed for r in results] == [True, False, False]
        assert fake.created_runs == 3
        assert results[1].value is not None
        assert results[1].value.run.id == fake.runs_in(session)[1]["id"]


@virtual_time
async def test_a_run_that_could_not_be_cancelled_stays_adoptable(tmp_path: Path) -> None:
    """``runs.get`` and ``runs.cancel`` answering 503 for 8 s fail the items whose runs are
    going (their polls fail for longer than the poll policy's ``max_outage``, and so do the
    cancels); run again after that, the batch adopts those runs: one run per question.

    Fails without the fix: the failure record replaced the pending record of a run that could
    not be cancelled, so the rerun did not adopt it (10 runs for 5 questions).
    """
    path = tmp_path / "runs.jsonl"
    questions = [f"q{n}" for n in range(5)]
    five, hooks = runs_created(5)
    # Polls give up after 5 s of failures (the default tolerates 300 s).
    poll = PollPolicy(interval=0.02, backoff=2.0, max_interval=0.5, adaptive=False, max_outage=5)
    async with (
        FakeAily(run_duration=20.0) as fake,
        make_client(fake, poll=poll, **hooks) as client,
    ):
        task = asyncio.create_task(
            client.batch.runs(APP, questions, concurrency=5, checkpoint=path).collect()
        )
        await five.wait()
        fake.outage("runs.get", 8.0, status=503)
        fake.outage("runs.cancel", 8.0, status=503)
        first = await task
        assert all(isinstance(r.error, AilyServerError) for r in first)
        statuses = {run["status"] for sid in fake.session_ids() for run in fake.runs_in(sid)}
        assert statuses == {"IN_PROGRESS"}  # nothing could cancel them
        await asyncio.sleep(8.0)  # the outage ends

        results = await client.batch.runs(APP, questions, concurrency=5, checkpoint=path)
        assert all(r.ok for r in results)
        assert_one_run_per_question(fake, 5)


@virtual_time
async def test_a_completed_run_whose_answer_was_not_read_is_adopted(tmp_path: Path) -> None:
    """A run that completed but whose answer could not be read (``messages.list`` failing)
    fails its item, and the rerun adopts the run and reads its answer: no second run."""
    path = tmp_path / "runs.jsonl"
    async with FakeAily(run_duration=0.5) as fake, make_client(fake) as client:
        fake.inject("messages.list", status=500, times=4)  # every attempt of one call
        first = await client.batch.runs(APP, ["q0"], checkpoint=path)
        assert isinstance(first[0].error, AilyServerError)
        second = await client.batch.runs(APP, ["q0"], checkpoint=path)
        assert second[0].value is not None
        assert second[0].value.text == "Echo: q0"
        assert fake.created_runs == 1


@virtual_time
async def test_a_failed_run_is_asked_again_and_a_timed_out_one_once_cancelled(
    tmp_path: Path,
) -> None:
    """What is known ended with nothing to adopt is not adopted: a run that FAILED, and a run
    cancelled after its item's timeout, are asked again on a rerun (a new run each)."""
    path = tmp_path / "runs.jsonl"
    fail_once = {"q1": True}

    def script(request: RunRequest) -> RunPlan:
        message = request.last_user_message or ""
        if fail_once.pop(message, False):
            return RunPlan(queued=0.01, duration=0.1, outcome="FAILED")
        if message == "q2" and not fail_once.get("slow-done"):
            fail_once["slow-done"] = True
            return RunPlan(queued=0.01, duration=60.0)
        return RunPlan(queued=0.01, duration=0.1)

    async with FakeAily(run_script=script) as fake, make_client(fake) as client:
        questions = ["q0", "q1", "q2"]
        first = await client.batch.runs(APP, questions, checkpoint=path, timeout=5.0)
        assert [r.ok for r in first] == [True, False, False]
        assert "pending" not in last_records(path)[1]
        assert "pending" not in last_records(path)[2]
        second = await client.batch.runs(APP, questions, checkpoint=path, timeout=5.0)
        assert [r.ok for r in second] == [True, True, True]
        assert fake.created_runs == 5


@pytest.mark.parametrize("landed", [True, False], ids=["creates-landed", "creates-on-the-wire"])
async def test_sigkill_while_creates_are_on_the_wire_then_resume(
    tmp_path: Path, landed: bool
) -> None:
    """A batch process SIGKILLed while its five ``runs.create`` calls are on the wire (the
    fake holds each 1.5 s before handling it) is resumed in-process with the same checkpoint:
    every question gets exactly one run, counted server-side. With ``creates-landed`` the
    killed process's creates have landed before the resume, which finds them in their
    sessions and adopts them; with ``creates-on-the-wire`` they land during the resume, which
    creates the run itself in the item's session, and the session's one-active-run rule
    refuses the other of the two creates.

    Fails without the fix: nothing was recorded before a create went out, so the resume made
    ten new runs beside the five that landed (15 runs for 10 questions).
    """
    path = tmp_path / "runs.jsonl"
    questions = [f"question {n}" for n in range(10)]

    def script(request: RunRequest) -> RunPlan:
        # The five questions asked when the process is killed are slow: still going when a
        # second create of theirs would arrive. The others are quick.
        slow = int((request.last_user_message or "0").split()[-1]) < 5
        return RunPlan(queued=0.01, duration=3.0 if slow else 0.1)

    async with FakeAily(run_script=script) as fake:
        fake.inject("runs.create", status=None, delay=1.5, times=5)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), fake.url, str(path), "10", "5"
        )
        try:
            # Each of the first five items sends its message, then creates its run.
            await wait_for(lambda: fake.created_messages == 5, 60, "the first five messages")
            await asyncio.sleep(0.5)  # the creates are now in the fake's 1.5 s delay
            assert fake.created_runs == 0
        finally:
            proc.kill()  # SIGKILL: no cleanup of any kind
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert all("run_id" not in r["pending"] for r in last_records(path).values())
        if landed:
            await wait_for(lambda: fake.created_runs == 5, 10, "the killed creates to land")

        async with make_client(fake) as client:
            results = await client.batch.runs(APP, questions, concurrency=5, checkpoint=path)
        await asyncio.sleep(1.6)  # any create of the killed process is handled by now
        assert [r.value.text for r in results if r.value] == [f"Echo: {q}" for q in questions]
        assert_one_run_per_question(fake, 10)
        # On the wire, one of the two creates of each of the five items was refused.
        refused = [r for r in fake.requests if r.route == "runs.create" and r.status == 400]
        assert len(refused) == (0 if landed else 5)
