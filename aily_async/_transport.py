"""The transport: the one place every API call leaves through.

For each call it checks the client is open, serialises the body, and runs the attempts under
the one retry loop (:func:`aily_async._retry.call_with_retries`); each attempt takes the token,
a grant from the call's rate limiter, and one exchange over the :class:`Wire`, decoded, logged,
counted and told to the event hooks.

**Closing.** Every task inside the transport (a request, or a poll loop that entered a
:meth:`Transport.scope`) is tracked. :meth:`Transport.close` cancels them, and the outermost
scope of each turns that cancellation into :class:`AilyClosedError`: queued behind the limiter,
asleep between retries, on the wire or waiting for a run, a call ends at once, and the error is
made in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from asyncio import current_task
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from aiohttp import FormData
from yarl import URL

from ._auth import TENANT_TOKEN_INVALID, TOKEN_CALL, TOKEN_PATH, Credentials
from ._deadline import acquire_by, bounded
from ._errors import (
    AilyAPIError,
    AilyAuthError,
    AilyClosedError,
    AilyError,
    AilyRateLimitError,
    AilyResponseError,
    AilyValidationError,
)
from ._hooks import (
    CallEndEvent,
    CallStartEvent,
    Hook,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
    emit,
    sending,
)
from ._inflight import InFlight, Scope
from ._limiter import LimiterSet, LimiterState, QuotaFeedback, RateLimiter
from ._retry import (
    NotSent,
    Recover,
    RetryPolicy,
    Safety,
    call_with_retries,
    may_have_landed,
    not_sent,
)
from ._server_clock import ServerClock
from ._stats import Stats
from ._stream_body import Streamed
from ._validation import biz_user_id as check_biz_user_id
from ._validation import seconds as check_seconds
from ._wire import Wire, decode, open_stream

__all__ = ["API_PREFIX", "Transport"]

logger = logging.getLogger("aily_async")

API_PREFIX = "/open-apis/aily/v1"
_JSON = "application/json; charset=utf-8"
T = TypeVar("T")


State = Literal["unopened", "open", "closed"]


class Transport:
    """The request seam of one client. See the module docstring."""

    def __init__(
        self,
        *,
        credentials: Credentials,
        base_url: str,
        wire: Wire,
        owns_wire: bool,
        limits: LimiterSet | None,
        retry: RetryPolicy,
        biz_user_id: str | None,
        hooks: Mapping[str, tuple[Hook, ...]],
    ) -> None:
        self._credentials = credentials
        self._base = base_url
        self._api = base_url + API_PREFIX
        self._wire = wire
        self._owns_wire = owns_wire
        self._limits = limits
        self._retry = retry
        self._biz_user_id = biz_user_id
        self.set_hooks(hooks)
        self.stats = Stats()
        #: A lower bound of the server's clock, from the answers' ``Date`` headers.
        self.server_clock = ServerClock()
        self._state: State = "unopened"
        self._inflight = InFlight()
        self._reserved: dict[asyncio.Task[Any] | None, str] = {}  # see reserve()
        self._limiting: dict[str, _Limiting] = {}  # see limiting()

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """``"unopened"``, ``"open"`` or ``"closed"``."""
        return self._state

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._state == "closed"

    @property
    def wire(self) -> Wire:
        """How requests leave."""
        return self._wire

    @property
    def hooks(self) -> dict[str, tuple[Hook, ...]]:
        """The event hooks, by kind."""
        return dict(self._hooks)

    def set_hooks(self, hooks: Mapping[str, tuple[Hook, ...]]) -> None:
        """Replace the event hooks (already checked: :func:`aily_async._hooks.check_hooks`)."""
        self._hooks = dict(hooks)
        self._call_start_hooks = hooks.get("call_start", ())
        self._request_hooks = hooks.get("request", ())
        self._response_hooks = hooks.get("response", ())
        self._retry_hooks = hooks.get("retry", ())
        self._call_end_hooks = hooks.get("call_end", ())

    def open(self, call: str = "") -> None:
        """Mark the transport in use; raise :class:`AilyClosedError` once it was closed."""
        if self._state == "closed":
            raise AilyClosedError(
                "the client is closed and cannot be reused; make a new one", call=call
            )
        self._state = "open"

    def scope(self, call: str) -> Scope:
        """A scope that ends the task with :class:`AilyClosedError` if the client closes."""
        return Scope(self, call)

    def enter(self, call: str) -> asyncio.Task[Any] | None:
        """Track the current task (see :class:`Scope`); raise if closed."""
        self.open(call)
        task = asyncio.current_task()
        if task is not None:
            self._inflight.enter(task)
        return task

    def leave(self, task: asyncio.Task[Any] | None, call: str, exc: BaseException | None) -> None:
        """Stop tracking ``task``; the outermost scope turns close()'s cancellation into
        :class:`AilyClosedError`."""
        if task is None or not self._inflight.leave(task):
            return
        if self._reserved:
            self._reserved.pop(task, None)  # a grant reserved and never used
        self._inflight.closed_error(task, call, exc)

    async def close(self) -> None:
        """End every call inside with :class:`AilyClosedError` and release the connections."""
        if self._state == "closed":
            return
        self._state = "closed"
        self._inflight.wake_all()
        self._credentials.abort()
        if self._owns_wire:
            await self._wire.close()

    # -- limits ---------------------------------------------------------------------------

    def limiter_for(self, call: str) -> RateLimiter | None:
        """The limiter that ``call`` goes through (``None`` when throttling is off)."""
        return None if self._limits is None else self._limits.for_call(call)

    def limiting(self, call: str) -> _Limiting | None:
        """The limiter of ``call`` with what it can do beyond a :class:`RateLimiter`, decided
        once per limiter (a runtime protocol check costs microseconds, too much for every
        request); ``None`` when throttling is off."""
        if self._limits is None:
            return None
        limiter = self._limits.for_call(call)
        known = self._limiting.get(call)
        if known is None or known.limiter is not limiter:
            known = self._limiting[call] = _Limiting(limiter)
        return known

    async def reserve(self, call: str) -> None:
        """Wait for a grant of ``call`` now, and hold it for the current task's next request
        of ``call``, which then goes without queueing again.

        A poll waits for quota this way before its request is built: thousands of polls
        queued on the limiter then hold one small frame each, not a request's.
        """
        limiter = self.limiter_for(call)
        if limiter is None:
            return
        if self._credentials.cached() is None:
            with contextlib.suppress(NotSent):  # the request's first attempt tries again
                await self._token(call)
        await limiter.acquire()
        task = current_task()
        if task is not None:
            self._reserved[task] = call

    # -- the seam -------------------------------------------------------------------------

    async def request(
        self,
        call: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        form: Callable[[], FormData] | None = None,
        params: Mapping[str, str] | None = None,
        safety: Safety = "idempotent",
        biz_user_id: str | None = None,
        biz_user_id_max: int = 255,
        recover: Recover[dict[str, Any]] | None = None,
        done_if_gone: bool = False,
        deadline: float | None = None,
        timeout: float | None = None,
        streamed: Streamed | None = None,
    ) -> dict[str, Any]:
        """Send one API call and return its ``data`` object.

        ``path`` is below ``/open-apis/aily/v1`` with its ids already checked and encoded.
        ``form`` (an upload), in place of a JSON ``body``, builds the multipart body afresh
        for each attempt.
        Retries follow ``safety`` and ``recover`` (see :mod:`aily_async._retry`);
        ``done_if_gone``: a "not found" after an attempt that may have landed means that
        attempt did it (a delete), and the call succeeds with ``{}``. ``deadline`` (loop time)
        bounds every wait. With ``streamed``, an event-stream answer is not read: its open body
        is left in ``streamed.events`` (for the caller to read under :meth:`scope` and close)
        and the call returns ``{}``. ``timeout`` (seconds) bounds the whole call: queueing,
        token, attempts and waits (:class:`DeadlineExceeded`).
        """
        if timeout is not None:
            timeout = check_seconds(call, "timeout", timeout)
            return await bounded(
                call,
                timeout,
                self.request(
                    call,
                    method,
                    path,
                    body=body,
                    form=form,
                    params=params,
                    safety=safety,
                    biz_user_id=biz_user_id,
                    biz_user_id_max=biz_user_id_max,
                    recover=recover,
                    done_if_gone=done_if_gone,
                    deadline=asyncio.get_running_loop().time() + timeout,
                    streamed=streamed,
                ),
            )
        biz = (
            check_biz_user_id(call, biz_user_id, max_len=biz_user_id_max)
            if biz_user_id is not None
            else self._biz_user_id
        )
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
        limiting = self.limiting(call)
        limiter = None if limiting is None else limiting.limiter
        # Tracked while inside (a plain try, not a Scope: two coroutines less per call).
        task = self.enter(call)
        try:
            if self._call_start_hooks:
                await emit(self._call_start_hooks, CallStartEvent(call, method, path))
            granted = bool(self._reserved) and self._reserved.pop(task, None) == call
            if limiting is not None and not granted:
                # The first grant is queued for here, before the retry machinery exists: a
                # call waiting on the limiter (thousands of pollers, say) keeps a shallow
                # stack. The token comes first, so a grant reaches the server promptly and the
                # limiter's window holds as the server sees it.
                if self._credentials.cached() is None:
                    # A failed fetch is tried again (and counted) by the first attempt.
                    with contextlib.suppress(NotSent):
                        await self._token(call)
                if deadline is None:
                    await limiting.limiter.acquire()
                else:
                    await acquire_by(call, limiting.limiter, deadline, limiting.state)
                granted = True
            url = URL(self._api + path, encoded=True)
            headers = {"Content-Type": _JSON} if form is None else {}
            if biz is not None:
                headers["X-Aily-BizUserID"] = biz
            attempts = 0

            # A limiter that learns from the answers is told of each one that was not a 429,
            # and a call answered 429 keeps its place at the head of the queue.
            feedback = None if limiting is None else limiting.feedback
            refused = False

            async def attempt() -> dict[str, Any]:
                nonlocal attempts, granted, refused
                attempts += 1
                if granted:
                    granted = False
                elif limiter is not None:
                    if self._credentials.cached() is None:
                        await self._token(call)
                    if feedback is not None and refused:
                        await feedback.acquire(first=True)
                    else:
                        await limiter.acquire()
                # Nearly always at hand; fetched only if it expired while the call was queued.
                token = self._credentials.cached() or await self._token(call)
                headers["Authorization"] = f"Bearer {token}"
                payload = data if form is None else form()
                try:
                    result = await self._exchange(
                        call,
                        method,
                        url,
                        path,
                        headers,
                        payload,
                        params,
                        attempts,
                        streamed=streamed,
                    )
                except AilyRateLimitError:
                    self.stats.rate_limited += 1
                    refused = True
                    raise
                except AilyAPIError as exc:
                    if feedback is not None:
                        feedback.confirm()  # answered, and not 429
                    if (
                        isinstance(exc, AilyAuthError)
                        and exc.code in TENANT_TOKEN_INVALID
                        and self._credentials.refreshable
                    ):
                        logger.info(
                            "%s: tenant token rejected (code %s), refreshing", call, exc.code
                        )
                        self._credentials.invalidate(token)
                    raise
                if feedback is not None:
                    feedback.confirm()
                return result

            async def quota_wait(exc: AilyRateLimitError, wait: float) -> None:
                # Every call of this limiter waits; ours queues.
                if feedback is not None:
                    await feedback.pause(wait, limit=exc.limit)
                elif limiter is not None:
                    await limiter.pause(wait)
                elif wait > 0:
                    await asyncio.sleep(wait)

            result = await call_with_retries(
                attempt,
                call=call,
                safety=safety,
                policy=self._retry,
                quota_wait=quota_wait,
                on_retry=self._retried,
                recover=recover,
                gone=_nothing if done_if_gone else None,
                deadline=deadline,
                refreshable=self._credentials.refreshable,
            )
        except BaseException as exc:
            try:
                if self._call_end_hooks:
                    await emit(self._call_end_hooks, CallEndEvent(call, method, path, exc))
            finally:
                self.leave(task, call, exc)  # close() turns into AilyClosedError here
            raise
        self.leave(task, call, None)
        if self._call_end_hooks:
            await emit(self._call_end_hooks, CallEndEvent(call, method, path))
        return result

    async def _retried(self, call: str, tries: int, wait: float, exc: AilyError) -> None:
        self.stats.retries += 1
        logger.info("%s: attempt %d failed (%s), retrying in %.2fs", call, tries, exc, wait)
        if self._retry_hooks:
            await emit(self._retry_hooks, RetryEvent(call, tries, wait, exc))

    async def _token(self, call: str) -> str:
        """The token for ``call``; a fetch that failed for a passing reason (5xx, timeout,
        drop) is :class:`NotSent`, so the call's retry loop tries again."""
        try:
            return await self._credentials.token(self._fetch_token)
        except AilyError as exc:
            if may_have_landed(exc) or not_sent(exc):
                raise NotSent(exc) from exc
            raise
        except ValueError as exc:
            raise AilyResponseError(f"token fetch: {exc}", call=call) from None

    async def _fetch_token(self, body: dict[str, str]) -> dict[str, Any]:
        """One token exchange: its failures count as failed attempts of the call waiting."""
        url = URL(self._base + TOKEN_PATH, encoded=True)
        headers = {"Content-Type": _JSON}
        return await self._exchange(
            TOKEN_CALL,
            "POST",
            url,
            TOKEN_PATH,
            headers,
            json.dumps(body).encode(),
            None,
            1,
            raw=True,
        )

    async def _exchange(
        self,
        call: str,
        method: str,
        url: URL,
        path: str,
        headers: dict[str, str],
        data: bytes | FormData | None,
        params: Mapping[str, str] | None,
        attempt: int,
        *,
        raw: bool = False,
        streamed: Streamed | None = None,
    ) -> dict[str, Any]:
        """One HTTP exchange: send, decode, log, count, tell the hooks. No retries here."""
        if self._request_hooks:
            await emit(self._request_hooks, RequestEvent(call, method, path, attempt))
        observer = sending.get()
        if observer is not None:
            observer(call)
        self.stats.count(call)
        started = time.perf_counter()
        status: int | None = None
        log_id: str | None = None
        code: int | None = None
        error: AilyError | None = None
        try:
            if streamed is None:
                answer = await self._wire.send(call, method, url, headers, data, params)
            else:
                answer = await open_stream(
                    self._wire, call, method, url, headers, data, params, streamed.read_timeout
                )
            status, log_id = answer.status, answer.log_id
            self.server_clock.observe(answer.date)
            if streamed is not None and answer.events is not None:
                streamed.events = answer.events  # an event stream: the caller reads it
                return {}
            result, code = decode(call, answer, raw=raw)
            return result
        except AilyError as exc:
            error = exc
            if isinstance(exc, AilyAPIError):
                code = exc.code
                log_id = exc.log_id
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
            if self._response_hooks:
                await emit(
                    self._response_hooks,
                    ResponseEvent(
                        call, method, path, attempt, elapsed, status, code, log_id, error
                    ),
                )


class _Limiting:
    """A call's limiter, and the same limiter as a :class:`QuotaFeedback` and as a
    :class:`LimiterState` when it is one (else ``None``)."""

    __slots__ = ("feedback", "limiter", "state")

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.feedback = limiter if isinstance(limiter, QuotaFeedback) else None
        self.state = limiter if isinstance(limiter, LimiterState) else None


def _nothing() -> dict[str, Any]:
    return {}
