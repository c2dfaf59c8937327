"""The wire: one HTTP exchange with the Feishu gateway, and the reading of its JSON envelope.

A :class:`Wire` sends one request and hands back the raw :class:`Answer` (status, body bytes,
the two headers the client reads), or raises an :class:`AilyTransportError` when no answer
came. It never retries. :class:`AiohttpWire` is the real one, over one pooled aiohttp session;
tests may give the client a wire of their own (``AilyClient(wire=...)``) to play any answer.

:func:`decode` turns an answer into the call's ``data`` object or the matching
:class:`AilyAPIError` (see :func:`aily_async._errors.api_error`).

**Streams.** A wire may also be a :class:`StreamingWire` (``AiohttpWire`` is): its ``stream``
hands back a ``200 text/event-stream`` answer open, its body read chunk by chunk through
``Answer.events`` (a :class:`ByteStream`, which its reader closes); any other answer is read
whole, as by ``send``. The method is optional: :func:`open_stream` falls back to ``send`` for
a wire without it, and the streamed call then gets its answer in one piece.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import aiohttp
from yarl import URL

from ._errors import (
    AilyConnectionError,
    AilyError,
    AilyResponseError,
    AilyTimeoutError,
    AilyTransportError,
    api_error,
)
from ._pool import Pool
from ._stream_body import AiohttpBody, ByteStream

__all__ = ["AiohttpWire", "Answer", "StreamingWire", "Wire", "decode", "open_stream"]


class Answer:
    """What came back: the HTTP ``status``, the body bytes, the ``X-Tt-Logid`` header, the
    ``x-ogw-ratelimit-reset`` header (seconds until the rate window resets), the
    ``x-ogw-ratelimit-limit`` header (the quota that was full) and the ``Date`` header (the
    server's clock). ``events`` is the open body of an event-stream answer (then ``payload`` is
    empty), from :meth:`StreamingWire.stream` only."""

    __slots__ = ("date", "events", "limit", "log_id", "payload", "reset", "status")

    def __init__(
        self,
        status: int,
        payload: bytes,
        log_id: str | None = None,
        reset: str | None = None,
        date: str | None = None,
        events: ByteStream | None = None,
        limit: str | None = None,
    ) -> None:
        self.status = status
        self.payload = payload
        self.log_id = log_id
        self.reset = reset
        self.date = date
        self.events = events
        self.limit = limit

    @classmethod
    def of(cls, resp: aiohttp.ClientResponse, payload: bytes = b"") -> Answer:
        """The answer of ``resp``, its headers read, with ``payload`` as its body."""
        headers = resp.headers
        return cls(
            resp.status,
            payload,
            headers.get("X-Tt-Logid"),
            headers.get("x-ogw-ratelimit-reset"),
            headers.get("Date"),
            limit=headers.get("x-ogw-ratelimit-limit"),
        )

    def __repr__(self) -> str:
        return f"Answer(status={self.status}, {len(self.payload)} bytes, log_id={self.log_id!r})"


@runtime_checkable
class Wire(Protocol):
    """How one request leaves and its answer comes back (no retries, no decoding)."""

    async def send(
        self,
        call: str,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        data: bytes | aiohttp.FormData | None,
        params: Mapping[str, str] | None,
    ) -> Answer:
        """Send one request; raise :class:`AilyTransportError` when no answer came.

        ``data`` is the JSON body, or for an upload a multipart form (its ``Content-Type``,
        with the boundary, is the form's to set); ``params`` may repeat a key (a
        ``MultiDict``)."""
        ...

    async def close(self) -> None:
        """Release the connections (idempotent)."""
        ...


@runtime_checkable
class StreamingWire(Protocol):
    """A wire that can hand back an answer while it streams (see the module docstring)."""

    async def stream(
        self,
        call: str,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        data: bytes | aiohttp.FormData | None,
        params: Mapping[str, str] | None,
        read_timeout: float,
    ) -> Answer:
        """Send one request. A ``200 text/event-stream`` answer comes back open
        (``Answer.events``, for the caller to close); any other answer is read whole. Waiting
        more than ``read_timeout`` seconds for the answer or any later bytes is a timeout."""
        ...


async def open_stream(
    wire: Wire,
    call: str,
    method: str,
    url: URL,
    headers: Mapping[str, str],
    data: bytes | aiohttp.FormData | None,
    params: Mapping[str, str] | None,
    read_timeout: float,
) -> Answer:
    """``wire.stream(...)`` when the wire can stream, else ``wire.send(...)``."""
    if isinstance(wire, StreamingWire):
        return await wire.stream(call, method, url, headers, data, params, read_timeout)
    return await wire.send(call, method, url, headers, data, params)


# aiohttp sends a GET, PUT or DELETE again by itself when a kept-alive connection drops under
# it. That resend would bypass the limiter, the counters and the retry rules (a PUT declared
# unsafe to repeat would reach the server twice), so a middleware refuses it: every resend is
# the retry loop's decision. The counter lives in a context variable set around each request.
_attempts: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "aily_async_attempts", default=None
)


class _Resend(Exception):
    """aiohttp tried to send a request a second time."""


async def _send_once(
    request: aiohttp.ClientRequest,
    handler: Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]],
) -> aiohttp.ClientResponse:
    counter = _attempts.get()
    if counter is not None:
        if counter[0]:
            raise _Resend
        counter[0] = 1
    return await handler(request)


class AiohttpWire:
    """A :class:`Wire` over one pooled :class:`aiohttp.ClientSession`, created on first use
    inside the running loop (or the caller's ``session``; the proxy and how the session ends:
    :mod:`aily_async._pool`). Redirects are never followed (the token must not leave the API
    host), an answer larger than ``max_response_size`` (decoded) is refused, and a request is
    never sent twice behind the caller's back (aiohttp's own resend on a dropped kept-alive
    connection is refused and reported as a drop after sending)."""

    __slots__ = ("_max_size", "_pool", "_timeout")

    def __init__(
        self,
        *,
        timeout: float,
        connect_timeout: float,
        max_connections: int,
        verify_ssl: bool,
        max_response_size: int,
        trust_env: bool = True,
        proxy: str | URL | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(
            total=timeout, connect=connect_timeout, sock_connect=connect_timeout
        )
        self._max_size = max_response_size
        # The session (own or the caller's), its proxy and how it ends: see _pool.
        self._pool = Pool(
            timeout=self._timeout,
            max_connections=max_connections,
            verify_ssl=verify_ssl,
            middlewares=(_send_once,),
            trust_env=trust_env,
            proxy=proxy,
            session=session,
        )

    @property
    def pool(self) -> aiohttp.BaseConnector | None:
        """The connection pool (``None`` before the first request or after closing)."""
        return self._pool.connector

    async def close(self) -> None:
        """Close the session and its connections (idempotent); a session given by the caller
        is left open."""
        await self._pool.close()

    def abandon(self) -> None:
        """Release the connections at once, synchronously: the client was dropped unclosed."""
        self._pool.abandon()

    async def send(
        self,
        call: str,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        data: bytes | aiohttp.FormData | None,
        params: Mapping[str, str] | None,
    ) -> Answer:
        """Send one request and read its answer (capped); map aiohttp's failures."""
        session = self._pool.open(call)
        options = self._pool.options(url)
        attempts = _attempts.set([0])
        try:
            async with session.request(
                method,
                url,
                data=data,
                params=params,
                headers=headers,
                allow_redirects=False,
                **options,
            ) as resp:
                payload = await self._read(resp, call, resp.headers.get("X-Tt-Logid"))
                return Answer.of(resp, payload)
        except asyncio.CancelledError:
            raise
        except _Resend:
            raise _failure(_Resend(), call, url, self._timeout.total) from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _failure(exc, call, url, self._timeout.total) from exc
        finally:
            _attempts.reset(attempts)

    async def stream(
        self,
        call: str,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        data: bytes | aiohttp.FormData | None,
        params: Mapping[str, str] | None,
        read_timeout: float,
    ) -> Answer:
        """Send one request; a ``200 text/event-stream`` answer comes back open (its body in
        ``Answer.events``, whose ``read`` raises after ``read_timeout`` seconds without a
        byte), any other answer read whole (capped) as by :meth:`send`."""
        session = self._pool.open(call)
        options = self._pool.options(url)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self._timeout.connect,
            sock_connect=self._timeout.sock_connect,
            sock_read=read_timeout,
        )
        attempts = _attempts.set([0])
        resp: aiohttp.ClientResponse | None = None
        try:
            resp = await session.request(
                method,
                url,
                data=data,
                params=params,
                headers=headers,
                allow_redirects=False,
                **{**options, "timeout": timeout},
            )
            answer = Answer.of(resp)
            if resp.status == 200 and resp.content_type == "text/event-stream":
                answer.events = AiohttpBody(resp, call, read_timeout)
                resp = None  # the reader closes it
            else:
                answer.payload = await self._read(resp, call, answer.log_id)
            return answer
        except asyncio.CancelledError:
            raise
        except _Resend:
            raise _failure(_Resend(), call, url, read_timeout) from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _failure(exc, call, url, read_timeout) from exc
        finally:
            if resp is not None:
                resp.release()
            _attempts.reset(attempts)

    async def _read(self, resp: aiohttp.ClientResponse, call: str, log_id: str | None) -> bytes:
        cap = self._max_size
        length = resp.content_length
        if length is not None and length > cap:
            raise AilyResponseError(
                f"answer of {length} bytes exceeds max_response_size={cap}",
                call=call,
                http_status=resp.status,
                log_id=log_id,
            )
        # Content-Length counts the encoded bytes; a compressed answer can inflate far beyond
        # it, so the decoded stream is counted in every case.
        chunks: list[bytes] = []
        total = 0
        async for chunk in resp.content.iter_any():
            total += len(chunk)
            if total > cap:
                raise AilyResponseError(
                    f"answer exceeds max_response_size={cap} bytes",
                    call=call,
                    http_status=resp.status,
                    log_id=log_id,
                )
            chunks.append(chunk)
        return b"".join(chunks)


