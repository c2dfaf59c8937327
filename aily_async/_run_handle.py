"""``RunHandle``: an awaitable view of one run, kept fresh by the shared poll loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Coroutine, Generator
from typing import Any, Protocol

from ._errors import RunWaitTimeout
from ._models import Message, Run, RunResult
from ._poller import Guard, Poller
from ._polling import DurationStats, PollBudget, PollPolicy

__all__ = ["RunCalls", "RunHandle", "TextDelta"]


class TextDelta(str):
    """A piece of a run's answer from :meth:`RunHandle.stream`: a ``str``, plus the
    ``message_id`` it belongs to and whether it is a ``rewrite``.

    ``rewrite=False``: the text continues what was yielded so far for that message (append it).
    ``rewrite=True``: the message's text was replaced (say, a placeholder, then the answer);
    this is the message's whole new text (replace what was shown for it). Either way, the
    concatenated stream ends up containing every final assistant message.
    """

    __slots__ = ("message_id", "rewrite")

    message_id: str
    rewrite: bool

    def __new__(cls, text: str, message_id: str, *, rewrite: bool = False) -> TextDelta:
        delta = super().__new__(cls, text)
        delta.message_id = message_id
        delta.rewrite = rewrite
        return delta

    def __repr__(self) -> str:
        kind = "rewrite" if self.rewrite else "append"
        return f"TextDelta({str(self)!r}, {self.message_id!r}, {kind})"


class RunCalls(Protocol):
    """The calls a handle makes (``client.runs`` is one)."""

    async def get(self, session_id: str, run_id: str) -> Run:
        """Fetch the run once."""
        ...

    async def cancel(self, session_id: str, run_id: str) -> Run:
        """Ask the service to cancel the run."""
        ...

    def messages(
        self, session_id: str, run_id: str, *, with_partial_message: bool = False
    ) -> AsyncIterator[Message]:
        """The run's messages."""
        ...


def _ended(run: Run) -> bool:
    return run.status.is_terminal


def _changed(old: Run, new: Run) -> bool:
    return old.status != new.status


def _expired(run: Run, timeout: float) -> BaseException:
    return RunWaitTimeout(
        f"run {run.id} still {run.status.value} after {timeout:.3g}s "
        "(it goes on server-side; wait again to resume)",
        call="runs.wait",
        run=run,
    )


class RunHandle:
    """A run being followed. ``await handle`` returns the final :class:`Run`.

    Any number of awaiters, ``wait()`` calls and ``watch()`` loops share one poll loop, started
    when the first one begins and stopped as soon as the last one leaves (cancelled, timed out
    or done): a handle nobody waits on costs no request. Polls follow the client's
    :class:`PollPolicy` and go through its rate limiter like every other call.
    """

    __slots__ = ("_calls", "_poller", "_stats")

    def __init__(
        self,
        run: Run,
        *,
        calls: RunCalls,
        guard: Guard,
        policy: PollPolicy,
        stats: DurationStats,
        budget: PollBudget | None = None,
    ) -> None:
        self._calls = calls
        self._stats = stats
        self._poller: Poller[Run] = Poller(
            run,
            call="runs.wait",
            guard=guard,
            # A partial, not a coroutine function: a poll queued on the limiter holds one
            # frame less.
            fetch=functools.partial(calls.get, run.session_id or "", run.id),
            fetch_call="runs.get",
            ended=_ended,
            changed=_changed,
            expired=_expired,
            policy=policy,
            stats=stats,
            on_change=self._changed,
            budget=budget,
        )

    # -- state ----------------------------------------------------------------------------

    @property
    def run(self) -> Run:
        """The latest state of the run seen."""
        return self._poller.state

    @property
    def id(self) -> str:
        """The run id."""
        return self._poller.state.id

    @property
    def session_id(self) -> str:
        """The session the run belongs to."""
        return self._poller.state.session_id or ""

    @property
    def done(self) -> bool:
        """True once the run is seen in a terminal state."""
        return self._poller.done

    @property
    def polls(self) -> int:
        """How many GETs this handle has spent polling."""
        return self._poller.polls

    def __repr__(self) -> str:
        run = self._poller.state
        return f"<RunHandle {run.id} {run.status.value}{self._poller.describe()}>"

    def _changed(self, run: Run) -> None:
        if run.status.is_terminal and run.duration is not None:
            self._stats.add(run.duration)

    # -- waiting --------------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, Run]:
        return self._poller.wait().__await__()

    def wait(self, timeout: float | None = None) -> Coroutine[Any, Any, Run]:
        """The final run (a coroutine: ``await handle.wait()``). After ``timeout`` seconds
        raise :class:`RunWaitTimeout` (the run goes on server-side; waiting again resumes)."""
        # The poller's own coroutine, not a wrapper around it: a pending wait stays small.
        return self._poller.wait(timeout)

    def watch(self) -> AsyncIterator[Run]:
        """Yield the run now and at each status change (REQUIRES_MESSAGE included), the last
        one terminal."""
        return self._poller.watch()

    async def refresh(self) -> Run:
        """Fetch the run once and return it."""
        run = await self._calls.get(self.session_id, self.id)
        self._poller.update(run)
        return run

    async def cancel(self) -> Run:
        """Cancel the run server-side and return its final state."""
        run = await self._calls.cancel(self.session_id, self.id)
        self._poller.update(run)
        if run.status.is_active:
            return await self.wait()
        return run

    async def messages(self) -> list[Message]:
        """The app's answer: the assistant messages of this run, oldest first."""
        return [
            m async for m in self._calls.messages(self.session_id, self.id) if m.is_assistant
        ]

    async def result(self, timeout: float | None = None) -> RunResult:
        """Wait for the run, then return it with its answer messages."""
        run = await self.wait(timeout)
        return RunResult(run, tuple(await self.messages()))

    async def stream(self, *, interval: float | None = None) -> AsyncIterator[TextDelta]:
        """Yield the answer's text as it is written, until the run ends: each piece a
        :class:`TextDelta` (a ``str``) that either continues its message or, when the service
        replaced the message's text, holds its whole new text (``rewrite=True``).

        Polls the run's messages with ``with_partial_message=true`` every ``interval`` seconds
        (default: the poll policy's interval); when no message is being written it checks the
        run's status and stops once the run has ended and all its text was yielded.
        """
        delay = interval if interval is not None else self._poller.policy.interval
        written: dict[str, str] = {}
        while True:
            # Known ended before this pass began: the pass sees all of the text.
            ended = self.done
            writing = grew = False
            async for message in self._calls.messages(
                self.session_id, self.id, with_partial_message=True
            ):
                if not message.is_assistant:
                    continue
                text = message.text
                before = written.get(message.id, "")
                if text != before:
                    written[message.id] = text
                    grew = True
                    if text.startswith(before):
                        yield TextDelta(text[len(before) :], message.id)
                    else:
                        yield TextDelta(text, message.id, rewrite=True)
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
