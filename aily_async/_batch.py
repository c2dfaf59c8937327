"""Batch fan-out: many skill calls or runs, bounded concurrency, every item accounted for.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import attrs

from . import _validation as v
from ._checkpoint import Checkpoint, CheckpointError, Key, is_key, to_json
from ._errors import AilyError, AilyNotFoundError, AilyValidationError
from ._hooks import RequestEvent
from ._models import RunStatus, SkillResult, _converter
from ._polling import PollPolicy
from ._progress import BatchProgress, ProgressBar
from ._runs import RunHandle, RunResult

if TYPE_CHECKING:
    from ._client import AilyClient

__all__ = ["Batch", "BatchResult", "BatchRun", "RunFailedError"]

logger = logging.getLogger("aily_async")

T = TypeVar("T")

#: What a batch accepts as inputs.
Inputs = Iterable[Any] | AsyncIterable[Any]
#: An item's checkpoint key (a str or int, unique in the batch): a function of the input, or
#: the name of a field of dict inputs (taken out of the input before the call).
KeyFunction = Callable[[Any], Key]
KeyOption = KeyFunction | str | None
#: ``True`` (a progress bar on stderr), a :class:`ProgressBar`, or a callback.
ProgressOption = bool | ProgressBar | Callable[[BatchProgress], object] | None

_SKILL_FIELDS = ("query", "input", "files", "variables", "biz_user_id")
_RUN_FIELDS = ("message", "content_type", "skill_id", "skill_input", "metadata", "biz_user_id")
_CANCEL_TIMEOUT = 10.0


class RunFailedError(AilyError):
    """A run of a batch ended in a state other than ``COMPLETED`` (``FAILED``, ``EXPIRED``…).

    ``result`` is the :class:`RunResult` (the final ``run`` and any answer messages).
    """

    def __init__(self, result: RunResult) -> None:
        self.result = result
        run = result.run
        detail = ""
        if run.error is not None and (run.error.code or run.error.message):
            detail = f": {run.error.code or ''} {run.error.message or ''}".rstrip()
        super().__init__(f"run {run.id} ended {run.status.value}{detail}", call="batch.runs")

    def __reduce__(self) -> tuple[object, ...]:
        return (RunFailedError, (self.result,))


@attrs.frozen(repr=False)
class BatchResult(Generic[T]):
    """One item of a batch: its ``value``, or the ``error`` it failed with (never both).

    ``index`` is the input's position, ``key`` its checkpoint key (the index unless a ``key``
    function was given), ``elapsed`` the seconds it took, ``resumed`` true when it was read
    from the checkpoint instead of being done again.
    """

    index: int
    key: Key
    input: Any
    value: T | None = None
    error: Exception | None = None
    elapsed: float = 0.0
    resumed: bool = False

    @property
    def ok(self) -> bool:
        """True when the item succeeded."""
        return self.error is None

    def unwrap(self) -> T:
        """The value, or raise the item's error."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]

    def __repr__(self) -> str:
        key = "" if self.key == self.index else f" key={self.key!r}"
        took = "resumed" if self.resumed else f"{self.elapsed:.2f}s"
        if self.error is not None:
            outcome = f"error {type(self.error).__name__}: {_short(str(self.error), 120)}"
        else:
            outcome = f"ok {_short(repr(self.value), 120)}"
        return f"<BatchResult #{self.index}{key} {outcome} {took}>"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- the request hook that tells when an item's call has left --------------------------------


class _Item:
    __slots__ = ("effect", "index", "input", "key", "owner", "pending", "sent")

    def __init__(
        self,
        owner: BatchRun[Any],
        index: int,
        key: Key,
        input: Any,
        pending: Mapping[str, Any] | None,
        effect: str | None,
    ) -> None:
        self.owner = owner
        self.index = index
        self.key = key
        self.input = input
        self.pending = pending
        self.effect = effect
        #: True once the item's effectful call (skills.start, runs.create) has been sent.
        self.sent = False

    def note_pending(self, info: Mapping[str, Any]) -> None:
        """Checkpoint that the item's effect (a run) exists and is not finished yet."""
        self.owner._note_pending(self, info)


