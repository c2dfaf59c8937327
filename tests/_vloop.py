"""A fast-forwarding event loop for tests: virtual time jumps ahead whenever the loop is idle.

``loop.time()`` is virtual. When no callback is ready and no socket has data, instead of
sleeping until the next timer the loop moves its clock to that timer at once, so a test that
waits minutes of limiter or polling time finishes in milliseconds, with the exact same ordering
of timers as in real time. Sockets stay real: a ``FakeAily`` served on the same loop over
127.0.0.1 works unchanged (loopback data is readable as soon as it is sent).
"""

from __future__ import annotations

import asyncio
import functools
import selectors
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# A moment of real time granted to in-flight loopback I/O before the clock jumps.
_GRACE = 0.0002


class _FastForwardSelector(selectors.BaseSelector):
    def __init__(self, loop: VirtualTimeLoop, grace: float) -> None:
        self._inner = selectors.DefaultSelector()
        self._loop = loop
        self._grace = grace

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_map(self) -> Any:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._inner.select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            if not self._grace:  # no I/O expected: nothing can ever wake the loop
                raise RuntimeError("deadlock: nothing is scheduled and nothing can wake the loop")
            return self._inner.select(None)
        if self._grace:
            events = self._inner.select(min(timeout, self._grace))
            if events:
                return events
        self._loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is virtual and jumps ahead when idle.

    ``grace=0`` makes a loop for I/O-free logic (a limiter alone): the clock jumps at once, and
    a loop with nothing scheduled raises instead of hanging.
    """

    def __init__(self, start: float = 1000.0, *, grace: float = _GRACE) -> None:
        self._virtual_now = start
        super().__init__(selector=_FastForwardSelector(self, grace))

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self._virtual_now += max(0.0, seconds)


def run_virtual(coro: Coroutine[Any, Any, T], *, start: float = 1000.0, grace: float = _GRACE) -> T:
    """Run ``coro`` to completion on a fresh :class:`VirtualTimeLoop`."""
    loop = VirtualTimeLoop(start, grace=grace)
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def virtual_time(fn: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Decorate an ``async def`` test so it runs on a fast-forwarding virtual-time loop."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        async def main() -> T:
            return await fn(*args, **kwargs)

        return run_virtual(main())

    return wrapper
