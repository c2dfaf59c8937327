"""A queued batch seen from the process that enqueued it: its results as they finish.

:class:`QueuedBatch` follows the batch's event stream (see :mod:`aily_async.queue._store`):
each ``done`` event of one of its items is read back from the item's record as a
:class:`~aily_async.batch.BatchResult`, and ``started`` / ``deferred`` events feed its
progress (items underway, items waiting for quota). Every ``reconcile`` seconds it also reads
the records of the items still out, so an event lost to trimming costs a delay, not a result,
and an item whose job is gone from the queue (expired, deleted, or failed outside the item)
is reported, and recorded, as failed with :class:`JobLost` (enqueue it again to redo it).

With ``out=``, each record is also appended to a JSON Lines file, header first, exactly as
``client.batch`` writes its checkpoint: the file reads with the same tools, and is even a
checkpoint that ``client.batch`` of the same batch would resume from.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any, Generic, TypeVar

import attrs
from redis.asyncio import Redis

from .._errors import AilyError
from ..batch import BatchProgress, BatchResult
from ..batch._checkpoint import Checkpoint, Key
from ..batch._progress import ProgressOption, progress_option
from ._store import BatchStore, Entry, key_json

__all__ = ["ItemError", "JobLost", "QueuedBatch", "Wanted"]

T = TypeVar("T")


class ItemError(Exception):
    """An item's failure as a worker recorded it: ``type`` (the exception's class name),
    ``message``, and ``code``, ``http_status``, ``log_id`` when it had them."""

    def __init__(self, error: Mapping[str, Any]) -> None:
        self.type = str(error.get("type", "Exception"))
        self.message = str(error.get("message", ""))
        self.code = error.get("code")
        self.http_status = error.get("http_status")
        self.log_id = error.get("log_id")
        super().__init__(f"{self.type}: {self.message}")


class JobLost(AilyError):
    """The item's job is gone from the queue without a result (it expired, was deleted, or
    failed outside the item): enqueue the item again to redo it."""


@attrs.frozen
class Wanted:
    """An item the batch waits for: where it stands in the inputs, and the enqueue tokens
    whose final record counts (``None``: any)."""

    index: int
    key: Key
    input: Any
    token: str | None


class QueuedBatch(Generic[T]):
    """The items of one enqueue of a queued batch, and their results.

    ``async for result in batch.results()`` yields a :class:`BatchResult` per item as it
    finishes (``ordered=True``: in input order); items found done when enqueued come first,
    with ``resumed=True``. ``await batch`` returns them all, in input order. ``progress`` is a
    :class:`BatchProgress` (``in_flight``: items underway on a worker, ``limiter_waiting``:
    items stepped aside for quota).
    """

    def __init__(
        self,
        store: BatchStore,
        *,
        identity: Mapping[str, Any],
        decode: Callable[[Any], T],
        total: int,
        ready: list[BatchResult[T]],
        records: Mapping[Key, Mapping[str, Any]],
        wanted: Mapping[str, Wanted],
        since: str,
        queue_key: Callable[[str], str],
        enqueued: int,
    ) -> None:
        self._store = store
        self._identity = dict(identity)
        self._decode = decode
        self._total = total
        self._ready = list(ready)
        self._records = dict(records)
        self._wanted = dict(wanted)
        self._since = since
        self._job_key = queue_key
        #: Items this enqueue put on the queue (the others were queued, or done, already).
        self.enqueued = enqueued
        self._succeeded = self._failed = self._skipped = 0
        self._underway: set[str] = set()
        self._deferred: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started_at: float | None = None
        self._ended_at: float | None = None

    @property
    def name(self) -> str:
        """The batch's name."""
        return self._store.name

    @property
    def total(self) -> int:
        """Items in this enqueue (done already, refused, queued)."""
        return self._total

    def __repr__(self) -> str:
        return f"<QueuedBatch {self.name}: {self.progress.describe()}>"

    @property
    def progress(self) -> BatchProgress:
        """Where the batch stands, as this process has seen it."""
        now = self._loop.time() if self._loop is not None else 0.0
        start = self._started_at if self._started_at is not None else now
        end = self._ended_at if self._ended_at is not None else now
        elapsed = max(0.0, end - start)
        finished = self._succeeded + self._failed
        rate = finished / elapsed if finished and elapsed > 0 else 0.0
        left = max(0, self._total - finished - self._skipped)
        return BatchProgress(
            name=self.name,
            total=self._total,
            succeeded=self._succeeded,
            failed=self._failed,
            skipped=self._skipped,
            in_flight=len(self._underway),
            elapsed=elapsed,
            rate=rate,
            eta=left / rate if rate > 0 else None,
            limiter_waiting=len(self._deferred),
            finished=self._ended_at is not None,
        )

    def __await__(self) -> Generator[Any, None, list[BatchResult[T]]]:
        return self.collect().__await__()

    async def collect(self) -> list[BatchResult[T]]:
        """Every result, in input order (waits for the last)."""
        results: list[BatchResult[T]] = []
        async with contextlib.aclosing(self.results()) as stream:
            async for result in stream:
                results.append(result)
        results.sort(key=lambda r: r.index)
        return results

    async def results(
        self,
        *,
        ordered: bool = False,
        progress: ProgressOption = None,
        out: str | os.PathLike[str] | None = None,
        reconcile: float = 5.0,
        idle: float = 1.0,
    ) -> AsyncGenerator[BatchResult[T], None]:
        """Each item's result as it finishes (see the class docs). ``out``: a JSON Lines file
        to append each record to (see the module docs). ``reconcile``: seconds between reads
        of the records of the items still out; ``idle``: longest wait for an event."""
        if not reconcile > 0 or not idle > 0:
            raise ValueError("reconcile and idle must be positive numbers of seconds")
        loop = self._loop = asyncio.get_running_loop()
        self._started_at = loop.time()
        self._ended_at = None
        self._succeeded = self._failed = self._skipped = 0
        bar, callback = progress_option(progress)
        checkpoint = Checkpoint(out, batch=self._identity) if out is not None else None
        if checkpoint is not None:
            checkpoint.open()
        buffer: dict[int, BatchResult[T]] = {}
        expected = 0
        pending = dict(self._wanted)
        try:
            batches: list[list[BatchResult[T]]] = [list(self._ready)]
            last = self._since
            next_look = loop.time() + reconcile
            while True:
                for results in batches:
                    for result in results:
                        self._count(result, checkpoint)
                        if callback is not None:
                            callback(self.progress)
                        if not ordered:
                            yield result
                            continue
                        buffer[result.index] = result
                        while expected in buffer:
                            yield buffer.pop(expected)
                            expected += 1
                if bar is not None:
                    bar.update(self.progress)
                if not pending:
                    break
                wait = min(idle, max(0.001, next_look - loop.time()))
                events = await self._store.events(last, block=wait)
                if events:
                    last = events[-1].id
                batches = [await self._take(pending, self._on_events(pending, events))]
                if loop.time() >= next_look:
                    batches.append(await self._look(pending))
                    next_look = loop.time() + reconcile
            for index in sorted(buffer):  # pragma: no cover - every index is produced
                yield buffer.pop(index)
        finally:
            self._ended_at = loop.time()
            if bar is not None:
                bar.close(self.progress)
            if checkpoint is not None:
                with contextlib.suppress(OSError):
                    checkpoint.compact()
                checkpoint.close()

    # -- reading ----------------------------------------------------------------------------

    def _counts(self, wanted: Wanted, job: str) -> bool:
        return wanted.token is None or wanted.token == job

    def _on_events(self, pending: Mapping[str, Wanted], events: list[Any]) -> list[str]:
        """Note the progress events; the keys whose ``done`` event came."""
        done: list[str] = []
        for event in events:
            wanted = pending.get(event.key)
            if wanted is None:
                continue
            if event.kind == "started":
                self._underway.add(event.key)
                self._deferred.discard(event.key)
            elif event.kind == "deferred":
                self._underway.discard(event.key)
                self._deferred.add(event.key)
            elif event.kind == "done":
                done.append(event.key)
        return done

    async def _take(self, pending: dict[str, Wanted], keys: list[str]) -> list[BatchResult[T]]:
        """The results of ``keys`` whose records are final for this batch."""
        found: list[BatchResult[T]] = []
        for key, entry in zip(keys, await self._store.get_many(keys), strict=True):
            wanted = pending.get(key)
            if (
                wanted is not None
                and entry is not None
                and entry.done
                and (entry.ok or self._counts(wanted, entry.job))
            ):
                found.append(self._result(pending.pop(key), entry.record))
        return found

    async def _look(self, pending: dict[str, Wanted]) -> list[BatchResult[T]]:
        """Read the records of the items still out; report those whose job is gone."""
        found: list[BatchResult[T]] = []
        keys = list(pending)
        redis: Redis = self._store.redis
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            # The job's key first: a job deletes it only after writing the item's record.
            async with redis.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.exists(self._job_key(key))
                alive = await pipe.execute()
            found.extend(await self._take(pending, chunk))
            for key, exists in zip(chunk, alive, strict=True):
                if key in pending and not exists:
                    found.append(await self._lost(key, pending.pop(key)))
        return found

    async def _lost(self, key: str, wanted: Wanted) -> BatchResult[T]:
        entry = await self._store.get(key)
        error = JobLost(
            "the item's job is gone from the queue without a result (expired, deleted, or "
            "failed outside the item); enqueue the item again to redo it",
            call="queue",
        )
        result: BatchResult[T] = BatchResult(wanted.index, wanted.key, wanted.input, error=error)
        record = result.to_record()
        if entry is not None and entry.pending is not None:
            record["pending"] = dict(entry.pending)  # still findable by a new job
        final = Entry(wanted.token or "", "done", record)
        with contextlib.suppress(Exception):
            await self._store.finish(key, final, "collector")
        self._records[wanted.key] = record
        return result

    def _result(self, wanted: Wanted, record: Mapping[str, Any]) -> BatchResult[T]:
        self._records[wanted.key] = dict(record)
        elapsed = record.get("elapsed")
        took = float(elapsed) if isinstance(elapsed, int | float) else 0.0
        if record.get("ok") is True:
            try:
                value = self._decode(record.get("value"))
            except Exception as exc:
                error = ItemError({"type": type(exc).__name__, "message": f"unreadable: {exc}"})
                return BatchResult(wanted.index, wanted.key, wanted.input, error=error)
            return BatchResult(wanted.index, wanted.key, wanted.input, value=value, elapsed=took)
        error_info = record.get("error")
        error = ItemError(error_info if isinstance(error_info, Mapping) else {})
        return BatchResult(wanted.index, wanted.key, wanted.input, error=error, elapsed=took)

    def _count(self, result: BatchResult[T], checkpoint: Checkpoint | None) -> None:
        key = result.key
        kj = key_json(key)
        self._underway.discard(kj)
        self._deferred.discard(kj)
        if result.resumed:
            self._skipped += 1
        elif result.ok:
            self._succeeded += 1
        else:
            self._failed += 1
        record = self._records.get(key)
        if checkpoint is not None and record is not None:
            checkpoint.write(record)
