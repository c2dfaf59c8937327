"""Enqueuing a batch: one job per item, keyed by the item's key, so enqueuing twice is once.

:class:`AilyQueue` is the enqueuing side (it needs the queue's Redis, not the app's
credentials). ``queue.skills(...)`` and ``queue.runs(...)`` take the inputs ``client.batch``
takes, with the same key rule (an input's index, a function of it, or a field of dict inputs)
and the same checks, under a batch ``name`` of your choosing: the name is to the queue what
the checkpoint file is to ``client.batch``. Each input then becomes, at once:

* a result found done (the batch's record of that key is a success: ``resumed=True``);
* a failure that is never enqueued: a bad or duplicate key, an input that fails the checks,
  or a key whose record holds a different input (as a checkpoint refuses it);
* or a job (``JOB_NAME``) with the id ``PREFIX:NAME:KEY``. arq refuses a second job with an id
  that is queued or running, so an item enqueued twice is one job; an item whose record is a
  failure is enqueued again (as a rerun of ``client.batch`` redoes failed items), and adopts
  the run its record may keep.

The returned :class:`~aily_async.queue._collect.QueuedBatch` follows the results.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import job_key_prefix
from arq.jobs import Job

from .._models import RunResult, SkillResult
from ..batch._admission import item_key as key_of
from ..batch._checkpoint import Checkpoint, Key, is_key
from ..batch._inputs import (
    RUN_FIELDS,
    SKILL_FIELDS,
    Inputs,
    KeyOption,
    key_option,
    run_args,
    run_batch,
    skill_args,
    skill_batch,
    without,
)
from ..batch._jobs import _decode_run, _decode_skill
from ..batch._results import BatchResult, restored
from ._collect import QueuedBatch, Wanted
from ._job import JOB_NAME, Spec
from ._store import DEFAULT_PREFIX, DEFAULT_TTL, BatchStore, key_json
from ._worker import DEFAULT_QUEUE

__all__ = ["AilyQueue"]

#: Items looked up in Redis at a time while enqueuing.
CHUNK = 200


class AilyQueue:
    """Enqueue batches for the workers of one queue (see the module docs).

    ``redis``: the queue's Redis, a URL or an arq pool (then its owner closes it).
    ``queue_name`` and ``prefix`` must be the workers' (``aily worker --queue/--prefix``);
    ``ttl``: seconds a batch's records live after their last write.
    """

    def __init__(
        self,
        redis: str | ArqRedis = "redis://localhost:6379/0",
        *,
        queue_name: str = DEFAULT_QUEUE,
        prefix: str = DEFAULT_PREFIX,
        ttl: float = DEFAULT_TTL,
    ) -> None:
        self._url = redis if isinstance(redis, str) else None
        self._pool: ArqRedis | None = None if isinstance(redis, str) else redis
        self._queue = queue_name
        self._prefix = prefix
        self._ttl = float(ttl)

    async def _redis(self) -> ArqRedis:
        if self._pool is None:
            assert self._url is not None
            self._pool = await create_pool(
                RedisSettings.from_dsn(self._url), default_queue_name=self._queue
            )
        return self._pool

    async def aclose(self) -> None:
        """Close the connection if this queue opened it (given a URL)."""
        pool, owned = self._pool, self._url is not None
        if owned and pool is not None:
            self._pool = None
            await pool.aclose()

    async def __aenter__(self) -> AilyQueue:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AilyQueue {self._queue!r} prefix={self._prefix!r}>"

    async def store(self, name: str) -> BatchStore:
        """The Redis keys of the batch ``name`` (to read its records)."""
        return BatchStore(await self._redis(), name, prefix=self._prefix, ttl=self._ttl)

    # -- enqueuing --------------------------------------------------------------------------

    async def skills(
        self,
        app_id: str,
        skill_id: str,
        inputs: Inputs,
        *,
        name: str,
        key: KeyOption = None,
        biz_user_id: str | None = None,
    ) -> QueuedBatch[SkillResult]:
        """Enqueue a start of skill ``skill_id`` of app ``app_id`` per input (a query string
        or a dict of ``skills.start`` arguments), as batch ``name``."""
        identity = skill_batch("queue.skills", app_id, skill_id, biz_user_id)
        return await self._enqueue(
            name, identity, inputs, key, SKILL_FIELDS, skill_args, _decode_skill, timeout=None
        )

    async def runs(
        self,
        app_id: str,
        inputs: Inputs,
        *,
        name: str,
        key: KeyOption = None,
        skill_id: str | None = None,
        timeout: float | None = None,
        biz_user_id: str | None = None,
    ) -> QueuedBatch[RunResult]:
        """Enqueue a question to app ``app_id`` per input (a message string or a dict with
        ``message``; a fresh session each), as batch ``name``. ``timeout``: seconds a run may
        take before it is cancelled and its item fails."""
        identity = run_batch("queue.runs", app_id, skill_id, timeout, biz_user_id)
        keep = (*RUN_FIELDS, "content")
        return await self._enqueue(
            name, identity, inputs, key, keep, run_args, _decode_run, timeout=timeout
        )

    async def _enqueue(
        self,
        name: str,
        identity: Mapping[str, Any],
        inputs: Inputs,
        key: KeyOption,
        keep: tuple[str, ...],
        check: Callable[[Any], object],
        decode: Callable[[Any], Any],
        *,
        timeout: float | None,
    ) -> QueuedBatch[Any]:
        if isinstance(inputs, str | bytes | Mapping):
            raise TypeError(
                f"inputs must be an iterable of items, not a single {type(inputs).__name__}"
            )
        key_fn, field = key_option(key, keep=keep)
        pool = await self._redis()
        store = BatchStore(pool, name, prefix=self._prefix, ttl=self._ttl)
        await store.claim(identity)
        since = await store.last_event()
        token = uuid.uuid4().hex
        ready: list[BatchResult[Any]] = []
        records: dict[Key, Mapping[str, Any]] = {}
        wanted: dict[str, Wanted] = {}
        seen: set[Key] = set()
        enqueued = total = 0
        chunk: list[tuple[int, Key, Any]] = []

        async def flush() -> int:
            keys = [key_json(k) for _, k, _ in chunk]
            count = 0
            for (index, item_key, raw), kj, entry in zip(
                chunk, keys, await store.get_many(keys), strict=True
            ):
                if entry is not None:
                    done = restored(entry.record, index, item_key, raw, decode)
                    if done is not None:  # done already, or the key holds another input
                        ready.append(done)
                        if done.ok:
                            records[item_key] = entry.record
                        continue
                spec = Spec(
                    batch=name,
                    prefix=self._prefix,
                    ttl=self._ttl,
                    token=token,
                    identity=identity,
                    timeout=timeout,
                    field=field,
                    key=item_key,
                    index=index,
                    input=raw,
                )
                job_id = store.job_id(kj)
                job = await pool.enqueue_job(
                    JOB_NAME, spec.to_dict(), _job_id=job_id, _queue_name=self._queue,
                    _expires=self._ttl,
                )  # fmt: skip
                if job is not None:
                    count += 1
                    wanted[kj] = Wanted(index, item_key, raw, token)
                else:  # queued or running already: wait for that job's record
                    wanted[kj] = Wanted(index, item_key, raw, await self._token_of(pool, job_id))
            chunk.clear()
            return count

        async for index, raw in _numbered(inputs):
            total += 1
            refused = _refused(index, raw, key_fn, field, check, seen)
            if isinstance(refused, BatchResult):
                ready.append(refused)
                continue
            chunk.append((index, refused, raw))
            if len(chunk) >= CHUNK:
                enqueued += await flush()
        enqueued += await flush()
        return QueuedBatch(
            store,
            identity=identity,
            decode=decode,
            total=total,
            ready=ready,
            records=records,
            wanted=wanted,
            since=since,
            queue_key=lambda kj: job_key_prefix + store.job_id(kj),
            enqueued=enqueued,
        )

    async def _token_of(self, pool: ArqRedis, job_id: str) -> str | None:
        """The enqueue token of a queued job (``None`` when it cannot be read)."""
        info = await Job(job_id, pool, _queue_name=self._queue).info()
        if info is None or not info.args or not isinstance(info.args[0], Mapping):
            return None
        token = info.args[0].get("token")
        return token if isinstance(token, str) else None

    # -- inspecting -------------------------------------------------------------------------

    async def export(self, name: str, path: str) -> int:
        """Write the records of batch ``name`` to the JSON Lines file ``path`` (header first,
        as ``client.batch`` writes its checkpoint); return how many."""
        store = await self.store(name)
        header = await store.header()
        if header is None or not isinstance(header.get("batch"), dict):
            raise LookupError(f"no queued batch named {name!r}")
        checkpoint = Checkpoint(path, batch=header["batch"])
        checkpoint.open()
        records = [entry.record async for _, entry in store.entries()]
        records.sort(key=lambda r: (r.get("index", 0), str(r.get("key"))))
        count = 0
        try:
            for record in records:
                if is_key(record.get("key")):
                    checkpoint.write(record)
                    count += 1
            checkpoint.compact()
        finally:
            checkpoint.close()
        return count


async def _numbered(inputs: Inputs) -> AsyncIterator[tuple[int, Any]]:
    """``(index, input)`` of sync or async inputs."""
    if isinstance(inputs, AsyncIterable):
        index = 0
        async for raw in inputs:
            yield index, raw
            index += 1
    elif isinstance(inputs, Iterable):
        for index, raw in enumerate(inputs):
            yield index, raw
    else:
        raise TypeError(f"inputs must be an iterable or async iterable, not {inputs!r}")


def _refused(
    index: int,
    raw: Any,
    key_fn: Callable[[Any], Key] | None,
    field: str | None,
    check: Callable[[Any], object],
    seen: set[Key],
) -> Key | BatchResult[Any]:
    """The item's key, or its failure at once (a bad or duplicate key, a bad input)."""
    key = key_of(index, raw, key_fn, seen)
    if isinstance(key, BatchResult):
        return key
    try:
        check(without(raw, field))
    except Exception as exc:
        return BatchResult(index, key, raw, error=exc)
    return key
