"""Running a batch: workers pull inputs, do each item once, and report it; stopping is graceful.

A :class:`BatchRun` runs ``concurrency`` workers. Each takes the next input, makes it an item
(or finishes it at once: a bad or duplicate key, an item found done in the checkpoint), does
its work with :data:`aily_async._hooks.sending` set to the item, and finishes it: checkpointed
first, then counted and handed to the caller (in input order with ``ordered=True``).

Stopping (see "Stopping" in the package docs): workers whose item has not sent its effect
are cancelled at once, the others get ``grace`` seconds, then are cancelled too; the run then
waits for every task it started, compacts the checkpoint if it ended cleanly, and releases it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, TypeVar

from .._hooks import sending
from .._limiter import RateLimiter
from ._admission import Admission
from ._checkpoint import Checkpoint
from ._inputs import Inputs, KeyFunction
from ._items import Item, Work, Worker
from ._progress import BatchProgress, ProgressBar, ProgressOption, limiter_load, progress_option
from ._results import BatchResult
from ._stopping import wait_all

__all__ = ["BatchRun", "Limiters"]

logger = logging.getLogger("aily_async")

T = TypeVar("T")


class Limiters(Protocol):
    """What a batch run needs of the client: the limiter of its effect, for its progress."""

    def limiter_for(self, call: str) -> RateLimiter | None:
        """The limiter that ``call`` goes through."""
        ...


class _End:
    pass


class _Crash:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = _End()


class BatchRun(Generic[T]):
    """A batch, ready to run once: ``await`` it for every result in input order, or iterate
    over it (preferably inside ``async with``) for results as they finish.

    ``progress`` is a live :class:`BatchProgress` snapshot.
    """

    def __init__(
        self,
        client: Limiters,
        name: str,
        work: Work[T],
        inputs: Inputs,
        *,
        concurrency: int,
        ordered: bool,
        key: KeyFunction | None,
        progress: ProgressOption,
        checkpoint: str | os.PathLike[str] | None,
        grace: float,
        effect: str | None,
        decode: Callable[[Any], T],
        identity: Mapping[str, Any],
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if not grace >= 0:
            raise ValueError(f"grace must be >= 0 seconds, got {grace!r}")
        if key is not None and not callable(key):
            raise TypeError(f"key must be a function of the input, got {key!r}")
        if isinstance(inputs, str | bytes | Mapping):
            raise TypeError(
                f"inputs must be an iterable of items, not a single {type(inputs).__name__}"
            )
        self._client = client
        self._name = name
        self._work = work
        self._concurrency = concurrency
        self._ordered = ordered
        self._grace = float(grace)
        # The item's effectful call (e.g. "runs.create"): its sending marks an item as sent
        # (see grace), and its limiter is the wait the progress shows. None: any request.
        self._effect = effect
        # What defines the batch (kind, app, skill...): its checkpoint's header.
        self._checkpoint = (
            Checkpoint(checkpoint, batch=identity) if checkpoint is not None else None
        )
        self._bar, self._callback = progress_option(progress)
        self._admission = Admission(key, decode, self._checkpoint, effect)

        self._sync_inputs: Iterator[Any] | None = None
        self._async_inputs: AsyncIterator[Any] | None = None
        self._inputs = inputs
        self._total: int | None = None
        if isinstance(inputs, AsyncIterable):
            pass
        elif isinstance(inputs, Iterable):
            with contextlib.suppress(TypeError):
                self._total = len(inputs)  # type: ignore[arg-type]
        else:
            raise TypeError(f"inputs must be an iterable or async iterable, not {inputs!r}")

        self._state: Literal["new", "running", "done"] = "new"
        self._gen: AsyncGenerator[BatchResult[T], None] | None = None
        self._queue: asyncio.Queue[BatchResult[T] | _End | _Crash] | None = None
        self._slots: list[Worker] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._ticker: asyncio.Task[None] | None = None
        self._pull_lock: asyncio.Lock | None = None
        self._live = 0
        self._next_index = 0
        self._exhausted = False
        self._stopping = False
        self._succeeded = 0
        self._failed = 0
        self._skipped = 0
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._interrupted = False  # stopped before its end
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public surface -------------------------------------------------------------------

    @property
    def name(self) -> str:
        """What the batch calls (``"skills.start"``, ``"runs"``, or the function's name)."""
        return self._name

    @property
    def underway(self) -> int:
        """Items whose call is already out (they get ``grace`` to finish when stopped)."""
        return sum(1 for slot in self._slots if slot.item is not None and slot.item.sent)

    @property
    def progress(self) -> BatchProgress:
        """A snapshot of where the batch stands now."""
        loop = self._loop
        now = loop.time() if loop is not None else 0.0
        start = self._started_at if self._started_at is not None else now
        end = self._ended_at if self._ended_at is not None else now
        elapsed = max(0.0, end - start)
        finished = self._succeeded + self._failed
        rate = finished / elapsed if finished and elapsed > 0 else 0.0
        total = self._total
        eta: float | None = None
        if total is not None and rate > 0:
            eta = max(0, total - finished - self._skipped) / rate
        wait, waiting = self._limiter_state()
        return BatchProgress(
            name=self._name,
            total=total,
            succeeded=self._succeeded,
            failed=self._failed,
            skipped=self._skipped,
            in_flight=sum(1 for slot in self._slots if slot.item is not None),
            elapsed=elapsed,
            rate=rate,
            eta=eta,
            limiter_wait=wait,
            limiter_waiting=waiting,
            finished=self._state == "done",
            interrupted=self._interrupted,
        )

    def __await__(self) -> Generator[Any, None, list[BatchResult[T]]]:
        return self.collect().__await__()

    async def collect(self) -> list[BatchResult[T]]:
        """Run the whole batch and return every result, in input order."""
        results: list[BatchResult[T]] = []
        async with contextlib.aclosing(self._start()) as stream:
            async for result in stream:
                results.append(result)
        results.sort(key=lambda r: r.index)
        return results

    def __aiter__(self) -> AsyncIterator[BatchResult[T]]:
        self._gen = self._start()
        return self._gen

    async def __aenter__(self) -> BatchRun[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the batch (see "Stopping" in the module docs) and wait until it has stopped."""
        if self._gen is not None:
            await self._gen.aclose()
        if self._loop is None:  # never ran
            self._state = "done"

    def __repr__(self) -> str:
        state = {"new": "not started", "running": "running", "done": "finished"}[self._state]
        return f"<BatchRun {self._name} {state}: {self.progress.describe()}>"

    # -- the run --------------------------------------------------------------------------

    def _start(self) -> AsyncGenerator[BatchResult[T], None]:
        if self._state != "new":
            raise RuntimeError("a batch runs once; make a new one with client.batch")
        self._state = "running"
        return self._run()

    async def _run(self) -> AsyncGenerator[BatchResult[T], None]:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._started_at = loop.time()
        self._queue = asyncio.Queue()
        self._pull_lock = asyncio.Lock()
        if isinstance(self._inputs, AsyncIterable):
            self._async_inputs = aiter(self._inputs)
        else:
            self._sync_inputs = iter(self._inputs)
        clean = False
        try:
            self._admission.open()
            self._slots = [Worker(n) for n in range(self._concurrency)]
            self._live = len(self._slots)
            self._tasks = [loop.create_task(self._worker(slot)) for slot in self._slots]
            if self._bar is not None:
                self._ticker = loop.create_task(self._tick(self._bar))
            buffer: dict[int, BatchResult[T]] = {}
            expected = 0
            while True:
                entry = await self._queue.get()
                if isinstance(entry, _End):
                    break
                if isinstance(entry, _Crash):
                    raise entry.error
                if not self._ordered:
                    yield entry
                    continue
                buffer[entry.index] = entry
                while expected in buffer:
                    yield buffer.pop(expected)
                    expected += 1
            for index in sorted(buffer):  # pragma: no cover - every index is produced
                yield buffer.pop(index)
            clean = True
        finally:
            await self._shutdown(clean)

    async def _worker(self, slot: Worker) -> None:
        assert self._queue is not None
        assert self._loop is not None
        loop = self._loop
        try:
            while not self._stopping:
                item = await self._next_item()
                if item is None:
                    return
                slot.item = item
                sending.set(item.on_send)
                started = loop.time()
                result: BatchResult[T]
                try:
                    value = await self._work(item, slot)
                except asyncio.CancelledError:
                    if slot.stopped:
                        raise
                    # Not ours: the item's own code raised it. Account for the item.
                    result = BatchResult(
                        item.index,
                        item.key,
                        item.input,
                        error=RuntimeError("the item was cancelled from inside its work"),
                        elapsed=loop.time() - started,
                    )
                except Exception as exc:
                    result = BatchResult(
                        item.index, item.key, item.input, error=exc, elapsed=loop.time() - started
                    )
                else:
                    result = BatchResult(
                        item.index, item.key, item.input, value=value, elapsed=loop.time() - started
                    )
                finally:
                    sending.set(None)
                    slot.item = None
                self._finish(result, record=True, live=item.live)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the batch itself broke: the input iterator, the checkpoint
            self._stopping = True
            self._queue.put_nowait(_Crash(exc))
        finally:
            self._live -= 1
            if self._live == 0:
                self._queue.put_nowait(_END)

    async def _next_item(self) -> Item | None:
        assert self._pull_lock is not None
        async with self._pull_lock:
            while not self._stopping and not self._exhausted:
                try:
                    raw = await self._pull()
                except StopAsyncIteration:
                    self._exhausted = True
                    self._total = self._next_index
                    return None
                index = self._next_index
                self._next_index += 1
                item = self._admit(index, raw)
                if item is not None:
                    return item
            return None

    async def _pull(self) -> Any:
        if self._sync_inputs is not None:
            try:
                return next(self._sync_inputs)
            except StopIteration:
                raise StopAsyncIteration from None
        assert self._async_inputs is not None
        return await anext(self._async_inputs)

    def _admit(self, index: int, raw: Any) -> Item | None:
        """Make an item of an input, or finish it at once (bad key, done in the checkpoint)."""
        entry = self._admission.admit(index, raw)
        if isinstance(entry, BatchResult):
            self._finish(entry, record=False)
            return None
        return entry

    def _finish(
        self, result: BatchResult[T], *, record: bool, live: Mapping[str, Any] | None = None
    ) -> None:
        """Checkpoint a result (a failure keeps what finds its item's effect), count it, hand
        it on."""
        assert self._queue is not None
        if record and self._checkpoint is not None:
            line = result.to_record()
            if not result.ok and live is not None:
                line["pending"] = dict(live)
            self._checkpoint.write(line)
        if result.resumed:
            self._skipped += 1
        elif result.ok:
            self._succeeded += 1
        else:
            self._failed += 1
        self._queue.put_nowait(result)
        self._report()

    def _report(self) -> None:
        if self._callback is None:
            return
        try:
            self._callback(self.progress)
        except Exception:
            logger.exception("batch progress callback %r failed", self._callback)

    def _limiter_state(self) -> tuple[float, int]:
        if self._effect is None:
            return 0.0, 0
        return limiter_load(self._client.limiter_for(self._effect))

    async def _tick(self, bar: ProgressBar) -> None:
        while True:
            bar.update(self.progress)
            await asyncio.sleep(bar.tick)

    async def _shutdown(self, clean: bool) -> None:
        """Stop the workers (see "Stopping"), whatever happens to the caller meanwhile."""
        self._stopping = True
        self._interrupted = not clean
        interrupted = False
        tasks = list(self._tasks)
        try:
            for slot, task in zip(self._slots, tasks, strict=True):
                item = slot.item
                if not task.done() and (item is None or not item.sent or not self._grace):
                    slot.stopped = True
                    task.cancel()
            running = [task for task in tasks if not task.done()]
            if running:
                try:
                    await asyncio.wait(running, timeout=self._grace)
                except asyncio.CancelledError:
                    interrupted = True
                for slot, task in zip(self._slots, tasks, strict=True):
                    if not task.done():
                        slot.stopped = True
                        task.cancel()
            if self._ticker is not None:
                self._ticker.cancel()
                tasks.append(self._ticker)
            interrupted = await wait_all(tasks) or interrupted
        finally:
            self._state = "done"
            if self._loop is not None:
                self._ended_at = self._loop.time()
            try:
                if self._bar is not None and self._slots:
                    self._bar.close(self.progress)
                self._report()
            finally:
                self._tasks = []
                self._ticker = None
                if self._checkpoint is not None:
                    try:
                        if clean:
                            self._checkpoint.compact()
                    except OSError as exc:  # every line is already durable: only tidying failed
                        logger.warning(
                            "checkpoint %s: not compacted: %s", self._checkpoint.path, exc
                        )
                    finally:
                        self._checkpoint.close()  # release the lock whatever failed above
        if interrupted:
            raise asyncio.CancelledError
