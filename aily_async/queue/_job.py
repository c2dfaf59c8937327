"""One item on a worker: a skill call or a run, done once however often its job runs.

arq may run an item's job more than once: after a deferral (the quota, see
:mod:`aily_async.queue._gate`), after its worker was killed (see :mod:`aily_async.queue._lease`),
or when the item is enqueued again. Each run of the job reads the item's entry in Redis first
(:mod:`aily_async.queue._store`) and goes on from there:

* a final record of success, or a final record this same enqueue wrote: nothing to do;
* a **run item** with a pending record adopts what it finds, exactly as a resumed
  ``client.batch.runs`` does (:class:`~aily_async.batch._run_items.RunWork`): the session
  and message are written to Redis before ``runs.create`` is sent, the run id once known; the
  run is awaited if still going, its answer read if it completed, created only if it never
  was;
* a **skill item** records that its call may be in the air right before it leaves (after
  its grant). Nothing can look a skill call up, so a job that finds that mark follows the
  library's rule for writes that may have landed: it does not send the call again, and the
  item fails with :class:`SkillOutcomeUnknown` (enqueue it again to send it anyway). A mark
  left by a call that certainly did not land (a 429, a refused connection, then a deferral)
  is taken back before the job steps aside.

A job waiting for quota steps aside with arq's ``Retry(defer=...)``, giving its slot back; so
does a job that meets a limiter outage (``RedisLimits(on_failure="closed")``: nothing was
sent) or cannot write to Redis. Everything else ends the item with its final record:
``BatchResult.to_record()``, plus the pending part of a run that may still be going.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import attrs
from arq.worker import Retry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .._client import AilyClient
from .._errors import AilyError, AilyRateLimiterError
from ..batch._checkpoint import Key, is_key
from ..batch._inputs import skill_call
from ..batch._items import Item, Worker
from ..batch._results import BatchResult
from ..batch._run_items import RunWork
from ._gate import QuotaDeferred, QuotaGate, before_send, come_back
from ._lease import Leases
from ._store import BatchStore, Entry, key_json

__all__ = [
    "JOB_NAME",
    "STATE",
    "ItemJob",
    "SkillOutcomeUnknown",
    "Spec",
    "WorkerContext",
    "item_job",
]

logger = logging.getLogger("aily_async")

#: The name of the job function (what the queue's jobs call).
JOB_NAME = "aily_async.queue.item"
#: Where a worker's :class:`WorkerContext` is kept in arq's ``ctx``.
STATE = "aily_async.queue"
#: Failures that say nothing of the item: the limiter's Redis failed closed, or the item's
#: entry could not be written. Nothing was sent; the job comes back later.
_OUTAGES = (AilyRateLimiterError, RedisError)


class SkillOutcomeUnknown(AilyError):
    """A worker stopped while this item's ``skills.start`` was in the air: it may have taken
    effect, and nothing can look a skill call up, so it is not sent again. Enqueue the item
    again to send it anyway."""


@attrs.frozen(kw_only=True)
class Spec:
    """What an item's job carries: its batch, its enqueue ``token``, its item."""

    batch: str
    prefix: str
    ttl: float
    token: str
    identity: Mapping[str, Any]
    timeout: float | None
    field: str | None
    key: Key
    index: int
    input: Any

    def to_dict(self) -> dict[str, Any]:
        """The spec as the job's argument (plain data)."""
        return {**attrs.asdict(self), "identity": dict(self.identity)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Spec:
        """The spec of a job's argument."""
        spec = cls(**{field.name: data[field.name] for field in attrs.fields(cls)})
        if not is_key(spec.key):
            raise ValueError(f"a job's key must be a str or an int, got {spec.key!r}")
        return spec

    @property
    def kind(self) -> str:
        """``"skills.start"`` or ``"runs"``."""
        return str(self.identity.get("kind"))


@attrs.define(kw_only=True)
class WorkerContext:
    """What a worker holds for its life: its client, the gate in front of its limiter, the
    leases of its jobs, the queue's Redis; its name, and how long a job may take."""

    client: AilyClient
    gate: QuotaGate
    leases: Leases
    redis: Redis
    worker: str
    job_timeout: float
    outage_retry: float = 5.0


class _Recorder:
    """A run item's records in Redis (a :class:`~aily_async.batch._items.Recorder`): written in
    the background as the item notes them, and awaited by :meth:`flush` (before its create)."""

    __slots__ = ("_closed", "_dirty", "_key", "_latest", "_store", "_task", "_token")

    def __init__(self, store: BatchStore, key: str, token: str) -> None:
        self._store = store
        self._key = key
        self._token = token
        self._latest: Entry | None = None
        self._dirty = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def write(self, record: Mapping[str, Any]) -> None:
        if self._closed:
            return
        self._latest = Entry(self._token, "pending", dict(record))
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self._store.put(self._key, self._latest)
            except BaseException:
                self._dirty = True
                raise

    async def flush(self) -> None:
        while self._dirty or (self._task is not None and not self._task.done()):
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._drain())
            await asyncio.shield(self._task)  # a failed write raises here

    async def close(self) -> None:
        """Write what is left (best effort) and take no more records."""
        self._closed = True
        with contextlib.suppress(Exception):
            await self.flush()


