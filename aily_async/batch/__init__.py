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
failed items included. :meth:`BatchResult.to_record` gives the line a result is recorded as.

* *One file, one batch.* The file's first line names the batch it belongs to::

      {"checkpoint":"aily_async.batch","batch":{"kind":"runs","app_id":"spring_…__c",
       "skill_id":null,"biz_user_id":null}}

  (``kind`` is ``"skills.start"``, ``"runs"`` or ``"map"``; a skill batch names its app,
  skill and ``biz_user_id``, a map batch its function's ``name``). A batch given a file of
  another batch (another skill, app, kind...) stops at once with :class:`CheckpointError`
  naming both, and the file is left as it was: its results are never taken as this batch's,
  nor replaced. How a batch runs (``concurrency``, ``session``, ``timeout``, ``grace``) is no
  part of what it is. A file with records but no such line (written by a version before it
  existed) cannot say which batch it holds, so it is refused the same way; the error gives
  the line to put first if the file is this batch's. Readers of a results file skip the
  lines without a ``key``.
* *Read back whatever was written.* The file is bytes split at ``\\n`` only, each line
  decoded as UTF-8 on its own: text holding U+2028, U+2029 or U+0085 stays on its line, and a
  last line torn by a kill (even inside a character) is cut off, since it never counted.
* *A run is never made twice.* Before a run item creates its run, it records its session and
  the id and server time of the message it sent; once the run exists, its id too. A batch
  started again finds that run (by id, or as the first run of that session created at or
  after the message: server times only) and adopts it: still going, it is awaited; completed,
  its answer is read. Only a run that did not land is created, in the same session after the
  same message (if the dead batch's create lands meanwhile, the session's one-active-run rule
  refuses one of the two, and a refused create adopts the run that landed). An item that
  fails (the client closed, the service down, its run not cancellable) keeps this in its
  failure record as long as its run may still be going or holds an answer; only a run known
  to have ended otherwise (failed, cancelled after a timeout) is asked again.

**Stopping.** When a batch is stopped early (its task cancelled, ``break`` out of the loop in an
``async with``, Ctrl-C in the CLI), items still waiting to send their call are cancelled at once
(nothing was sent, so nothing is lost), and items whose call is already underway get ``grace``
seconds to finish and be checkpointed. What is still going after that is cancelled, runs
server-side included. No task is left behind either way. A skill call can be done twice only
when it was in the air as it was cut off (a process killed outright, or a call still unanswered
when ``grace`` ran out): nothing can look a skill call up. A run can be made twice only when
the create of a killed batch lands after the restarted batch's own run of that item has
already ended (the one-active-run rule cannot refuse it then).

**Sessions of a run batch.** A session holds one active run at a time. ``session="fresh"``
(the default) opens a new session per item, since earlier messages of a session steer intent
matching; ``session="per_worker"`` gives each of the ``concurrency`` workers one session for
all its items (one conversation per worker). A worker hands a session to its next item only
after the run in it has ended; after any error the session is dropped, and an active run left
by a failure or a cancellation is cancelled server-side first.

The modules, lowest first (each imports only those before it): ``_checkpoint`` (the results
file), ``_progress`` (snapshots and the bar), ``_results`` (a result and its record),
``_inputs`` (input fields and keys), ``_items`` (an item and its worker), ``_admission`` (an
input against the checkpoint), ``_stopping`` (cancellation that finishes), ``_run_items`` (a
run item, and adopting what an interrupted one left), ``_engine`` (:class:`BatchRun`),
``_jobs`` (:class:`Batch`).
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
