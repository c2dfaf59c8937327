"""A checkpointed run batch in a process of its own, for tests that SIGKILL it midway.

    python run_batch_process.py URL CHECKPOINT COUNT CONCURRENCY

asks the app of the FakeAily at URL the questions ``question 0`` ... ``question COUNT-1``
(``session="fresh"``), checkpointed to CHECKPOINT, and prints ``done`` when the batch ends.
"""

from __future__ import annotations

import asyncio
import sys

from aily_async import AilyClient, PollPolicy, RetryPolicy

APP = "spring_449d72db2f__c"


async def main(url: str, checkpoint: str, count: int, concurrency: int) -> None:
    async with AilyClient(
        "cli_test",
        "test-secret",
        base_url=url,
        retry=RetryPolicy.no_wait(),
        limiter=None,
        poll=PollPolicy(interval=0.05, backoff=2.0, max_interval=0.5, adaptive=False),
    ) as client:
        questions = [f"question {n}" for n in range(count)]
        await client.batch.runs(APP, questions, concurrency=concurrency, checkpoint=checkpoint)
    print("done", flush=True)


if __name__ == "__main__":
    url, checkpoint, count, concurrency = sys.argv[1:5]
    asyncio.run(main(url, checkpoint, int(count), int(concurrency)))
