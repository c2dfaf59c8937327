"""The tasks inside a client (a request, a poll loop), and ending them when it closes.

A task inside is tracked with its depth of nested scopes. :meth:`InFlight.wake_all` cancels
every task inside; the outermost scope of each turns that cancellation into
:class:`AilyClosedError` (:meth:`InFlight.leave`), so a call queued behind the limiter, asleep
between retries, on the wire or waiting for a run ends at once, with the error made in one
place.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Protocol

from ._errors import AilyClosedError

__all__ = ["InFlight", "Scope", "Tracker"]


class InFlight:
    """The tasks inside, with the depth of their scopes, and those :meth:`wake_all` woke."""

    __slots__ = ("_inside", "_woken")

    def __init__(self) -> None:
        self._inside: dict[asyncio.Task[Any], int] = {}
        self._woken: set[asyncio.Task[Any]] = set()

    def enter(self, task: asyncio.Task[Any]) -> None:
        """``task`` entered a scope."""
        self._inside[task] = self._inside.get(task, 0) + 1

    def leave(self, task: asyncio.Task[Any]) -> bool:
        """``task`` left a scope; True when it was its outermost one."""
        depth = self._inside.pop(task, 1) - 1
        if depth:
            self._inside[task] = depth
            return False
        return True

    def closed_error(self, task: asyncio.Task[Any], call: str, exc: BaseException | None) -> None:
        """After the outermost scope: raise :class:`AilyClosedError` in place of the
        cancellation :meth:`wake_all` caused."""
        if isinstance(exc, asyncio.CancelledError) and task in self._woken:
            self._woken.discard(task)
            uncancel = getattr(task, "uncancel", None)  # Python >= 3.11
            if uncancel is not None:
                uncancel()
            raise AilyClosedError("the client was closed", call=call) from None

    def wake_all(self) -> None:
        """Cancel every task inside but the current one (the client is closing)."""
        current = asyncio.current_task()
        for task in list(self._inside):
            if task is not current and not task.done():
                self._woken.add(task)
                task.cancel()


class Tracker(Protocol):
    """What a :class:`Scope` needs: track the current task, and let it go."""

    def enter(self, call: str) -> asyncio.Task[Any] | None:
        """Track the current task; raise :class:`AilyClosedError` if closed."""
        ...

    def leave(self, task: asyncio.Task[Any] | None, call: str, exc: BaseException | None) -> None:
        """Stop tracking ``task`` (maybe raising :class:`AilyClosedError`)."""
        ...


class Scope:
    """``async with transport.scope(call)``: the task is tracked while inside; if the client
    closes meanwhile, the task ends with :class:`AilyClosedError` (made by the outermost
    scope of the task)."""

    __slots__ = ("_call", "_task", "_transport")

    def __init__(self, transport: Tracker, call: str) -> None:
        self._transport = transport
        self._call = call
        self._task: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> None:
        self._task = self._transport.enter(self._call)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._transport.leave(self._task, self._call, exc)
