"""The shared poll loop: follow a remote thing (a run, an agent chat) until it ends.

A :class:`Poller` holds the latest state seen of one thing and polls it for everyone who waits:
any number of ``wait()`` calls and ``watch()`` loops share one loop, started when the first
begins and stopped as soon as the last leaves (cancelled, timed out or done), so a thing nobody
waits on costs no request. Polls follow a :class:`PollPolicy`, and each is an ordinary call of
the transport (limiter, retries, closing). What is polled is given as three functions: fetch
the state (a call named ``fetch_call``, whose quota is waited for before the request is built),
tell whether a state is final, and what a change is.

Two rules serve the waiters' deadlines: a poll that fails for a passing reason does not end the
waits (polling goes on until the policy's ``max_outage``), and the poll before the earliest
deadline is moved up to land just before it, so a wait never reports as unfinished a thing that
finished in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Protocol, TypeVar

from ._errors import AilyError, AilyRateLimitError
from ._polling import DurationStats, PollBudget, PollPolicy
from ._retry import may_have_landed, not_sent

logger = logging.getLogger("aily_async")

__all__ = ["Guard", "Poller"]

S = TypeVar("S")


class Guard(Protocol):
    """What a poller needs of the transport: refuse to start once closed, and a scope that
    ends the poll loop with ``AilyClosedError`` when the client closes."""

    def open(self, call: str = "") -> None:
        """Raise ``AilyClosedError`` if the client is closed."""
        ...

    def scope(self, call: str) -> AbstractAsyncContextManager[None]:
        """Track the current task while inside."""
        ...

    async def reserve(self, call: str) -> None:
        """Wait for quota for the current task's next request of ``call``."""
        ...


