"""A worker process: one :class:`~aily_async.AilyClient` for its life, on the shared quota.

:func:`worker_settings` gives arq the settings of a worker that runs the items of queued
batches: on startup it builds the process's one client, whose limiter is a
:class:`~aily_async.queue._gate.QuotaGate` over :class:`~aily_async.redis.RedisLimits` (every
worker on the same Redis shares each quota of the app), and the heartbeat of its jobs' leases;
on shutdown it closes them. Run it with ``aily worker`` or with arq's own command
(``arq yourmodule.WorkerSettings``, ``WorkerSettings = worker_settings(WorkerOptions(...))``).
"""

from __future__ import annotations

import math
import os
import socket
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs
from arq.connections import RedisSettings
from arq.worker import Worker, func
from arq.worker import create_worker as arq_create_worker

from .._client import AilyClient
from ..redis import RedisLimits
from ._gate import QuotaGate
from ._job import JOB_NAME, STATE, WorkerContext, item_job
from ._lease import Leases
from ._store import DEFAULT_PREFIX

__all__ = ["DEFAULT_QUEUE", "WorkerOptions", "close_worker", "create_worker", "worker_settings"]

#: The arq queue the items of queued batches go to by default.
DEFAULT_QUEUE = "aily:queue"
#: arq counts every start of a job as a try, deferrals included: effectively no limit.
MAX_TRIES = 1_000_000
_OPTIONS = "aily_async.queue.options"
_LIMITS = "aily_async.queue.limits"


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive number of seconds, got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be >= 0 seconds, got {value!r}")


