"""Ctrl-C: the first press stops a command gently, a burst of signals counts as one press.

``timeout -s INT`` and some terminals deliver SIGINT twice within a millisecond. Taken as two
presses, the second would cancel what the first lets finish (a batch's runs in flight), so
signals within :data:`BURST` seconds of the last press counted are that same press. Each press
counted cancels the command's task: the first lets a batch give its calls underway ``--grace``
seconds to finish, the next ends that wait. A command says what it is waiting for through
:attr:`Interrupts.on_press` (see :func:`current`).
"""

from __future__ import annotations

import asyncio
import contextvars
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["BURST", "Interrupts", "current", "interruptible"]

T = TypeVar("T")

#: Seconds within which SIGINTs count as one press.
BURST = 0.5

_current: contextvars.ContextVar[Interrupts | None] = contextvars.ContextVar(
    "aily_interrupts", default=None
)


class Interrupts:
    """Counts Ctrl-C presses of one command and cancels its task on each."""

    __slots__ = ("_burst", "_clock", "_last", "_task", "on_press", "presses")

    def __init__(
        self,
        task: asyncio.Task[Any],
        *,
        burst: float = BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._task = task
        self._burst = burst
        self._clock = clock
        self._last: float | None = None
        #: Presses counted so far.
        self.presses = 0
        #: Told of each press counted (1, 2, ...) before the task is cancelled: what the
        #: command will wait for, said on screen.
        self.on_press: Callable[[int], None] | None = None

    def press(self) -> None:
        """A SIGINT arrived."""
        now = self._clock()
        if self._last is not None and now - self._last < self._burst:
            return  # the same Ctrl-C, delivered twice
        self._last = now
        self.presses += 1
        try:
            if self.on_press is not None:
                self.on_press(self.presses)
        finally:
            self._task.cancel()


def current() -> Interrupts | None:
    """The Ctrl-C handling of the running command, if it has one."""
    return _current.get()


async def interruptible(command: Coroutine[Any, Any, T]) -> T:
    """Run ``command`` (in the current task) with Ctrl-C handled as the module docs say; it
    ends with :class:`asyncio.CancelledError` when stopped by a press."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is None:  # pragma: no cover - always inside asyncio.run
        return await command
    guard = Interrupts(task)
    try:
        loop.add_signal_handler(signal.SIGINT, guard.press)
    except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
        return await command
    token = _current.set(guard)
    try:
        return await command
    finally:
        _current.reset(token)
        loop.remove_signal_handler(signal.SIGINT)
