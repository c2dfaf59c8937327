"""The request pipeline of the fake: what happens to one HTTP call, from arrival to answer.

Fault (outage, injected or random), auth, rate limit, endpoint handler, then hold-back,
``Date`` stamping and the request log. :class:`Pipeline` owns the log and counters that
``FakeAily`` shows; the records themselves live in the store its handlers share.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal

from aiohttp import web

from ._clock import Clock
from ._context import Ctx, Handler
from ._faults import FaultInjector, fault_response
from ._models import AUTH_ROUTE, FakeApiError, RecordedRequest
from ._ratelimit import SlidingWindowLimiter
from ._tokens import TokenStore
from ._wire import (
    UNKNOWN_ROUTE,
    abort,
    decode_json,
    error_body,
    format_reset,
    invalid,
    json_response,
    new_log_id,
    rate_limit_error,
    recorded_request,
)

__all__ = ["Pipeline"]

_logger = logging.getLogger("aily_async.testing")


class Pipeline:
    """Answers the fake's HTTP calls and keeps their log.

    Args:
        clock: The fake's clock (arrival times, ``Date`` headers, timestamps).
        faults: Decides each call's fault.
        tokens: Grants and checks tokens.
        limiter: The rate limits in force.
        handlers: The endpoint handler of each route key.
        reset_header_precision: How ``x-ogw-ratelimit-reset`` is written.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        faults: FaultInjector,
        tokens: TokenStore,
        limiter: SlidingWindowLimiter,
        handlers: Mapping[str, Handler],
        reset_header_precision: Literal["int", "float"],
    ) -> None:
        self._clock = clock
        self._faults = faults
        self._tokens = tokens
        self._limiter = limiter
        self._handlers = dict(handlers)
        #: ``"int"`` or ``"float"``: how ``x-ogw-ratelimit-reset`` is written.
        self.reset_header_precision: Literal["int", "float"] = reset_header_precision
        #: The request log, in the order the answers were finished.
        self.requests: list[RecordedRequest] = []
        #: Answers refused with HTTP 429 by the rate limits, per route key.
        self.rate_limited: Counter[str] = Counter()
        #: Requests the token endpoint received.
        self.token_fetches = 0
        self._log_counter = 0
        self._closing: asyncio.Future[None] | None = None  # done once the fake closes
        self._closed = False

    def close(self) -> None:
        """Wake every call waiting out a delay or hold; they end without an answer."""
        self._closed = True
        if self._closing is not None and not self._closing.done():
            self._closing.set_result(None)

    async def stamp_date(self, _request: web.Request, response: web.StreamResponse) -> None:
        """Set ``Date`` from the fake's clock (an ``on_response_prepare`` signal handler).

        aiohttp only adds its own real-time ``Date`` when the answer has none.
        """
        response.headers["Date"] = self._clock.http_date(self._clock.now())

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` on the event loop; ``False`` if the fake began closing meanwhile."""
        if self._closed:
            return False
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_future()
        # asyncio.wait on a future starts no task (wait_for on a coroutine would): a client
        # test that counts the loop's tasks sees none of the fake's.
        await asyncio.wait((self._closing,), timeout=seconds)
        return not self._closing.done()

    async def endpoint(self, request: web.Request) -> web.StreamResponse:
        """Answer one call (the aiohttp handler of every route)."""
        route = request.match_info.route.name or UNKNOWN_ROUTE
        arrived = self._clock.now()
        self._log_counter += 1
        log_id = new_log_id(self._clock.wall_ms(arrived), self._log_counter)
        if route == AUTH_ROUTE:
            self.token_fetches += 1
        raw = await request.read()
        if request.content_type == "multipart/form-data":
            parsed, well_formed = None, True  # an upload: its handler reads the parts
        else:
            parsed, well_formed = decode_json(raw)
        action = self._faults.take(route, arrived)
        kind = action.kind if action is not None else None

        def record(status: int | None) -> None:
            self.requests.append(
                recorded_request(request, route, arrived, log_id, parsed, status, kind)
            )

        if action is not None and action.delay > 0 and not await self._pause(action.delay):
            record(None)  # the fake is closing
            return abort(request)
        if kind == "drop-before":
            record(None)
            return abort(request)
        response: web.StreamResponse
        if action is not None and kind in ("error", "outage"):
            response = fault_response(action, log_id)
            if kind == "outage" and action.status == 429 and action.until is not None:
                wait = format_reset(action.until - arrived, self.reset_header_precision)
                response.headers["x-ogw-ratelimit-reset"] = wait
        else:
            response = await self._respond(request, route, log_id, parsed, well_formed)
        if action is not None and action.headers:
            response.headers.update(action.headers)
        response.headers["X-Tt-Logid"] = log_id
        if action is not None and action.hold > 0:
            closing = not await self._pause(action.hold)
            transport = request.transport
            if closing or transport is None or transport.is_closing():
                record(None)  # the fake is closing, or the client gave up waiting
                return abort(request)
        if kind == "drop-after":
            record(None)
            return abort(request)
        record(response.status)
        return response

    async def _respond(
        self, request: web.Request, route: str, log_id: str, parsed: Any, well_formed: bool
    ) -> web.StreamResponse:
        ctx = Ctx(
            request=request,
            route=route,
            log_id=log_id,
            now=self._clock.now(),
            biz_user_id=request.headers.get("X-Aily-BizUserID"),
        )
        try:
            if route == UNKNOWN_ROUTE:
                raise FakeApiError(404, "404 page not found", http_status=404)
            if route == AUTH_ROUTE:
                return json_response(200, self._tokens.grant(parsed, well_formed))
            token = self._tokens.authenticate(request.headers.get("Authorization", ""), ctx.now)
            ctx.app_id = token.app_id
            ctx.principal = token.principal
            self._check_rate(ctx)
            if not well_formed:
                raise invalid("body", "is not valid JSON")
            if parsed is not None and not isinstance(parsed, dict):
                raise invalid("body", "must be a JSON object")
            ctx.body = parsed or {}
            data = await self._handlers[route](ctx)
            if ctx.stream is not None:
                return await ctx.stream()  # written and sent by the handler's stream
            return json_response(200, {"code": 0, "msg": "success", "data": data})
        except FakeApiError as exc:
            body = error_body(exc.code, exc.msg, log_id)
            return json_response(exc.http_status, body, exc.headers)
        except Exception:
            _logger.exception("FakeAily failed on %s %s", request.method, request.path)
            return json_response(500, error_body(1, "internal error", log_id))

    def _check_rate(self, ctx: Ctx) -> None:
        refusal = self._limiter.acquire(ctx.app_id, ctx.route, ctx.now)
        if refusal is not None:
            self.rate_limited[ctx.route] += 1
            raise rate_limit_error(*refusal, self.reset_header_precision)
