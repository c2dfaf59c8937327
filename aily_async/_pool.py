"""The aiohttp session behind :class:`aily_async._wire.AiohttpWire`, and how it ends.

The session is the client's own (made on first use, inside the running loop) or the caller's
(``AilyClient(session=...)``: used, never closed). What the wire needs of every request (the
timeout, no resends, answers not raised as errors, the proxy) is set on a session it owns;
on a caller's session it is passed with each request instead, so the caller's defaults never
change what this library guarantees.

**Dropped unclosed.** A client dropped without ``close()`` (a notebook cell run again) is
collected later, inside whatever cell runs then; aiohttp would then report "Unclosed client
session" and "Unclosed connector" there. :meth:`Pool.abandon`, called by a ``weakref.finalize``
on the client while the session is still referenced, hands the session to a task on its loop
that closes it properly (the task keeps it alive until then), so it is never collected open
and aiohttp has nothing to report. On a loop already closed there is nothing left to release:
the connector is only marked closed. The client's own ``ResourceWarning`` (for scripts) is
left as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

import aiohttp
from yarl import URL

from ._errors import AilyClosedError
from ._proxy import ProxyChoice, check_proxy

__all__ = ["Pool"]


class Pool:
    """One aiohttp session and the per-request arguments its requests need."""

    __slots__ = (
        "_closed",
        "_loop",
        "_max_connections",
        "_middlewares",
        "_options",
        "_owns",
        "_proxy",
        "_session",
        "_timeout",
        "_verify",
    )

    def __init__(
        self,
        *,
        timeout: aiohttp.ClientTimeout,
        max_connections: int,
        verify_ssl: bool,
        middlewares: Sequence[aiohttp.ClientMiddlewareType],
        trust_env: bool = True,
        proxy: str | URL | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(f"session must be an aiohttp.ClientSession, got {session!r}")
        fixed = check_proxy(proxy)
        self._timeout = timeout
        self._max_connections = max_connections
        self._verify = verify_ssl
        self._middlewares = tuple(middlewares)
        self._session = session
        self._owns = session is None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # A caller's session gets the wire's settings with each request; the environment's
        # proxy is then the session's business (its trust_env), a proxy= is still applied.
        options: dict[str, Any] = {}
        if session is not None:
            options = {
                "timeout": timeout,
                "middlewares": self._middlewares,
                "raise_for_status": False,
            }
            if not session.auto_decompress:
                options["auto_decompress"] = True
        self._options = options
        choice = ProxyChoice(fixed, trust_env=trust_env and self._owns, base=options)
        self._proxy = choice if choice.active else None

    @property
    def connector(self) -> aiohttp.BaseConnector | None:
        """The connection pool (``None`` before the first request or after closing)."""
        return self._session.connector if self._session is not None else None

    def open(self, call: str) -> aiohttp.ClientSession:
        """The session, made now if this is the first request."""
        if self._closed:
            raise AilyClosedError("the client is closed", call=call)
        session = self._session
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ssl=bool(self._verify), enable_cleanup_closed=False
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                json_serialize=json.dumps,
                raise_for_status=False,
                auto_decompress=True,
                middlewares=self._middlewares,
                trust_env=False,  # the proxy is chosen here; no ~/.netrc Authorization
            )
            self._loop = asyncio.get_running_loop()
        elif session.closed:
            raise AilyClosedError("the aiohttp session given to the client is closed", call=call)
        return session

    def options(self, url: URL) -> dict[str, Any]:
        """The extra arguments of a request to ``url`` (its proxy among them)."""
        if self._proxy is None:
            return self._options
        return self._proxy.options(url)

    async def close(self) -> None:
        """Close the session if it is the client's own (idempotent)."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns:
            await session.close()

    def abandon(self) -> None:
        """Close the connections now, without awaiting (see the module docstring)."""
        self._closed = True
        session, self._session = self._session, None
        if session is None or not self._owns:
            return
        connector = session.connector
        if connector is None or connector.closed:
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            _mark_closed(connector)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            _close_later(loop, session)
        else:  # collected on another thread, or between runs of the loop
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_close_later, loop, session)

    def __repr__(self) -> str:
        whose = "own" if self._owns else "caller's"
        state = "closed" if self._closed else "open" if self._session is not None else "unopened"
        proxy = self._proxy.describe() if self._proxy is not None else "no proxy"
        return f"<Pool {whose} session {state}, {proxy}>"


#: Sessions of dropped clients being closed (a task the loop only holds weakly).
_closing: set[asyncio.Task[None]] = set()


def _close_later(loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> None:
    """Close ``session`` in a task of ``loop`` (which keeps the session alive until then)."""
    task = loop.create_task(_close_quietly(session))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def _close_quietly(session: aiohttp.ClientSession) -> None:
    with contextlib.suppress(Exception):  # nobody is left to tell
        await session.close()


def _mark_closed(connector: aiohttp.BaseConnector) -> None:
    """Mark the connector of a closed loop closed (its transports died with the loop)."""
    with contextlib.suppress(Exception):
        # The base class's close() is synchronous; what it returns needs no waiting here.
        waiter: Any = aiohttp.BaseConnector.close(connector).__await__()
        waiter.close()
