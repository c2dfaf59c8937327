"""The client: one pooled aiohttp session, and the one place where requests leave."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from yarl import URL

from ._auth import TENANT_TOKEN_INVALID, TOKEN_PATH, Credentials
from ._errors import (
    AilyAPIError,
    AilyAuthError,
    AilyClosedError,
    AilyConnectionError,
    AilyError,
    AilyInvalidParamsError,
    AilyNotFoundError,
    AilyPermissionError,
    AilyRateLimitError,
    AilyResponseError,
    AilyServerError,
    AilyTimeoutError,
    AilyTransportError,
    AilyValidationError,
)
from ._hooks import EventHooks, RequestEvent, ResponseEvent, RetryEvent, check_hooks, emit
from ._limiter import Limits, RateLimiter
from ._polling import DurationStats, PollPolicy
from ._retry import Retrier, RetryPolicy, Safety
from ._validation import biz_user_id as _check_biz_user_id

if TYPE_CHECKING:
    from ._batch import Batch
    from ._resources import Messages, Runs, Sessions, Skills
    from ._runs import RunHandle

__all__ = ["DEFAULT_LIMITS", "AilyClient"]

logger = logging.getLogger("aily_async")

FEISHU_HOST = "https://open.feishu.cn"
LARK_HOST = "https://open.larksuite.com"
API_PREFIX = "/open-apis/aily/v1"
_JSON = "application/json; charset=utf-8"


class _Default(enum.Enum):
    LIMITS = "DEFAULT_LIMITS"

    def __repr__(self) -> str:
        return "DEFAULT_LIMITS"


#: The ``limiter=`` default: one bucket per API call, sized to the documented quotas.
DEFAULT_LIMITS = _Default.LIMITS

_AUTH_CODES = frozenset({99991661, 99991663, 99991665, 99991668, 99991677, 10003, 10014})
_PERMISSION_CODES = frozenset({99991672, 99991679, 99991401, 99991403})
_HINTS = {
    99991661: "no access token was sent",
    99991663: "the tenant access token is invalid",
    99991665: "the tenant access token has expired",
    99991668: "the user access token is invalid; the caller must refresh it",
    99991677: "the user access token has expired; the caller must refresh it",
    99991672: "the app lacks the API scope (e.g. aily:run:write); add it in the developer console",
    99991679: "the user has not authorised the app for this scope",
    99991401: "the caller's IP is not in the app's allow-list",
    99991403: "the app's monthly API quota is used up",
    99991400: "rate limited",
    2700001: "the service rejected a parameter",
    10014: "the app secret is wrong",
    10003: "the app id is unknown",
}

_State = Literal["unopened", "open", "closed"]


class AilyClient:
    """An asyncio client for the Aily OpenAPI.

    Hold one for the life of your program (``async with AilyClient(...) as client`` or
    ``await client.close()`` at the end). It owns one pooled aiohttp session, created on first
    use inside the running loop, and sends every call through one seam that adds the token,
    the rate limiter, retries, decoding and error mapping.

    Credentials: ``app_id``/``app_secret`` of the Feishu self-built app (default: the
    ``FEISHU_APP_ID``/``FEISHU_APP_SECRET`` environment variables), or a fixed
    ``tenant_access_token`` or ``user_access_token``.

    ``limiter``: left out, each call gets a bucket sized to its documented quota
    (:class:`Limits`); a single :class:`TokenBucket` (or any :class:`RateLimiter`) throttles
    every call together; a :class:`Limits` (or any object with ``for_call``) chooses per call;
    ``None`` turns client-side throttling off.
    """

    def __init__(
        self,
        app_id: str | None = None,
        app_secret: str | None = None,
        *,
        tenant_access_token: str | None = None,
        user_access_token: str | None = None,
        base_url: str = FEISHU_HOST,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_connections: int = 100,
        limiter: Any = DEFAULT_LIMITS,
        retry: RetryPolicy | None = None,
        poll_interval: float = 1.0,
        poll: PollPolicy | None = None,
        biz_user_id: str | None = None,
        event_hooks: EventHooks | None = None,
        verify_ssl: bool = True,
        max_response_size: int = 16 * 1024 * 1024,
    ) -> None:
        fixed = tenant_access_token or user_access_token
        if tenant_access_token and user_access_token:
            raise ValueError("give tenant_access_token or user_access_token, not both")
        if fixed is None:
            app_id = app_id or os.environ.get("FEISHU_APP_ID")
            app_secret = app_secret or os.environ.get("FEISHU_APP_SECRET")
            if not app_id or not app_secret:
                raise ValueError(
                    "no credentials: pass app_id and app_secret (or set FEISHU_APP_ID and "
                    "FEISHU_APP_SECRET), or pass tenant_access_token / user_access_token"
                )
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeout and connect_timeout must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if not verify_ssl:
            warnings.warn(
                "AilyClient(verify_ssl=False): TLS certificates are not verified",
                stacklevel=2,
            )
        self._credentials = Credentials(app_id=app_id, app_secret=app_secret, fixed=fixed)
        self._base = base_url.rstrip("/")
        self._api = self._base + API_PREFIX
        self._timeout = aiohttp.ClientTimeout(
            total=timeout, connect=connect_timeout, sock_connect=connect_timeout
        )
        self._max_connections = max_connections
        self._verify_ssl = verify_ssl
        self._max_response_size = max_response_size
        self._retry = retry or RetryPolicy()
        self._retrier = Retrier(self._retry, self._retried)
        self._poll = poll or PollPolicy(interval=poll_interval)
        self._biz_user_id = (
            _check_biz_user_id("AilyClient", biz_user_id, max_len=64)
            if biz_user_id is not None
            else None
        )
        self._hooks = check_hooks(event_hooks)
        self._single_limiter: RateLimiter | None = None
        self._limits: Any = None
        if limiter is DEFAULT_LIMITS:
            self._limits = Limits()
        elif limiter is None:
            pass
        elif hasattr(limiter, "for_call"):
            self._limits = limiter
        elif isinstance(limiter, RateLimiter):
            self._single_limiter = limiter
        else:
            raise TypeError(f"limiter must be a RateLimiter, a Limits, or None, got {limiter!r}")
        self._state: _State = "unopened"
        self._session: aiohttp.ClientSession | None = None
        self._close_event: asyncio.Event | None = None
        self._stats = _Stats()
        self._pollers: set[RunHandle] = set()
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._woken_by_close: set[asyncio.Task[Any]] = set()
        #: Durations of the runs this client saw end (feeds adaptive polling).
        self.durations = DurationStats()
        from ._batch import Batch
        from ._resources import Messages, Runs, Sessions, Skills

        self.sessions: Sessions = Sessions(self)
        self.messages: Messages = Messages(self)
        self.runs: Runs = Runs(self)
        self.skills: Skills = Skills(self)
        self.batch: Batch = Batch(self)

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> AilyClient:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _open(self, call: str = "") -> aiohttp.ClientSession:
        if self._state == "closed":
            raise AilyClosedError(
                "the client is closed and cannot be reused; make a new one", call=call
            )
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                ssl=bool(self._verify_ssl),
                enable_cleanup_closed=False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                json_serialize=json.dumps,
                raise_for_status=False,
                auto_decompress=True,
            )
            self._close_event = asyncio.Event()
            self._state = "open"
        return self._session

    async def close(self) -> None:
        """Close the session and end pending waits with :class:`AilyClosedError`. Idempotent."""
        if self._state == "closed":
            return
        self._state = "closed"
        if self._close_event is not None:
            self._close_event.set()
        pollers, self._pollers = self._pollers, set()
        poll_tasks = {handle._task for handle in pollers}
        for handle in pollers:
            handle._abort(
                AilyClosedError("the client was closed while waiting for the run", call="runs.wait")
            )
        # Calls still inside request() (queued behind the limiter, between retries, on the
        # wire) end now with AilyClosedError rather than when their turn comes.
        current = asyncio.current_task()
        for task in self._in_flight - poll_tasks:
            if task is not current and not task.done():
                self._woken_by_close.add(task)
                task.cancel()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._state == "closed"

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if getattr(self, "_state", "closed") == "open":
            _warn(
                f"unclosed {self!r}: use 'async with AilyClient(...)' or 'await client.close()'",
                ResourceWarning,
                source=self,
                stacklevel=1,
            )

    def __repr__(self) -> str:
        return f"<AilyClient {self._base} {self._state} app_id={self._credentials.app_id!r}>"

    # -- configuration read by resources --------------------------------------------------

    @property
    def poll_policy(self) -> PollPolicy:
        """The default polling policy of run handles."""
        return self._poll

    @property
    def stats(self) -> _Stats:
        """Counters: requests sent, retries, 429s received, per call."""
        return self._stats

    def limiter_for(self, call: str) -> RateLimiter | None:
        """The limiter that ``call`` goes through (``None`` when throttling is off)."""
        if self._single_limiter is not None:
            return self._single_limiter
        if self._limits is not None:
            limiter: RateLimiter = self._limits.for_call(call)
            return limiter
        return None

    def closed_event(self) -> asyncio.Event:
        """An event set when the client closes (opens the client if needed)."""
        self._open()
        assert self._close_event is not None
        return self._close_event

    # -- the seam -------------------------------------------------------------------------

    async def request(
        self,
        call: str,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        safety: Safety = "idempotent",
        biz_user_id: str | None = None,
        biz_user_id_max: int = 255,
        granted: bool = False,
    ) -> dict[str, Any]:
        """Send one API call and return its ``data`` object.

        ``path`` is below ``/open-apis/aily/v1`` with its ids already checked and encoded.
        Retries follow ``safety`` (see :mod:`aily_async._retry`); a tenant token the service
        calls invalid is refreshed once and the call retried. ``granted=True`` says the caller
        already took the first attempt's grant from the call's limiter (see ``_grant``).
        """
        session = self._open(call)
        url = URL(self._api + path, encoded=True)
        headers = {"Content-Type": _JSON}
        if biz_user_id is not None:
            headers["X-Aily-BizUserID"] = _check_biz_user_id(
                call, biz_user_id, max_len=biz_user_id_max
            )
        elif self._biz_user_id is not None:
            headers["X-Aily-BizUserID"] = self._biz_user_id
        try:
            data = (
                json.dumps(
                    body, ensure_ascii=False, allow_nan=False, separators=(",", ":")
                ).encode()
                if body is not None
                else None
            )
        except (TypeError, ValueError) as exc:  # unserialisable, NaN, lone surrogate
            raise AilyValidationError(
                "body", f"must be JSON-serialisable UTF-8 ({exc})", call=call
            ) from None
        limiter = self.limiter_for(call)
        attempt = 0
        granted = granted and limiter is not None  # the next attempt's grant is already taken

        async def once() -> dict[str, Any]:
            nonlocal attempt, granted
            attempt += 1
            if granted:
                granted = False
            elif limiter is not None:
                await self._grant(call, limiter)
            # Nearly always at hand; fetched only if it expired while the call was queued.
            token = self._credentials.cached() or await self._token(call)
            headers["Authorization"] = f"Bearer {token}"
            try:
                return await self._exchange(
                    session, call, method, url, path, headers, data, params, attempt
                )
            except AilyRateLimitError as exc:
                self._stats.rate_limited += 1
                if limiter is not None:
                    wait = 1.0 if exc.retry_after is None else exc.retry_after
                    await limiter.pause(min(wait, self._retry.max_reset_wait))
                raise
            except AilyAuthError as exc:
                if exc.code in TENANT_TOKEN_INVALID and self._credentials.refreshable:
                    self._credentials.invalidate(token)
                raise

        # While in here, the task can be woken by close() (queued behind the limiter, asleep
        # between retries, or on the wire): it then ends with AilyClosedError at once.
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            if limiter is not None and not granted:
                # The first grant is taken here rather than inside the retry machinery, so a
                # call queued behind the limiter waits with a shallow stack.
                await self._grant(call, limiter)
                granted = True
            for refresh in (False, True):
                try:
                    return await self._retrier.run(once, call, safety, limiter is not None)
                except AilyAuthError as exc:
                    if (
                        refresh
                        or exc.code not in TENANT_TOKEN_INVALID
                        or not self._credentials.refreshable
                    ):
                        raise
                    logger.info(
                        "%s: tenant token rejected (code %s), refreshing once", call, exc.code
                    )
            raise AssertionError("unreachable")  # pragma: no cover
        except asyncio.CancelledError:
            if task is None or task not in self._woken_by_close:
                raise
            self._woken_by_close.discard(task)
            uncancel = getattr(task, "uncancel", None)  # Python >= 3.11
            if uncancel is not None:
                uncancel()
            raise AilyClosedError("the client was closed", call=call) from None
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def _grant(self, call: str, limiter: RateLimiter) -> None:
        # Have the token first: a grant must reach the server promptly, or the limiter's
        # window guarantee would not hold as the server sees it.
        if self._credentials.cached() is None:
            await self._token(call)
        await limiter.acquire()

    async def _retried(self, call: str, tries: int, wait: float, exc: BaseException) -> None:
        self._stats.retries += 1
        logger.info("%s: attempt %d failed (%s), retrying in %.2fs", call, tries, exc, wait)
        if self._hooks["retry"]:
            await emit(self._hooks["retry"], RetryEvent(call, tries, wait, exc))

    async def _token(self, call: str) -> str:
        try:
            return await self._credentials.token(self._fetch_token)
        except AilyError:
            raise
        except ValueError as exc:
            raise AilyResponseError(f"token fetch: {exc}", call=call) from None

    async def _fetch_token(self, body: dict[str, str]) -> dict[str, Any]:
        session = self._open()
        url = URL(self._base + TOKEN_PATH, encoded=True)
        data = json.dumps(body).encode()
        headers = {"Content-Type": _JSON}

        async def once() -> dict[str, Any]:
            return await self._exchange(
                session, "auth.token", "POST", url, TOKEN_PATH, headers, data, None, 1, raw=True
            )

        return await self._retrier.run(once, "auth.token", "idempotent", False)

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        call: str,
        method: str,
        url: URL,
        path: str,
        headers: dict[str, str],
        data: bytes | None,
        params: Mapping[str, str] | None,
        attempt: int,
        *,
        raw: bool = False,
    ) -> dict[str, Any]:
        """One HTTP exchange: send, read (capped), decode, map errors. No retries here."""
        if self._state == "closed":
            # A call that waited (limiter, token, backoff) while the client closed.
            raise AilyClosedError("the client is closed", call=call)
        if self._hooks["request"]:
            await emit(self._hooks["request"], RequestEvent(call, method, path, attempt))
        self._stats.count(call)
        started = time.perf_counter()
        status: int | None = None
        log_id: str | None = None
        code: int | None = None
        error: AilyError | None = None
        try:
            try:
                async with session.request(
                    method,
                    url,
                    data=data,
                    params=params,
                    headers=headers,
                    allow_redirects=False,
                ) as resp:
                    status = resp.status
                    log_id = resp.headers.get("X-Tt-Logid")
                    payload = await self._read(resp, call, log_id)
                    reset = resp.headers.get("x-ogw-ratelimit-reset")
            except asyncio.CancelledError:
                raise
            except aiohttp.ClientConnectorCertificateError as exc:
                raise AilyConnectionError(
                    f"TLS certificate rejected: {exc}", call=call, sent=False
                ) from exc
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                raise AilyConnectionError(
                    f"could not connect to {self._base}: {exc.__class__.__name__}: {exc}",
                    call=call,
                    sent=False,
                ) from exc
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise AilyTimeoutError(
                    f"no answer within {self._timeout.total:g}s ({exc.__class__.__name__})",
                    call=call,
                ) from exc
            except aiohttp.ClientConnectionError as exc:
                raise AilyConnectionError(
                    f"connection failed mid-request: {exc.__class__.__name__}: {exc}", call=call
                ) from exc
            except aiohttp.ClientError as exc:
                raise AilyTransportError(f"{exc.__class__.__name__}: {exc}", call=call) from exc
            result, code = self._decode(call, status, payload, log_id, reset, raw=raw)
            return result
        except AilyError as exc:
            error = exc
            if isinstance(exc, AilyAPIError):
                code = exc.code
            raise
        finally:
            elapsed = time.perf_counter() - started
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s %s %s -> %s code=%s attempt=%d %.1fms log_id=%s%s",
                    call,
                    method,
                    path,
                    status,
                    code,
                    attempt,
                    elapsed * 1000,
                    log_id,
                    f" error={error}" if error is not None else "",
                )
            if self._hooks["response"]:
                await emit(
                    self._hooks["response"],
                    ResponseEvent(
                        call, method, path, attempt, elapsed, status, code, log_id, error
                    ),
                )

    async def _read(self, resp: aiohttp.ClientResponse, call: str, log_id: str | None) -> bytes:
        cap = self._max_response_size
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

    def _decode(
        self,
        call: str,
        status: int,
        payload: bytes,
        log_id: str | None,
        reset: str | None,
        *,
        raw: bool,
    ) -> tuple[dict[str, Any], int | None]:
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
                raise _api_error(call, status, None, f"HTTP {status} with {what}", log_id, reset)
            raise AilyResponseError(
                f"expected a JSON object, got {what}", call=call, http_status=status, log_id=log_id
            )
        code = body.get("code")
        msg = body.get("msg")
        msg = msg if isinstance(msg, str) else ""
        if log_id is None:
            err = body.get("error")
            if isinstance(err, dict) and isinstance(err.get("log_id"), str):
                log_id = err["log_id"]
        if isinstance(code, bool) or not isinstance(code, int):
            if status >= 400:
                raise _api_error(call, status, None, msg or f"HTTP {status}", log_id, reset)
            raise AilyResponseError(
                f"the answer has no integer 'code' (got {type(code).__name__})",
                call=call,
                http_status=status,
                log_id=log_id,
            )
        if code != 0 or status >= 400:
            raise _api_error(call, status, code, msg, log_id, reset)
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


def _api_error(
    call: str, status: int, code: int | None, msg: str, log_id: str | None, reset: str | None
) -> AilyAPIError:
    hint = _HINTS.get(code, "") if code is not None else ""
    kwargs: dict[str, Any] = {
        "code": code,
        "http_status": status,
        "log_id": log_id,
        "call": call,
        "hint": hint,
    }
    if status == 429 or code == 99991400:
        retry_after: float | None = None
        if reset:
            try:
                retry_after = max(0.0, float(reset))
            except ValueError:
                retry_after = None
            if retry_after is not None and not math.isfinite(retry_after):
                retry_after = None
        return AilyRateLimitError(msg, retry_after=retry_after, **kwargs)
    if code in _AUTH_CODES:
        return AilyAuthError(msg, **kwargs)
    if code in _PERMISSION_CODES:
        return AilyPermissionError(msg, **kwargs)
    if status == 404:
        return AilyNotFoundError(msg, **kwargs)
    if status >= 500:
        return AilyServerError(msg, **kwargs)
    if code == 2700001:
        return AilyInvalidParamsError(msg, **kwargs)
    return AilyAPIError(msg, **kwargs)


class _Stats:
    """Request counters of one client (what the demo and benchmarks report)."""

    __slots__ = ("by_call", "rate_limited", "requests", "retries")

    def __init__(self) -> None:
        self.requests = 0
        self.retries = 0
        self.rate_limited = 0
        self.by_call: dict[str, int] = {}

    def count(self, call: str) -> None:
        self.requests += 1
        self.by_call[call] = self.by_call.get(call, 0) + 1

    def __repr__(self) -> str:
        return (
            f"Stats(requests={self.requests}, retries={self.retries}, "
            f"rate_limited={self.rate_limited})"
        )
