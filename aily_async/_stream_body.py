"""The open body of a streamed answer: what reading it looks like (:class:`ByteStream`),
aiohttp's (:class:`AiohttpBody`), and where a streamed call leaves it (:class:`Streamed`).

An event-stream answer is not read whole: its reader takes the bytes as they arrive, and a
body that stalls or drops says so with the client's own errors.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import aiohttp

from ._errors import AilyConnectionError, AilyTimeoutError, AilyTransportError

__all__ = ["AiohttpBody", "ByteStream", "Streamed"]


class ByteStream(Protocol):
    """The open body of an event-stream answer, read as it arrives."""

    async def read(self) -> bytes:
        """The next bytes (``b""`` at the end). Raise :class:`AilyTimeoutError` when nothing
        came for the read timeout, :class:`AilyConnectionError` when the connection dropped
        before the end."""
        ...

    async def close(self) -> None:
        """Release the connection (idempotent)."""
        ...


class Streamed:
    """Where a streamed call leaves its open body: ``Transport.request(..., streamed=s)``
    sets ``s.events`` when the answer is an event stream (and returns ``{}``)."""

    __slots__ = ("events", "read_timeout")

    def __init__(self, read_timeout: float) -> None:
        self.read_timeout = read_timeout
        self.events: ByteStream | None = None


class AiohttpBody:
    """The open body of an aiohttp event-stream answer (:class:`ByteStream`)."""

    __slots__ = ("_call", "_read_timeout", "_resp")

    def __init__(self, resp: aiohttp.ClientResponse, call: str, read_timeout: float) -> None:
        self._resp = resp
        self._call = call
        self._read_timeout = read_timeout

    async def read(self) -> bytes:
        try:
            return await self._resp.content.readany()
        except asyncio.CancelledError:
            raise
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise AilyTimeoutError(
                f"the event stream stalled: nothing came for {self._read_timeout:g}s",
                call=self._call,
            ) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise AilyConnectionError(
                f"the event stream dropped before its end ({exc.__class__.__name__})",
                call=self._call,
            ) from exc
        except aiohttp.ClientError as exc:
            raise AilyTransportError(f"{exc.__class__.__name__}: {exc}", call=self._call) from exc

    async def close(self) -> None:
        # A body read to its end leaves a reusable connection; any other is closed.
        if self._resp.content.at_eof():
            self._resp.release()
        else:
            self._resp.close()
