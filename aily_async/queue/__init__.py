"""One batch across many machines: items as jobs of an arq queue, exactly once, one quota.

``client.batch`` does a batch in one process. When one process is not enough, enqueue the
batch on Redis and run workers wherever you like (``pip install 'aily-async[queue]'``)::

    from aily_async.queue import AilyQueue

    async with AilyQueue("redis://redis:6379/0") as queue:
        batch = await queue.skills(APP, "skill_classify", rows, name="tickets-06-01", key="id")
        async for result in batch.results(progress=True, out="results.jsonl"):
            print(result.key, result.value if result.ok else result.error)

    # on each machine, as many as you like (FEISHU_APP_ID / FEISHU_APP_SECRET set):
    #   aily worker --redis redis://redis:6379/0

The queue is `arq <https://arq-docs.helpmanual.io/>`_ (asyncio-native, Redis-backed); this
package brings what it lacks:

* **Exactly once per item.** An item is a job whose id is its key in the batch (the key
  rule of ``client.batch``), so an item enqueued twice is one job, and an item already done
  is not enqueued at all. A job keeps its item's record in Redis, the record a checkpoint
  would hold: a run item writes its session and message there before ``runs.create`` is sent
  and its run once created, so the job run again after its worker was killed adopts the run
  instead of making a second; a skill item notes that its call may be in the air right before
  it leaves, and a job that finds that note does not send the call again (the library's rule
  for writes that may have landed: the item fails with :class:`SkillOutcomeUnknown`).
* **Quota, not worker slots.** Each worker holds one :class:`~aily_async.AilyClient` for its
  life whose limiter is the app's quota in the same Redis
  (:class:`~aily_async.redis.RedisLimits`, shared by every worker). A job waits for a grant
  of its effect call at most ``hold`` seconds in its slot; beyond, or after a 429 paused the
  shared bucket, it gives the slot back to the queue until the grant is near (arq's
  ``Retry(defer=...)``). A limiter outage follows ``RedisLimits``' ``on_failure``: failing
  closed, nothing is sent and the job comes back later.
* **Leases.** The jobs of a killed worker go to another worker within ``lease`` seconds.
* **Results where you enqueued.** :class:`QueuedBatch` yields each item's
  :class:`~aily_async.batch.BatchResult` as it finishes, with progress, and can append each
  record to a JSON Lines file exactly as ``client.batch`` writes its checkpoint.

The modules, lowest first: ``_store`` (the batch's keys in Redis), ``_gate`` (quota without
slots), ``_lease`` (leases of running jobs), ``_job`` (one item on a worker), ``_worker``
(a worker's settings, client and shutdown), ``_collect`` (results as they finish),
``_enqueue`` (:class:`AilyQueue`).
"""

try:
    import arq  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "aily_async.queue needs the 'arq' package: pip install 'aily-async[queue]'"
    ) from exc

from ._collect import ItemError, JobLost, QueuedBatch
from ._enqueue import AilyQueue
from ._gate import EFFECT_CALLS, QuotaDeferred, QuotaGate
from ._job import JOB_NAME, SkillOutcomeUnknown
from ._store import DEFAULT_PREFIX, BatchStore, Entry
from ._worker import DEFAULT_QUEUE, WorkerOptions, close_worker, create_worker, worker_settings

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_QUEUE",
    "EFFECT_CALLS",
    "JOB_NAME",
    "AilyQueue",
    "BatchStore",
    "Entry",
    "ItemError",
    "JobLost",
    "QueuedBatch",
    "QuotaDeferred",
    "QuotaGate",
    "SkillOutcomeUnknown",
    "WorkerOptions",
    "close_worker",
    "create_worker",
    "worker_settings",
]
