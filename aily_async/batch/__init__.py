"""Batches: many skill calls or runs fanned out under the client's limiter, checkpointed.

::

    # all results, in input order
    results = await client.batch.skills(app_id, "skill_x", rows, concurrency=16)

    # or each result as it finishes
    async with client.batch.runs(app_id, questions, progress=True) as batch:
        async for result in batch:
            print(result.index, result.value.text if result.ok else result.error)

Every call goes through the client, so through its rate limiter and retry policy; at most
``concurrency`` items are worked on at once. An item that fails becomes a
:class:`BatchResult` with its ``error``: it never aborts the batch.

**Checkpoints.** With ``checkpoint="results.jsonl"`` each finished item is appended to that
file (flushed and fsync-ed) before it counts as done; a batch started again with the same file
skips the items done (they come back as results with ``resumed=True``) and works on the rest,
failed items included. A run batch also records each run as soon as it is created, so a batch
killed while runs were going adopts those runs when it restarts instead of creating new ones.
:meth:`BatchResult.to_record` gives the line a result is recorded as.

**Stopping.** When a batch is stopped early (its task cancelled, ``break`` out of the loop in an
``async with``, Ctrl-C in the CLI), items still waiting to send their call are cancelled at once
(nothing was sent, so nothing is lost), and items whose call is already underway get ``grace``
seconds to finish and be checkpointed. What is still going after that is cancelled, runs
server-side included. No task is left behind either way. An item can be done twice only when
its call was in the air as it was cut off (a process killed outright, or a skill call still
unanswered when ``grace`` ran out): nothing recorded that it was sent.

**Sessions of a run batch.** A session holds one active run at a time. ``session="fresh"``
(the default) opens a new session per item, since earlier messages of a session steer intent
matching; ``session="per_worker"`` gives each of the ``concurrency`` workers one session for
all its items (one conversation per worker). A worker hands a session to its next item only
after the run in it has ended; after any error the session is dropped, and an active run left
by a failure or a cancellation is cancelled server-side first.

The modules, lowest first (each imports only those before it): ``_checkpoint`` (the results
file), ``_progress`` (snapshots and the bar), ``_results`` (a result and its record),
``_inputs`` (input fields and keys), ``_items`` (an item and its worker), ``_stopping``
(cancellation that finishes), ``_engine`` (:class:`BatchRun`), ``_jobs`` (:class:`Batch`).
"""

from ._engine import BatchRun
from ._inputs import RUN_FIELDS, SKILL_FIELDS
from ._jobs import Batch, BatchClient
from ._progress import BatchProgress, ProgressBar
from ._results import BatchResult

__all__ = [
    "RUN_FIELDS",
    "SKILL_FIELDS",
    "Batch",
    "BatchClient",
    "BatchProgress",
    "BatchResult",
    "BatchRun",
    "ProgressBar",
]