class Poller(Generic[S]):
    """The latest state of one thing, and the one poll loop that keeps it fresh."""

    __slots__ = (
        "_born",
        "_budget",
        "_call",
        "_changed",
        "_deadlines",
        "_ended",
        "_expired",
        "_fetch",
        "_fetch_call",
        "_guard",
        "_listeners",
        "_on_change",
        "_policy",
        "_polls",
        "_rtt",
        "_state",
        "_stats",
        "_subscribers",
        "_task",
        "_version",
    )

    def __init__(
        self,
        state: S,
        *,
        call: str,
        guard: Guard,
        fetch: Callable[[], Awaitable[S]],
        fetch_call: str,
        ended: Callable[[S], bool],
        changed: Callable[[S, S], bool],
        expired: Callable[[S, float], BaseException],
        policy: PollPolicy,
        stats: DurationStats,
        on_change: Callable[[S], None] | None = None,
        budget: PollBudget | None = None,
    ) -> None:
        self._state = state
        self._call = call
        self._guard = guard
        self._fetch = fetch
        self._fetch_call = fetch_call
        self._ended = ended
        self._changed = changed
        self._expired = expired
        self._policy = policy
        self._stats = stats
        self._on_change = on_change
        if policy.share is not None and budget is None:
            raise ValueError(f"{call}: a shared polling policy needs the budget it shares")
        self._budget = budget if policy.share is not None else None
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[asyncio.Future[None]] = []
        self._subscribers = 0
        self._version = 0
        self._polls = 0
        self._rtt = 0.0  # how long the last poll took
        self._deadlines: list[float] | None = None  # of the waits under way that have one
        self._born = asyncio.get_running_loop().time()

    # -- state ----------------------------------------------------------------------------

    @property
    def state(self) -> S:
        """The latest state seen."""
        return self._state

    @property
    def done(self) -> bool:
        """True once the state seen is final."""
        return self._ended(self._state)

    @property
    def polls(self) -> int:
        """How many polls were sent."""
        return self._polls

    @property
    def policy(self) -> PollPolicy:
        """The polling policy."""
        return self._policy

    def describe(self) -> str:
        """`` age=…s polls=N polling|idle waiters=M``: the state of the loop, for a handle's
        repr (no age when no loop is running)."""
        try:
            age = f" age={self.age():.1f}s"
        except RuntimeError:
            age = ""
        state = "polling" if self._task is not None else "idle"
        return f"{age} polls={self._polls} {state} waiters={self._subscribers}"

    def age(self) -> float:
        """Seconds since this poller was made."""
        return asyncio.get_running_loop().time() - self._born

    def update(self, state: S) -> None:
        """Take a state fetched elsewhere (a refresh, a cancel); wake waiters on a change."""
        old = self._state
        self._state = state
        if self._changed(old, state):
            self._version += 1
            if self._on_change is not None:
                self._on_change(state)
            self._notify()

    # -- waiting --------------------------------------------------------------------------

    async def wait(self, timeout: float | None = None) -> S:
        """The final state; after ``timeout`` seconds raise the ``expired`` error."""
        if self._ended(self._state):
            return self._state
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self._subscribe()
        if deadline is not None:
            if self._deadlines is None:
                self._deadlines = []
            self._deadlines.append(deadline)
        try:
            while not self._ended(self._state):
                # Listening inline (no helper coroutine) keeps a pending waiter small.
                fut, timer = self._listen(loop, deadline)
                try:
                    await fut
                except _Expired:
                    assert timeout is not None
                    raise self._expired(self._state, timeout) from None
                finally:
                    self._unlisten(fut, timer)
            return self._state
        finally:
            if deadline is not None and self._deadlines is not None:
                self._deadlines.remove(deadline)
            self._unsubscribe()

    async def watch(self, timeout: float | None = None) -> AsyncIterator[S]:
        """Yield the state now and at each change, the last one final; ``timeout`` seconds
        after the first step, raise the ``expired`` error."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        seen = -1
        self._subscribe()
        if deadline is not None:
            if self._deadlines is None:
                self._deadlines = []
            self._deadlines.append(deadline)
        try:
            while True:
                if seen != self._version:
                    seen = self._version
                    yield self._state
                    if self._ended(self._state):
                        return
                    continue
                fut, timer = self._listen(loop, deadline)
                try:
                    await fut
                except _Expired:
                    assert timeout is not None
                    raise self._expired(self._state, timeout) from None
                finally:
                    self._unlisten(fut, timer)
        finally:
            if deadline is not None and self._deadlines is not None:
                self._deadlines.remove(deadline)
            self._unsubscribe()

    # -- the shared loop --------------------------------------------------------------------

    def _subscribe(self) -> None:
        self._guard.open(self._call)  # first: AilyClosedError on a closed client
        self._ensure_polling()
        self._subscribers += 1

    def _ensure_polling(self) -> None:
        if self._task is None and not self._ended(self._state):
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def _unsubscribe(self) -> None:
        self._subscribers -= 1
        if self._subscribers == 0 and self._task is not None:
            self._task.cancel()
            self._task = None

    def _listen(
        self, loop: asyncio.AbstractEventLoop, deadline: float | None
    ) -> tuple[asyncio.Future[None], asyncio.TimerHandle | None]:
        """A future resolved at the next change (or set to _Expired at ``deadline``)."""
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

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        policy = self._policy
        budget = self._budget
        if budget is not None:
            budget.active += 1
            gap, adaptive = policy.shared_gap(budget.active), False
        else:
            gap, adaptive = policy.plan(self._stats, loop.time() - self._born)
        first = True
        failing_since: float | None = None
        try:
            async with self._guard.scope(self._call):
                while True:
                    # A bare timer future, not an asyncio.sleep coroutine: a pending poller
                    # stays small.
                    nap: asyncio.Future[None] = loop.create_future()
                    timer = loop.call_later(self._next_nap(loop, gap, first, adaptive), _wake, nap)
                    try:
                        await nap
                    finally:
                        timer.cancel()
                    first = False
                    # Wait for quota before the poll's request exists: a queued poll is small.
                    await self._guard.reserve(self._fetch_call)
                    self._polls += 1
                    began = loop.time()
                    try:
                        state = await self._fetch()
                    except AilyError as exc:
                        if not _passing(exc):
                            raise
                        failing_since = began if failing_since is None else failing_since
                        if loop.time() - failing_since >= policy.max_outage:
                            raise
                        logger.info("%s: poll failed (%s); polling goes on", self._call, exc)
                    else:
                        failing_since = None
                        self._rtt = loop.time() - began
                        self.update(state)
                        if self._ended(self._state):
                            return
                    if budget is not None:
                        gap = policy.shared_gap(budget.active)
                    else:
                        gap = policy.next_gap(gap, loop.time() - self._born, adaptive)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._notify(exc)
        finally:
            if budget is not None:
                budget.active -= 1
            if self._task is asyncio.current_task():
                self._task = None

    def _next_nap(
        self, loop: asyncio.AbstractEventLoop, gap: float, first: bool, adaptive: bool
    ) -> float:
        """The wait before the next poll: the policy's, moved up so that the poll before the
        earliest deadline of the waits answers just before it (the last look)."""
        nap = self._policy.jittered(gap, first=first, adaptive=adaptive)
        if self._deadlines:
            now = loop.time()
            last_look = min(self._deadlines) - min(1.0, 2 * self._rtt + 0.02)
            if now < last_look < now + nap:
                nap = last_look - now
        return nap

    def __repr__(self) -> str:
        return f"<Poller {self._call}{self.describe()}>"


class _Expired(Exception):
    pass


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(_Expired())


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _passing(exc: AilyError) -> bool:
    """True for a failure that says nothing about the thing polled (the service or the way to
    it failed for a while): polling goes on."""
    return may_have_landed(exc) or not_sent(exc) or isinstance(exc, AilyRateLimitError)