_current_item: contextvars.ContextVar[_Item | None] = contextvars.ContextVar(
    "aily_batch_item", default=None
)


def _on_request(event: object) -> None:
    """Client request hook: mark the current batch item as sent (no await: runs in-line)."""
    if isinstance(event, RequestEvent):
        item = _current_item.get()
        if item is not None and (item.effect is None or event.call == item.effect):
            item.sent = True


def _install_hook(client: AilyClient) -> None:
    hooks = client._hooks
    if _on_request not in hooks["request"]:
        hooks["request"] = (*hooks["request"], _on_request)


class _Worker:
    __slots__ = ("item", "number", "session", "stopped")

    def __init__(self, number: int) -> None:
        self.number = number
        self.item: _Item | None = None
        #: Set before the batch cancels this worker (any other CancelledError is the item's).
        self.stopped = False
        #: The session a ``per_worker`` run batch keeps between items (``None``: none yet).
        self.session: str | None = None


class _End:
    pass


class _Crash:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = _End()
Work = Callable[[_Item, _Worker], Awaitable[T]]


class BatchRun(Generic[T]):
    """A batch, ready to run once: ``await`` it for every result in input order, or iterate
    over it (preferably inside ``async with``) for results as they finish.

    ``progress`` is a live :class:`BatchProgress` snapshot.
    """

    def __init__(
        self,
        client: AilyClient,
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
        encode: Callable[[T], Any],
        decode: Callable[[Any], T],
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
        self._key_fn = key
        self._grace = float(grace)
        # The item's effectful call (e.g. "runs.create"): its sending marks an item as sent
        # (see grace), and its limiter is the wait the progress shows. None: any request.
        self._effect = effect
        self._encode = encode
        self._decode = decode
        self._checkpoint = Checkpoint(checkpoint) if checkpoint is not None else None
        self._bar: ProgressBar | None = None
        self._callback: Callable[[BatchProgress], object] | None = None
        if progress is True:
            self._bar = ProgressBar()
        elif isinstance(progress, ProgressBar):
            self._bar = progress
        elif callable(progress):
            self._callback = progress
        elif progress not in (None, False):
            raise TypeError(
                f"progress must be a bool, a ProgressBar or a callable, not {progress!r}"
            )

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
        self._slots: list[_Worker] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._ticker: asyncio.Task[None] | None = None
        self._pull_lock: asyncio.Lock | None = None
        self._live = 0
        self._next_index = 0
        self._exhausted = False
        self._stopping = False
        self._seen: set[Key] = set()
        self._restored: dict[Key, dict[str, Any]] = {}
        self._succeeded = 0
        self._failed = 0
        self._skipped = 0
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public surface -------------------------------------------------------------------

    @property
    def name(self) -> str:
        """What the batch calls (``"skills.start"``, ``"runs"``, or the function's name)."""
        return self._name

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
        _install_hook(self._client)
        if isinstance(self._inputs, AsyncIterable):
            self._async_inputs = aiter(self._inputs)
        else:
            self._sync_inputs = iter(self._inputs)
        clean = False
        try:
            if self._checkpoint is not None:
                self._restored = self._checkpoint.open()
            self._slots = [_Worker(n) for n in range(self._concurrency)]
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

    async def _worker(self, slot: _Worker) -> None:
        assert self._queue is not None
        assert self._loop is not None
        loop = self._loop
        try:
            while not self._stopping:
                item = await self._next_item()
                if item is None:
                    return
                slot.item = item
                _current_item.set(item)
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
                    _current_item.set(None)
                    slot.item = None
                self._finish(result, record=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the batch itself broke: the input iterator, the checkpoint
            self._stopping = True
            self._queue.put_nowait(_Crash(exc))
        finally:
            self._live -= 1
            if self._live == 0:
                self._queue.put_nowait(_END)

    async def _next_item(self) -> _Item | None:
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

    def _admit(self, index: int, raw: Any) -> _Item | None:
        """Make an item of an input, or finish it at once (bad key, done in the checkpoint)."""
        try:
            key = index if self._key_fn is None else self._key_fn(raw)
            if not is_key(key):
                raise TypeError(f"key() must return a str or an int, got {type(key).__name__}")
        except Exception as exc:
            self._finish(BatchResult(index, index, raw, error=exc), record=False)
            return None
        if key in self._seen:
            duplicate = ValueError(f"duplicate key {key!r} (input #{index}): keys must be unique")
            self._finish(BatchResult(index, key, raw, error=duplicate), record=False)
            return None
        self._seen.add(key)
        record = self._restored.get(key)
        pending: Mapping[str, Any] | None = None
        if record is not None:
            if "input" in record and record["input"] != to_json(raw):
                error = CheckpointError(
                    f"the checkpoint holds a different input under key {key!r}: were the "
                    "inputs reordered? Use key= to key items by content, or a new checkpoint"
                )
                self._finish(BatchResult(index, key, raw, error=error), record=False)
                return None
            if record.get("ok") is True:
                try:
                    value = self._decode(record.get("value"))
                except Exception:
                    logger.warning("checkpoint: cannot read the value of key %r, redoing it", key)
                else:
                    elapsed = record.get("elapsed")
                    done = BatchResult(
                        index,
                        key,
                        raw,
                        value=value,
                        elapsed=float(elapsed) if isinstance(elapsed, int | float) else 0.0,
                        resumed=True,
                    )
                    self._finish(done, record=False)
                    return None
            if isinstance(record.get("pending"), dict):
                pending = record["pending"]
        return _Item(self, index, key, raw, pending, self._effect)

    def _finish(self, result: BatchResult[T], *, record: bool) -> None:
        assert self._queue is not None
        if record and self._checkpoint is not None:
            self._checkpoint.write(self._record(result))
        if result.resumed:
            self._skipped += 1
        elif result.ok:
            self._succeeded += 1
        else:
            self._failed += 1
        self._queue.put_nowait(result)
        self._report()

    def _record(self, result: BatchResult[T]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "key": result.key,
            "index": result.index,
            "ok": result.ok,
            "input": result.input,
        }
        if result.error is None:
            record["value"] = self._encode(result.value)  # type: ignore[arg-type]
        else:
            record["error"] = _error_record(result.error)
        record["elapsed"] = round(result.elapsed, 3)
        return record

    def _note_pending(self, item: _Item, info: Mapping[str, Any]) -> None:
        if self._checkpoint is not None:
            self._checkpoint.write(
                {"key": item.key, "index": item.index, "input": item.input, "pending": dict(info)}
            )

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
        limiter = self._client.limiter_for(self._effect)
        if limiter is None:
            return 0.0, 0
        waiting = getattr(limiter, "waiting", 0)
        try:
            wait = float(limiter.next_grant_in())  # type: ignore[attr-defined]
            wait += waiting * float(getattr(limiter, "interval", 0.0))
        except (AttributeError, RuntimeError, TypeError):
            wait = 0.0
        return wait, int(waiting)

    async def _tick(self, bar: ProgressBar) -> None:
        while True:
            bar.update(self.progress)
            await asyncio.sleep(bar.tick)

    async def _shutdown(self, clean: bool) -> None:
        """Stop the workers (see "Stopping"), whatever happens to the caller meanwhile."""
        self._stopping = True
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
            interrupted = await _wait_all(tasks) or interrupted
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


async def _wait_all(tasks: list[asyncio.Task[None]]) -> bool:
    """Wait until every task is done, even if cancelled meanwhile; True if we were."""
    interrupted = False
    while True:
        pending = [task for task in tasks if not task.done()]
        if not pending:
            break
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            interrupted = True
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: workers report their errors through the queue
    return interrupted


async def _finish_despite_cancel(task: asyncio.Task[None]) -> None:
    """Await ``task`` to its end; if we are cancelled meanwhile, still wait, then re-raise."""
    interrupted = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            interrupted = True
    if interrupted:
        raise asyncio.CancelledError


async def _settle_create(create: asyncio.Future[RunHandle], *, sent: bool) -> RunHandle | None:
    """The item was cancelled while creating its run. If the request had not left, cancel it;
    if it had, wait (bounded) for its answer: the run it made, for the caller to cancel, so no
    run of a stopped batch goes on server-side. Never raises an :class:`Exception`."""
    if not sent:
        create.cancel()
    made: list[RunHandle] = []

    async def settle() -> None:
        try:
            made.append(await asyncio.wait_for(create, _CANCEL_TIMEOUT))
        except asyncio.CancelledError:
            pass  # never sent: no run was made
        except Exception as exc:
            logger.warning("a stopped batch item's run create did not answer: %s", exc)

    with contextlib.suppress(asyncio.CancelledError):  # the caller re-raises its own
        await _finish_despite_cancel(asyncio.get_running_loop().create_task(settle()))
    return made[0] if made else None


async def _cancel_run(handle: RunHandle) -> None:
    """Cancel a run server-side and wait (bounded) until it has ended; never raises an
    :class:`Exception` (a session whose run could not be confirmed ended is dropped anyway)."""

    async def cancel() -> None:
        try:
            await asyncio.wait_for(handle.cancel(), _CANCEL_TIMEOUT)
        except Exception as exc:
            logger.warning("could not cancel run %s of a stopped batch item: %s", handle.id, exc)

    await _finish_despite_cancel(asyncio.get_running_loop().create_task(cancel()))


def _error_record(error: BaseException) -> dict[str, Any]:
    record: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    for name in ("code", "http_status", "log_id"):
        value = getattr(error, name, None)
        if value is not None:
            record[name] = value
    return record


def _encode(value: Any) -> Any:
    return _converter.unstructure(value)


def _decode_skill(raw: Any) -> SkillResult:
    return _converter.structure(raw, SkillResult)


def _decode_run(raw: Any) -> RunResult:
    return _converter.structure(raw, RunResult)


def _identity(raw: Any) -> Any:
    return raw


def _skill_args(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        return {"query": raw}
    if isinstance(raw, Mapping):
        unknown = sorted(str(name) for name in raw if name not in _SKILL_FIELDS)
        if unknown:
            raise AilyValidationError(
                "input",
                f"has unknown fields {unknown} (expected: {', '.join(_SKILL_FIELDS)})",
                call="batch.skills",
            )
        return dict(raw)
    raise AilyValidationError(
        "input",
        "must be a query string or a dict of skills.start arguments",
        call="batch.skills",
        got=type(raw).__name__,
    )


def _run_args(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        return {"message": raw}
    if not isinstance(raw, Mapping):
        raise AilyValidationError(
            "input",
            "must be a message string or a dict with 'message'",
            call="batch.runs",
            got=type(raw).__name__,
        )
    args = dict(raw)
    if "content" in args and "message" not in args:
        args["message"] = args.pop("content")
    unknown = sorted(str(name) for name in args if name not in _RUN_FIELDS)
    if unknown:
        raise AilyValidationError(
            "input",
            f"has unknown fields {unknown} (expected: {', '.join(_RUN_FIELDS)})",
            call="batch.runs",
        )
    if not isinstance(args.get("message"), str):
        raise AilyValidationError("input.message", "is required (a string)", call="batch.runs")
    return args


def _key_option(
    key: KeyOption, keep: tuple[str, ...] = ()
) -> tuple[KeyFunction | None, str | None]:
    """A key function, and the input field to drop before the call (for ``key="field"``,
    unless the field is one of the call's own arguments ``keep``: ``key="query"`` keys by the
    query and still sends it)."""
    if key is None or callable(key):
        return key, None
    if not isinstance(key, str) or not key:
        raise TypeError(f"key must be a function or a field name, got {key!r}")
    field = key

    def of_field(raw: Any) -> Key:
        if not isinstance(raw, Mapping) or field not in raw:
            raise AilyValidationError("input", f"has no key field {field!r}", call="batch")
        value: Key = raw[field]
        return value

    return of_field, (None if field in keep else field)


def _without(raw: Any, field: str | None) -> Any:
    if field is not None and isinstance(raw, Mapping) and field in raw:
        return {name: value for name, value in raw.items() if name != field}
    return raw


def _completed(result: RunResult) -> RunResult:
    if not result.ok:
        raise RunFailedError(result)
    return result


class Batch:
    """Batch fan-out of skill calls and runs: ``client.batch.skills(...)``,
    ``client.batch.runs(...)``, ``client.batch.map(...)``.

    Each returns a :class:`BatchRun`: ``await`` it for a list of :class:`BatchResult` in input
    order, or ``async for`` over it (inside ``async with``) for results as they finish
    (``ordered=True``: in input order). Options shared by all three:

    * ``concurrency``: items worked on at once (each under the client's rate limiter);
    * ``key``: each input's checkpoint key (default: its index): a function of the input, or
      the name of a field of dict inputs (that field is not sent, unless it is a call argument
      such as ``query`` or ``message``);
    * ``progress``: ``True`` for a progress bar on stderr, or a callback taking a
      :class:`BatchProgress` after each item;
    * ``checkpoint``: a JSON Lines file of finished items; a batch started again with it skips
      what is done;
    * ``grace``: seconds that items already underway get to finish when the batch is stopped.
    """

    __slots__ = ("_client",)

    def __init__(self, client: AilyClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<Batch of {self._client!r}>"

    def skills(
        self,
        app_id: str,
        skill_id: str,
        inputs: Inputs,
        *,
        concurrency: int = 16,
        ordered: bool = False,
        key: KeyOption = None,
        progress: ProgressOption = None,
        checkpoint: str | os.PathLike[str] | None = None,
        grace: float = 5.0,
        biz_user_id: str | None = None,
    ) -> BatchRun[SkillResult]:
        """Start skill ``skill_id`` of app ``app_id`` once per input.

        An input is a query string, or a dict of :meth:`Skills.start` arguments (``query``,
        ``input``, ``files``, ``variables``, ``biz_user_id``). Each value is a
        :class:`SkillResult`.
        """
        call = "batch.skills"
        v.app_id(call, app_id)
        v.skill_id(call, skill_id)
        client = self._client
        key_fn, field = _key_option(key, keep=_SKILL_FIELDS)

        async def work(item: _Item, slot: _Worker) -> SkillResult:
            args = _skill_args(_without(item.input, field))
            if biz_user_id is not None:
                args.setdefault("biz_user_id", biz_user_id)
            return await client.skills.start(app_id, skill_id, **args)

        return BatchRun(
            client,
            "skills.start",
            work,
            inputs,
            concurrency=concurrency,
            ordered=ordered,
            key=key_fn,
            progress=progress,
            checkpoint=checkpoint,
            grace=grace,
            effect="skills.start",
            encode=_encode,
            decode=_decode_skill,
        )

    def runs(
        self,
        app_id: str,
        inputs: Inputs,
        *,
        concurrency: int = 16,
        session: Literal["fresh", "per_worker"] = "fresh",
        skill_id: str | None = None,
        timeout: float | None = None,
        poll: PollPolicy | None = None,
        ordered: bool = False,
        key: KeyOption = None,
        progress: ProgressOption = None,
        checkpoint: str | os.PathLike[str] | None = None,
        grace: float = 5.0,
        biz_user_id: str | None = None,
    ) -> BatchRun[RunResult]:
        """Ask app ``app_id`` each input: send it as a message, create a run, wait for the
        answer. Each value is a :class:`RunResult`; a run that ends other than ``COMPLETED``
        fails its item with :class:`RunFailedError`.

        An input is a message string or a dict with ``message`` and optionally
        ``content_type``, ``skill_id``, ``skill_input``, ``metadata``, ``biz_user_id``.
        ``session``: ``"fresh"`` (a new session per item) or ``"per_worker"`` (one session per
        worker, reused). ``timeout``: seconds an item's run may take before it is cancelled
        and the item fails.
        """
        call = "batch.runs"
        v.check_str(call, "app_id", app_id, max_len=64, required=True)
        if session not in ("fresh", "per_worker"):
            raise ValueError(f"session must be 'fresh' or 'per_worker', got {session!r}")
        if skill_id is not None:
            v.check_str(call, "skill_id", skill_id, max_len=32, required=True)
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        client = self._client
        reuse = session == "per_worker"
        key_fn, field = _key_option(key, keep=(*_RUN_FIELDS, "content"))

        async def adopt(item: _Item, pending: Mapping[str, Any]) -> RunResult | None:
            """Follow the run an interrupted batch created for this item, if it can be used."""
            sid, rid = pending.get("session_id"), pending.get("run_id")
            if not isinstance(sid, str) or not isinstance(rid, str):
                return None
            try:
                run = await client.runs.get(sid, rid)
            except (AilyNotFoundError, AilyValidationError):
                return None
            if run.status == RunStatus.CANCELLED:
                return None  # the interrupted batch cancelled it on its way out: start over
            item.sent = True
            handle = client.runs.attach(run, poll=poll)
            try:
                return await handle.result(timeout)
            except BaseException:
                if not handle.done:
                    await _cancel_run(handle)
                raise

        async def work(item: _Item, slot: _Worker) -> RunResult:
            args = _run_args(_without(item.input, field))
            biz = args.get("biz_user_id", biz_user_id)
            if item.pending is not None:
                adopted = await adopt(item, item.pending)
                if adopted is not None:
                    return _completed(adopted)
            # Lease a session with no active run: the worker's own (taken out of the slot, so
            # an error drops it) or a new one.
            sid, slot.session = slot.session, None
            if sid is None:
                sid = (await client.sessions.create(biz_user_id=biz)).id
            handle: RunHandle | None = None
            try:
                await client.messages.create(
                    sid,
                    args["message"],
                    content_type=args.get("content_type", "MDX"),
                    biz_user_id=biz,
                )
                # A task of its own: if the item is cancelled while the create is on the wire,
                # its answer is still awaited so the run it made can be cancelled.
                create = asyncio.ensure_future(
                    client.runs.create(
                        sid,
                        app_id=app_id,
                        skill_id=args.get("skill_id", skill_id),
                        skill_input=args.get("skill_input"),
                        metadata=args.get("metadata"),
                        poll=poll,
                        biz_user_id=biz,
                    )
                )
                try:
                    handle = await asyncio.shield(create)
                except asyncio.CancelledError:
                    made = await _settle_create(create, sent=item.sent)
                    if made is not None:  # record it first: a failed cancel leaves it adoptable
                        item.note_pending({"session_id": sid, "run_id": made.id})
                        await _cancel_run(made)
                    raise
                item.note_pending({"session_id": sid, "run_id": handle.id})
                result = await handle.result(timeout)
            except BaseException:
                if handle is not None and not handle.done:
                    await _cancel_run(handle)
                raise
            if reuse:
                slot.session = sid  # its run has ended: the next item may use it
            return _completed(result)

        return BatchRun(
            client,
            "runs",
            work,
            inputs,
            concurrency=concurrency,
            ordered=ordered,
            key=key_fn,
            progress=progress,
            checkpoint=checkpoint,
            grace=grace,
            effect="runs.create",
            encode=_encode,
            decode=_decode_run,
        )

    def map(
        self,
        fn: Callable[[Any], Awaitable[T]],
        inputs: Inputs,
        *,
        concurrency: int = 16,
        ordered: bool = False,
        key: KeyOption = None,
        progress: ProgressOption = None,
        checkpoint: str | os.PathLike[str] | None = None,
        grace: float = 5.0,
        decode: Callable[[Any], T] | None = None,
        name: str | None = None,
    ) -> BatchRun[T]:
        """Call ``await fn(input)`` once per input, with everything a batch gives (bounded
        concurrency, per-item errors, progress, checkpointing).

        ``fn`` should make its calls through this client. Values are checkpointed as JSON
        (attrs models are unstructured); on resume they come back as that JSON unless
        ``decode`` rebuilds them. ``grace`` covers items that have sent any request.
        """
        if not callable(fn):
            raise TypeError(f"fn must be an async function, got {fn!r}")
        key_fn, _ = _key_option(key)

        async def work(item: _Item, slot: _Worker) -> T:
            return await fn(item.input)

        return BatchRun(
            self._client,
            name or str(getattr(fn, "__name__", "map")),
            work,
            inputs,
            concurrency=concurrency,
            ordered=ordered,
            key=key_fn,
            progress=progress,
            checkpoint=checkpoint,
            grace=grace,
            effect=None,
            encode=_encode,
            decode=decode or _identity,
        )