def _failure(exc: BaseException, call: str, url: URL, timeout: float | None) -> AilyError:
    """The error for an exchange that got no (whole) answer."""
    name = exc.__class__.__name__
    if isinstance(exc, _Resend):
        return AilyConnectionError(
            "the connection dropped after the request was sent (not sent again)", call=call
        )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return AilyConnectionError(f"TLS certificate rejected: {exc}", call=call, sent=False)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return AilyConnectionError(
            f"could not connect to {url.origin()}: {name}: {exc}", call=call, sent=False
        )
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        within = f" within {timeout:g}s" if timeout is not None else ""
        return AilyTimeoutError(f"no answer{within} ({name})", call=call)
    if isinstance(exc, aiohttp.ClientConnectionError):
        return AilyConnectionError(f"connection failed mid-request: {name}: {exc}", call=call)
    return AilyTransportError(f"{name}: {exc}", call=call)


def decode(call: str, answer: Answer, *, raw: bool = False) -> tuple[dict[str, Any], int | None]:
    """The answer's ``data`` object (the whole body when ``raw``) and its ``code``, or the
    error it stands for."""
    status, payload, log_id = answer.status, answer.payload, answer.log_id
    try:
        body = json.loads(payload) if payload else None
    except (ValueError, RecursionError):
        body = None
    if 300 <= status < 400:
        raise AilyResponseError(
            "unexpected redirect (not followed, so the token never leaves the API host)",
            call=call,
            http_status=status,
            log_id=log_id,
        )
    if not isinstance(body, dict):
        snippet = payload[:80].decode("utf-8", "replace").strip()
        what = "an empty body" if not payload else f"a non-JSON-object body: {snippet!r}"
        if status >= 500 or status == 429:
            told = f"HTTP {status} with {what}"
            raise api_error(call, status, None, told, log_id, answer.reset, answer.limit)
        raise AilyResponseError(
            f"expected a JSON object, got {what}", call=call, http_status=status, log_id=log_id
        )
    code = body.get("code")
    said = body.get("msg")
    msg = said if isinstance(said, str) else ""
    if log_id is None:
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("log_id"), str):
            log_id = err["log_id"]
    if isinstance(code, bool) or not isinstance(code, int):
        if status >= 400:
            msg = msg or f"HTTP {status}"
            raise api_error(call, status, None, msg, log_id, answer.reset, answer.limit)
        raise AilyResponseError(
            f"the answer has no integer 'code' (got {type(code).__name__})",
            call=call,
            http_status=status,
            log_id=log_id,
        )
    if code != 0 or status >= 400:
        raise api_error(call, status, code, msg, log_id, answer.reset, answer.limit)
    if raw:
        return body, code
    data = body.get("data")
    if data is None:
        return {}, code
    if not isinstance(data, dict):
        raise AilyResponseError(
            f"'data' is a {type(data).__name__}, expected an object",
            call=call,
            http_status=status,
            log_id=log_id,
        )
    return data, code
