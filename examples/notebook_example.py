"""aily-async in a notebook, cell by cell.

In Jupyter (or IPython), top-level ``await`` works: paste the body of each ``# %%`` cell below
into its own cell, with your own credentials instead of the fake server. The client opens its
connection pool lazily, on the first call, inside the notebook's running loop, so creating it
in one cell and awaiting it in the next is fine.

Run as a script, this file starts a local FakeAily and runs the same cells in order::

    python examples/notebook_example.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from aily_async import AilyClient, PollPolicy
from aily_async.testing import FakeAily

APP = "spring_notebook_demo__c"  # your Aily app id (spring_…__c)


async def main() -> None:
    async with FakeAily(run_duration=0.3) as fake:
        # %% 1. A client: in a notebook, with FEISHU_APP_ID / FEISHU_APP_SECRET set,
        #       simply `client = AilyClient()`. Nothing connects yet. (The fake enforces no quota,
        #       so this script turns the client's limiter off; against Aily keep the default.)
        client = AilyClient(
            "cli_demo", "secret", base_url=fake.url, limiter=None, poll=PollPolicy(interval=0.2)
        )
        print(client)  # <AilyClient http://127.0.0.1:… unopened app_id='cli_demo'>

        # %% 2. One question, the whole round trip: message -> run -> answer.
        answer = await client.runs.run("What changed last week?", app_id=APP)
        print(answer.run)  # Run(id='run_…', status=COMPLETED, duration=0.350s)
        print(answer.text)

        # %% 3. A run you follow yourself: the handle's repr shows its live state.
        session = await client.sessions.create()
        await client.messages.create(session.id, "Summarise my inbox")
        handle = await client.runs.create(session.id, app_id=APP)
        print(handle)  # <RunHandle run_… QUEUED age=0.0s polls=0 idle waiters=0>
        run = await handle  # the final Run
        print(handle, run.duration)  # <RunHandle run_… COMPLETED age=0.6s polls=2 idle waiters=0>

        # %% 4. A batch of skill calls: all results, in input order. In a notebook,
        #       progress=True redraws one line in place.
        rows = [{"input": {"row": n, "text": f"review {n}"}} for n in range(50)]
        results = await client.batch.skills(APP, "skill_echo", rows, concurrency=8, progress=True)
        print(results[0])  # <BatchResult #0 ok SkillResult(output='{"skill_id": …') 0.01s>
        print(sum(r.ok for r in results), "of", len(results), "ok")

        # %% 5. A batch of questions, each answer as soon as it is ready, checkpointed: run the
        #       cell again (or after a crash) and only what is missing is asked again.
        checkpoint = Path(tempfile.mkdtemp()) / "answers.jsonl"
        questions = [f"Question {n}: any risks in project {n}?" for n in range(20)]
        async with client.batch.runs(APP, questions, checkpoint=checkpoint) as batch:
            async for result in batch:
                if result.ok and result.value is not None:
                    print(result.index, result.value.text)
                else:
                    print(result.index, "failed:", result.error)
        print(batch.progress)  # runs: 20/20 done, 0 in flight, 14.2/s, took 0:01
        again = await client.batch.runs(APP, questions, checkpoint=checkpoint)
        print(sum(r.resumed for r in again), "answers read back from", checkpoint.name)

        # %% 6. What it cost, then close (or keep the client for the whole notebook).
        print(client.stats)
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
