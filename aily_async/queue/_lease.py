"""Leases: the jobs of a killed worker go back to the queue within seconds, not minutes.

arq marks a job it starts as in progress with a key that expires ``job_timeout + 10`` seconds
later; no other worker starts the job while the key lives, so a worker killed mid-job leaves
its jobs untouched until then (minutes, for jobs that wait for runs). :class:`Leases` makes
that key a lease: a worker made by :func:`~aily_async.queue.create_worker` (``aily worker``)
sets it to ``lease`` seconds when it starts a job, the job shortens it again as it begins
(for workers started by arq's own command, which sets the long one), and a heartbeat renews
the keys of the jobs still running every ``lease / 3`` seconds. A killed worker renews
nothing, so its jobs are taken up by another worker at most ``lease`` seconds (plus one poll)
later, and each retry adopts what the item left (see :mod:`aily_async.queue._job`).

A renewal that fails (Redis unreachable) is logged and tried again at the next beat; the
lease then runs out only if Redis stays unreachable for ``lease`` seconds, in which case no
other worker can take the job either until Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["Leases"]

logger = logging.getLogger("aily_async")


class Leases:
    """The in-progress leases of one worker's jobs, renewed by a heartbeat."""

    __slots__ = ("_held", "_lease_ms", "_redis", "_task", "lease")

    def __init__(self, redis: Redis, lease: float) -> None:
        if not lease > 0 or not math.isfinite(lease):
            raise ValueError(f"lease must be a positive number of seconds, got {lease!r}")
        self._redis = redis
        self.lease = float(lease)
        self._lease_ms = math.ceil(lease * 1000)
        self._held: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the heartbeat (in the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._beat())

    async def hold(self, job_id: str) -> None:
        """Hold the lease of a job this worker has just started (shortening arq's key)."""
        self._held.add(job_id)
        with contextlib.suppress(RedisError, OSError, asyncio.TimeoutError):
            await self._redis.pexpire(in_progress_key_prefix + job_id, self._lease_ms)

    def release(self, job_id: str) -> None:
        """The job is over here (arq deletes its key, or re-queues it)."""
        self._held.discard(job_id)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            held = sorted(self._held)
            if not held:
                continue
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for job_id in held:
                        # PEXPIRE leaves a key that is gone (the job finished) gone.
                        pipe.pexpire(in_progress_key_prefix + job_id, self._lease_ms)
                    await pipe.execute()
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                logger.warning("could not renew the leases of %d jobs: %s", len(held), exc)

    async def aclose(self) -> None:
        """Stop the heartbeat."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
