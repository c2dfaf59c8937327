"""The ``aily worker`` command: a worker of queued batches (``aily_async.queue``), until stopped.

The worker runs the items that ``AilyQueue`` enqueued, with one client for its life on the
app's quota kept in Redis (shared by every worker). SIGTERM or Ctrl-C stops it gently: no new
job is taken, the jobs underway get ``--grace`` seconds, and what is still going then is
cancelled and goes back to the queue.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
from typing import Any

from aily_async import FEISHU_HOST, LARK_HOST

from ._common import EXIT_OK, UsageError

__all__ = ["add_worker_command", "worker_command"]


def _quota(text: str) -> tuple[int, float]:
    """``N/SECONDS`` as ``(N, SECONDS)``."""
    rate, sep, per = text.partition("/")
    try:
        parsed = (int(rate), float(per))
    except ValueError:
        parsed = (0, 0.0)
    if not sep or parsed[0] < 1 or not parsed[1] > 0:
        raise argparse.ArgumentTypeError(f"expected N/SECONDS (e.g. 100/60), got {text!r}")
    return parsed


def _call_quota(text: str) -> tuple[str, tuple[int, float]]:
    """``CALL=N/SECONDS``."""
    call, sep, quota = text.partition("=")
    if not sep or not call:
        raise argparse.ArgumentTypeError(f"expected CALL=N/SECONDS, got {text!r}")
    return call, _quota(quota)


def add_worker_command(commands: Any) -> None:
    """Add ``aily worker`` to the ``aily`` subcommands."""
    worker = commands.add_parser(
        "worker",
        help="run a worker of batches enqueued on Redis (pip install 'aily-async[queue]')",
        description=(
            "Run the items of batches enqueued with aily_async.queue.AilyQueue, with one "
            "client for the worker's life whose quotas are shared, in Redis, by every worker "
            "of the app. Credentials: FEISHU_APP_ID and FEISHU_APP_SECRET. SIGTERM or Ctrl-C: "
            "no new jobs, --grace seconds for those underway."
        ),
    )
    worker.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get("AILY_REDIS_URL", "redis://localhost:6379/0"),
        help="the queue's Redis (default: $AILY_REDIS_URL, else redis://localhost:6379/0)",
    )
    worker.add_argument(
        "--limits-redis", metavar="URL", help="the quotas' Redis (default: --redis)"
    )
    worker.add_argument(
        "--base-url", metavar="URL", help=f"API host (default: $AILY_BASE_URL, else {FEISHU_HOST})"
    )
    worker.add_argument("--lark", action="store_true", help=f"use the Lark host {LARK_HOST}")
    worker.add_argument(
        "--quota",
        type=_call_quota,
        action="append",
        default=[],
        metavar="CALL=N/S",
        help="a call's quota, e.g. skills.start=100/60 (repeatable; default: the documented)",
    )
    worker.add_argument(
        "--default-quota", type=_quota, metavar="N/S", help="the quota of the calls not named"
    )
    worker.add_argument(
        "--on-failure",
        choices=("closed", "local"),
        default="closed",
        help="when the quotas' Redis fails: send nothing (closed, default) or local buckets",
    )
    worker.add_argument(
        "--local-fraction", type=float, default=0.5, metavar="F", help="local buckets' share (0.5)"
    )
    for flag, kind, default, text in (
        ("--max-jobs", int, 32, "jobs run at once (32)"),
        ("--hold", float, 1.0, "longest wait for quota in a job's slot before it steps aside (1)"),
        ("--lease", float, 30.0, "seconds after which a dead worker's jobs go elsewhere (30)"),
        ("--job-timeout", float, 600.0, "longest run of one job, a run's wait included (600)"),
        ("--grace", float, 30.0, "on SIGTERM, seconds for the jobs underway to finish (30)"),
        ("--poll-delay", float, 0.2, "seconds between looks at the queue (0.2)"),
        ("--request-timeout", float, 30.0, "seconds per HTTP request (30)"),
        ("--poll-interval", float, 1.0, "first wait before polling a run (1)"),
    ):
        worker.add_argument(flag, type=kind, default=default, metavar="N", help=text)
    worker.add_argument("--queue", default=None, metavar="NAME", help="arq queue (aily:queue)")
    worker.add_argument("--prefix", default=None, metavar="P", help="batch keys (aily:batch)")
    worker.add_argument("--name", default=None, help="this worker's name (host:pid)")
    worker.add_argument("--burst", action="store_true", help="stop once the queue is empty")
    worker.add_argument("-v", "--verbose", action="store_true", help="log jobs and requests")
    worker.set_defaults(handler=worker_command)


def _options(args: argparse.Namespace) -> Any:
    try:
        from aily_async.queue import WorkerOptions
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    overrides: dict[str, Any] = {
        "redis": args.redis,
        "limits_redis": args.limits_redis,
        "on_failure": args.on_failure,
        "local_fraction": args.local_fraction,
        "max_jobs": args.max_jobs,
        "hold": args.hold,
        "lease": args.lease,
        "job_timeout": args.job_timeout,
        "grace": args.grace,
        "poll_delay": args.poll_delay,
        "request_timeout": args.request_timeout,
        "poll_interval": args.poll_interval,
        "burst": args.burst,
    }
    if args.base_url or args.lark:
        overrides["base_url"] = args.base_url or LARK_HOST
    if args.quota:
        overrides["quotas"] = dict(args.quota)
    if args.default_quota is not None:
        overrides["default_quota"] = args.default_quota
    for name, value in (("queue_name", args.queue), ("prefix", args.prefix), ("name", args.name)):
        if value is not None:
            overrides[name] = value
    try:
        return WorkerOptions.from_env(**overrides)
    except ValueError as exc:
        message = str(exc)
        if "app_id" in message:
            message = "no credentials: set FEISHU_APP_ID and FEISHU_APP_SECRET"
        raise UsageError(message) from None


async def worker_command(args: argparse.Namespace) -> int:
    """``aily worker``: run until SIGTERM / Ctrl-C (or, with ``--burst``, an empty queue)."""
    options = _options(args)
    from aily_async.queue import close_worker, create_worker

    def ready(options: Any) -> None:
        print(
            f"aily worker {options.name}: ready (queue {options.queue_name}, "
            f"{options.max_jobs} jobs at once, Redis {options.redis.rpartition('@')[2]})",
            flush=True,
        )

    worker = create_worker(options, on_ready=ready)
    # What exists now lives as long as the worker: keep it out of the collector's full passes,
    # whose pauses would hold requests between their grant and the wire.
    gc.collect()
    gc.freeze()
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        # arq's SIGTERM / SIGINT handler cancelled its main task: a stop, not an error.
        main = worker.main_task
        if main is None or not main.cancelled():
            raise
    finally:
        await close_worker(worker)
    return EXIT_OK
