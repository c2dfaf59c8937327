"""``RunHandle``: an awaitable view of a run that polls it, sparingly, until it ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import AilyClosedError, RunWaitTimeout
from ._models import Message, Run
from ._polling import PollPolicy

if TYPE_CHECKING:
    from ._client import AilyClient

__all__ = ["RunHandle", "RunResult"]


@attrs.frozen(repr=False)
class RunResult:
    """A finished round trip: the final ``run`` and the app's answer ``messages``."""

    run: Run
    messages: tuple[Message, ...] = ()

    def __repr__(self) -> str:
        text = self.text
        snippet = text if len(text) <= 60 else text[:57] + "..."
        return f"RunResult({self.run!r}, messages={len(self.messages)}, text={snippet!r})"

    @property
    def text(self) -> str:
        """The answer's text: the assistant messages joined by blank lines."""
        return "\n\n".join(m.text for m in self.messages if m.text)

    @property
    def ok(self) -> bool:
        """True when the run completed."""
        return self.run.status.value == "COMPLETED"


class RunHandle:
    """A run being followed. ``await handle`` returns the final :class:`Run`.

    Any number of awaiters, ``wait()`` calls and ``watch()`` loops share one poll loop, started
    when the first one begins and stopped as soon as the last one leaves (cancelled, timed out or
    done): a handle nobody waits on costs no request. Polls follow the client's
    :class:`PollPolicy` and go through its rate limiter like every other call.
    """

    __slots__ = (
        "_born",
        "_client",
        "_listeners",
        "_policy",
        "_polls",
        "_run",
        "_subscribers",
        "_task",
        "_version",
    )

    def __init__(self, client: AilyClient, run: Run, *, poll: PollPolicy | None = None) -> None:
        self._client = client
        self._run = run
        self._policy = poll
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[asyncio.Future[None]] = []
        self._subscribers = 0
        self._version = 0
        self._polls = 0
        self._born = asyncio.get_running_loop().time()

    # -- state ----------------------------------------------------------------------------

    @property
    def run(self) -> Run:
        """The latest state of the run seen."""
        return self._run

    @property
    def id(self) -> str:
        """The run id."""
        return self._run.id

    @property
    def session_id(self) -> str:
        """The session the run belongs to."""
        return self._run.session_id or ""

    @property
    def done(self) -> bool:
        """True once the run is seen in a terminal state."""
        return self._run.status.is_terminal

    @property
    def polls(self) -> int:
        """How many GETs this handle has spent polling."""
        return self._polls

    def __repr__(self) -> str:
        try:
            age = f" age={asyncio.get_running_loop().time() - self._born:.1f}s"
        except RuntimeError:
            age = ""
        state = "polling" if self._task is not None else "idle"
        return (
            f"<RunHandle {self._run.id} {self._run.status.value}{age} "
            f"polls={self._polls} {state} waiters={self._subscribers}>"
        )

    # -- waiting --------------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, Run]:
        return self.wait().__await__()

    async def wait(self, timeout: float | None = None) -> Run:
        """The final run. After ``timeout`` seconds raise :class:`RunWaitTimeout` (the run goes
        on server-side; waiting again resumes)."""
        if self._run.status.is_terminal:
            return self._run
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self._subscribe()
        try:
            while not self._run.status.is_terminal:
                # Listening inline (no helper coroutine) keeps a pending waiter small.
                fut, timer = self._listen(loop, deadline)
                try:
                    await fut
                except _Expired:
                    raise RunWaitTimeout(
                        f"run {self.id} still {self._run.status.value} after {timeout:g}s "
                        "(it goes on server-side; wait again to resume)",
                        call="runs.wait",
                        run=self._run,
                    ) from None
                finally:
                    self._unlisten(fut, timer)
            return self._run
        finally:
            self._unsubscribe()

    async def watch(self) -> AsyncIterator[Run]:
        """Yield the run now and at each status change (REQUIRES_MESSAGE included), the last
        one terminal."""
        loop = asyncio.get_running_loop()
        seen = -1
        self._subscribe()
        try:
            while True:
                if seen != self._version:
                    seen = self._version
                    yield self._run
                    if self._run.status.is_terminal:
                        return
                    continue
                fut, _ = self._listen(loop, None)
                try:
                    await fut
                finally:
                    self._unlisten(fut, None)
        finally:
            self._unsubscribe()

    async def refresh(self) -> Run:
        """Fetch the run once and return it."""
        run = await self._client.runs.get(self.session_id, self.id)
        self._update(run)
        return run

    async def cancel(self) -> Run:
        """Cancel the run server-side and return its final state."""
        run = await self._client.runs.cancel(self.session_id, self.id)
        self._update(run)
        if run.status.is_active:
            return await self.wait()
        return run

    async def messages(self) -> list[Message]:
        """The app's answer: the assistant messages of this run, oldest first."""
        return [
            m
            async for m in self._client.messages.list(self.session_id, run_id=self.id)
            if m.is_assistant
        ]

    async def result(self, timeout: float | None = None) -> RunResult:
        """Wait for the run, then return it with its answer messages."""
        run = await self.wait(timeout)
        return RunResult(run, tuple(await self.messages()))

    async def stream(self, *, interval: float | None = None) -> AsyncIterator[str]:
        """Yield the answer's new text as it is written, until the run ends.

        Polls the run's messages with ``with_partial_message=true`` every ``interval`` seconds
        (default: the poll policy's interval); when no message is being written it checks the
        run's status and stops once the run has ended and all its text was yielded.
        """
        delay = (
            interval
            if interval is not None
            else (self._policy or self._client.poll_policy).interval
        )
        written: dict[str, int] = {}
        while True:
            # Known ended before this pass began: the pass sees all of the text.
            ended = self._run.status.is_terminal
            writing = grew = False
            async for message in self._client.messages.list(
                self.session_id, run_id=self.id, with_partial_message=True
            ):
                if not message.is_assistant:
                    continue
                text = message.text
                already = written.get(message.id, 0)
                if len(text) > already:
                    written[message.id] = len(text)
                    grew = True
                    yield text[already:]
                if message.status not in (None, "COMPLETED"):
                    writing = True
            if ended:
                return
            if not (writing and grew):
                # Nothing is being written, or it stalled (a message may stay IN_PROGRESS after
                # its run ended): check the run.
                run = await self.refresh()
                if run.status.is_terminal:
                    continue  # one last pass for the text written since
            await asyncio.sleep(delay)

    # -- the shared poll loop ---------------------------------------------------------------

    def _subscribe(self) -> None:
        self._ensure_polling()  # first: it raises AilyClosedError on a closed client
        self._subscribers += 1

    def _ensure_polling(self) -> None:
        if self._task is None and self._run.status.is_active:
            self._client._open()
            self._task = asyncio.get_running_loop().create_task(self._poll_loop())
            self._client._pollers.add(self)

    def _unsubscribe(self) -> None:
        self._subscribers -= 1
        if self._subscribers == 0 and self._task is not None:
            self._task.cancel()
            self._task = None
            self._client._pollers.discard(self)

    def _listen(
        self, loop: asyncio.AbstractEventLoop, deadline: float | None
    ) -> tuple[asyncio.Future[None], asyncio.TimerHandle | None]:
        """A future resolved at the next status change (or set to _Expired at ``deadline``)."""
        # A loop that ended on an error (reported to the waiters of that moment) starts again.
        self._ensure_polling()
        fut: asyncio.Future[None] = loop.create_future()
        self._listeners.append(fut)
        timer = loop.call_at(deadline, _expire, fut) if deadline is not None else None
        return fut, timer

    def _unlisten(self, fut: asyncio.Future[None], timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()
        if not fut.done() or fut.cancelled():
            with contextlib.suppress(ValueError):
                self._listeners.remove(fut)

    def _notify(self, error: BaseException | None = None) -> None:
        listeners, self._listeners = self._listeners, []
        for fut in listeners:
            if not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)

    def _update(self, run: Run) -> None:
        old = self._run
        self._run = run
        if run.status != old.status:
            self._version += 1
            if run.status.is_terminal and run.duration is not None:
                self._client.durations.add(run.duration)
            self._notify()

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        policy = self._policy or self._client.poll_policy
        closed = self._client.closed_event()
        # The schedule lives in this frame's locals (not a generator) and the sleeps are bare
        # timer futures (not asyncio.sleep coroutines): a pending handle stays small.
        gap, adaptive = policy.plan(self._client.durations, loop.time() - self._born)
        first = True
        try:
            while True:
                if closed.is_set():
                    raise AilyClosedError(
                        "the client was closed while waiting for the run", call="runs.wait"
                    )
                nap: asyncio.Future[None] = loop.create_future()
                timer = loop.call_later(policy.jittered(gap, first=first), _wake, nap)
                try:
                    await nap
                finally:
                    timer.cancel()
                first = False
                # Queue for the poll's grant here, before any request frame exists: thousands
                # of handles waiting on the limiter then cost little memory each.
                limiter = self._client.limiter_for("runs.get")
                if limiter is not None:
                    await self._client._grant("runs.get", limiter)
                granted = limiter is not None
                self._polls += 1
                run = await self._client.runs._get(self.session_id, self.id, granted=granted)
                self._update(run)
                if run.status.is_terminal:
                    return
                gap = policy.next_gap(gap, loop.time() - self._born, adaptive)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if self._client.closed and not isinstance(exc, AilyClosedError):
                exc = AilyClosedError(
                    "the client was closed while waiting for the run", call="runs.wait"
                )
            self._notify(exc)
        finally:
            if self._task is asyncio.current_task():
                self._task = None
                self._client._pollers.discard(self)

    def _abort(self, error: BaseException) -> None:
        """End the poll loop and every wait with ``error`` (the client is closing)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._notify(error)


class _Expired(Exception):
    pass


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(_Expired())


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