@attrs.frozen(kw_only=True)
class WorkerOptions:
    """How a worker runs (``aily worker --help`` shows the same options).

    * ``redis``: the queue's Redis (jobs, item records, leases); ``limits_redis``: where the
      quota buckets live (default: the same). ``on_failure`` / ``local_fraction``: what the
      buckets do when that Redis fails (see :class:`~aily_async.redis.RedisLimits`).
    * ``app_id`` / ``app_secret``: the Feishu app (its quotas are shared by every worker);
      ``base_url`` the API host; ``quotas`` / ``default_quota`` override the documented ones.
    * ``max_jobs``: jobs a worker runs at once; a job waiting for its quota longer than
      ``hold`` seconds gives its slot back and comes back when the quota is near.
    * ``lease``: seconds after which the jobs of a killed worker go to another one.
    * ``job_timeout``: the longest one run of a job may take (a run's whole wait included).
    * ``grace``: on SIGTERM / Ctrl-C, seconds the jobs underway get to finish.
    * ``poll_delay``: seconds between looks at the queue; ``burst``: stop once it is empty.
    """

    redis: str = "redis://localhost:6379/0"
    app_id: str
    app_secret: str
    base_url: str | None = None
    limits_redis: str | None = None
    quotas: Mapping[str, tuple[int, float]] | None = None
    default_quota: tuple[int, float] | None = None
    on_failure: Literal["closed", "local"] = "closed"
    local_fraction: float = 0.5
    max_jobs: int = 32
    hold: float = attrs.field(default=1.0, validator=_non_negative)
    lease: float = attrs.field(default=30.0, validator=_positive)
    job_timeout: float = attrs.field(default=600.0, validator=_positive)
    grace: float = attrs.field(default=30.0, validator=_non_negative)
    poll_delay: float = attrs.field(default=0.2, validator=_positive)
    outage_retry: float = attrs.field(default=5.0, validator=_positive)
    request_timeout: float = attrs.field(default=30.0, validator=_positive)
    poll_interval: float = attrs.field(default=1.0, validator=_positive)
    queue_name: str = DEFAULT_QUEUE
    prefix: str = DEFAULT_PREFIX
    name: str = attrs.field(factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    burst: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.app_id or not self.app_secret:
            raise ValueError("a worker needs the Feishu app's app_id and app_secret")
        if isinstance(self.max_jobs, bool) or not isinstance(self.max_jobs, int):
            raise ValueError(f"max_jobs must be an int >= 1, got {self.max_jobs!r}")
        if self.max_jobs < 1:
            raise ValueError(f"max_jobs must be an int >= 1, got {self.max_jobs!r}")

    @classmethod
    def from_env(cls, **options: Any) -> WorkerOptions:
        """Options from the environment (``FEISHU_APP_ID``, ``FEISHU_APP_SECRET``,
        ``AILY_BASE_URL``, ``AILY_REDIS_URL``), with ``options`` on top."""
        env: dict[str, Any] = {
            "app_id": os.environ.get("FEISHU_APP_ID", ""),
            "app_secret": os.environ.get("FEISHU_APP_SECRET", ""),
            "base_url": os.environ.get("AILY_BASE_URL") or None,
        }
        if os.environ.get("AILY_REDIS_URL"):
            env["redis"] = os.environ["AILY_REDIS_URL"]
        return cls(**{**env, **options})


async def _startup(ctx: dict[str, Any]) -> None:
    options: WorkerOptions = ctx[_OPTIONS]
    extra: dict[str, Any] = {}
    if options.quotas is not None:
        extra["quotas"] = options.quotas
    if options.default_quota is not None:
        extra["default"] = options.default_quota
    limits = RedisLimits(
        options.limits_redis or options.redis,
        app_id=options.app_id,
        on_failure=options.on_failure,
        local_fraction=options.local_fraction,
        **extra,
    )
    ctx[_LIMITS] = limits
    gate = QuotaGate(limits, hold=options.hold)
    client = AilyClient(
        options.app_id,
        options.app_secret,
        base_url=options.base_url,
        limiter=gate,
        timeout=options.request_timeout,
        poll_interval=options.poll_interval,
    )
    leases = Leases(ctx["redis"], options.lease)
    leases.start()
    ctx[STATE] = WorkerContext(
        client=client,
        gate=gate,
        leases=leases,
        redis=ctx["redis"],
        worker=options.name,
        job_timeout=options.job_timeout,
        outage_retry=options.outage_retry,
    )
    ready = ctx.get("aily_async.queue.ready")
    if callable(ready):
        ready(options)


async def _shutdown(ctx: dict[str, Any]) -> None:
    state = ctx.pop(STATE, None)
    limits = ctx.pop(_LIMITS, None)
    try:
        if isinstance(state, WorkerContext):
            await state.leases.aclose()
            await state.client.close()
    finally:
        if isinstance(limits, RedisLimits):
            await limits.aclose()


def worker_settings(
    options: WorkerOptions, *, on_ready: Callable[[WorkerOptions], object] | None = None
) -> dict[str, Any]:
    """arq's settings of a worker of queued batches (see the module docs); ``on_ready`` is
    called once the worker's client is built."""
    return {
        "functions": [
            func(
                item_job,
                name=JOB_NAME,
                # Room after job_timeout for a stopped run to be cancelled and recorded.
                timeout=options.job_timeout + 15,
                keep_result=0,  # the item's record is the result (in the batch's hash)
                max_tries=MAX_TRIES,
            )
        ],
        "redis_settings": RedisSettings.from_dsn(options.redis),
        "queue_name": options.queue_name,
        "max_jobs": options.max_jobs,
        "poll_delay": options.poll_delay,
        "keep_result": 0,
        "job_completion_wait": math.ceil(options.grace),
        "health_check_interval": 30,
        "log_results": False,
        "burst": options.burst,
        "on_startup": _startup,
        "on_shutdown": _shutdown,
        "ctx": {_OPTIONS: options, "aily_async.queue.ready": on_ready},
    }


def create_worker(
    options: WorkerOptions,
    *,
    on_ready: Callable[[WorkerOptions], object] | None = None,
    **overrides: Any,
) -> Worker:
    """An arq :class:`~arq.worker.Worker` with :func:`worker_settings` (``overrides`` are
    more arq settings); call it inside the loop it runs in."""
    worker = arq_create_worker(worker_settings(options, on_ready=on_ready), **overrides)
    # arq marks a job it starts as in progress for job_timeout + 10 s; from the start, the
    # mark is the job's lease instead (renewed while the job runs, see _lease).
    worker.in_progress_timeout_s = options.lease
    return worker


async def close_worker(worker: Worker) -> None:
    """``worker.close()`` (arq closes its Redis pool with ``close()``, which redis-py 5.0.1
    and later deprecates: that one warning is silenced)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Call to deprecated close", DeprecationWarning)
        await worker.close()