class ItemJob:
    """One run of an item's job on a worker (see the module docs)."""

    __slots__ = ("_ctx", "_job_id", "_key", "_loop", "_spec", "_started", "_store")

    def __init__(self, ctx: WorkerContext, spec: Spec, job_id: str) -> None:
        self._ctx = ctx
        self._spec = spec
        self._job_id = job_id
        self._store = BatchStore(ctx.redis, spec.batch, prefix=spec.prefix, ttl=spec.ttl)
        self._key = key_json(spec.key)
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()

    async def __call__(self) -> str:
        leases = self._ctx.leases
        await leases.hold(self._job_id)
        try:
            return await self._run()
        except Retry:
            raise
        except _OUTAGES as exc:
            await self._step_aside(exc)
            raise  # pragma: no cover - _step_aside raises
        except Exception as exc:  # a failure of this job's own making: the item's record says it
            logger.exception("%s %s: the job failed", self._spec.batch, self._key)
            return await self._finish(error=exc)
        finally:
            leases.release(self._job_id)

    async def _run(self) -> str:
        spec, store = self._spec, self._store
        entry = await store.get(self._key)
        if entry is not None and entry.done and (entry.ok or entry.job == spec.token):
            return "done already"
        gate = self._ctx.gate
        wait = gate.eta("runs.create") if spec.kind == "runs" else 0.0
        if wait > gate.hold:
            # Nothing is made (no session, no message) before the quota is near.
            await self._defer(come_back(wait, gate.hold))
        await store.event(self._key, "started", spec.token, self._ctx.worker)
        self._started = self._loop.time()
        if spec.kind == "skills.start":
            return await self._skill(entry)
        if spec.kind == "runs":
            return await self._run_item(entry)
        return await self._finish(error=ValueError(f"unknown kind of item: {spec.kind!r}"))

    # -- a skill call ---------------------------------------------------------------------

    async def _skill(self, entry: Entry | None) -> str:
        spec, store = self._spec, self._store
        if entry is not None and entry.state == "sending":
            return await self._finish(
                error=SkillOutcomeUnknown(
                    "a worker stopped while this call was in the air; it may have taken "
                    "effect, so it is not sent again (enqueue the item again to send it)",
                    call="skills.start",
                )
            )
        identity = spec.identity
        marked = False

        async def mark(call: str) -> None:
            nonlocal marked
            if not marked:
                record = {"key": spec.key, "index": spec.index, "input": spec.input}
                await store.put(self._key, Entry(spec.token, "sending", record))
                marked = True

        try:
            args = skill_call(spec.input, spec.field, identity.get("biz_user_id"))
        except Exception as exc:
            return await self._finish(error=exc)
        token = before_send.set(mark)
        try:
            value = await asyncio.wait_for(
                self._ctx.client.skills.start(identity["app_id"], identity["skill_id"], **args),
                self._ctx.job_timeout,
            )
        except (QuotaDeferred, *_OUTAGES) as exc:
            # Deferred before a send, after attempts that certainly did not land: take the mark
            # back (the entry as it was) and step aside.
            if marked:
                with contextlib.suppress(*_OUTAGES):
                    await store.put(self._key, entry)
            await self._step_aside(exc)
        except Exception as exc:
            return await self._finish(error=self._timed_out(exc))
        finally:
            before_send.reset(token)
        return await self._finish(value=value)

    # -- a run ------------------------------------------------------------------------------

    async def _run_item(self, entry: Entry | None) -> str:
        spec = self._spec
        identity = spec.identity
        recorder = _Recorder(self._store, self._key, spec.token)
        pending = entry.pending if entry is not None else None
        item = Item(recorder, spec.index, spec.key, spec.input, pending, "runs.create")
        work = RunWork(
            self._ctx.client,
            str(identity["app_id"]),
            field=spec.field,
            reuse=False,
            skill_id=identity.get("skill_id"),
            timeout=spec.timeout,
            poll=None,
            biz_user_id=identity.get("biz_user_id"),
        )
        try:
            value = await asyncio.wait_for(work(item, Worker(0)), self._ctx.job_timeout)
        except (QuotaDeferred, *_OUTAGES) as exc:
            await recorder.close()  # what finds the run, if it may exist (flushed before it did)
            await self._step_aside(exc)
        except Exception as exc:
            await recorder.close()
            return await self._finish(error=self._timed_out(exc), live=item.live)
        await recorder.close()
        return await self._finish(value=value)

    # -- endings ----------------------------------------------------------------------------

    def _timed_out(self, exc: Exception) -> Exception:
        if isinstance(exc, asyncio.TimeoutError) and not isinstance(exc, AilyError):
            return TimeoutError(
                f"the item took longer than the worker's job_timeout "
                f"({self._ctx.job_timeout:g}s) and was stopped"
            )
        return exc

    async def _step_aside(self, exc: BaseException) -> None:
        if isinstance(exc, QuotaDeferred):
            await self._defer(exc.retry_in)
        logger.warning("%s %s: %s; the job comes back later", self._spec.batch, self._key, exc)
        await self._defer(self._ctx.outage_retry)

    async def _defer(self, seconds: float) -> None:
        with contextlib.suppress(*_OUTAGES):
            await self._store.event(self._key, "deferred", self._spec.token, self._ctx.worker)
        raise Retry(defer=max(0.05, seconds))

    async def _finish(
        self,
        *,
        value: Any = None,
        error: Exception | None = None,
        live: Mapping[str, Any] | None = None,
    ) -> str:
        spec = self._spec
        elapsed = self._loop.time() - self._started
        result: BatchResult[Any] = BatchResult(
            spec.index,
            spec.key,
            spec.input,
            value=value,
            error=error,
            elapsed=elapsed,
        )
        record = result.to_record()
        if error is not None and live:
            record["pending"] = dict(live)
        entry = Entry(spec.token, "done", record)
        for wait in (0.5, 1.0, 2.0, None):  # the result is in hand: do not lose it to a blip
            try:
                await self._store.finish(self._key, entry, self._ctx.worker)
                break
            except RedisError:
                if wait is None:
                    raise
                await asyncio.sleep(wait)
        return "ok" if error is None else f"failed: {type(error).__name__}"


async def item_job(ctx: dict[str, Any], spec: dict[str, Any]) -> str:
    """The queue's job function: do one item (see the module docs)."""
    state = ctx[STATE]
    if not isinstance(state, WorkerContext):
        raise RuntimeError("the worker was not started with aily_async.queue's settings")
    return await ItemJob(state, Spec.from_dict(spec), str(ctx["job_id"]))()
