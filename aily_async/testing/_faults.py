"""Fault injection: random faults rolled from a seed, faults queued per route, and outages.

For every request the fake asks :meth:`FaultInjector.take` what to do to it: nothing, wait,
answer with an error without handling it, hold the answer back after handling, or drop the
connection before or after handling. An outage window answers every call of a route with an
error until it ends on the fake's clock.
"""

from __future__ import annotations

import json
import math
import random
from collections import deque
from collections.abc import Mapping
from typing import Any, Literal

import attrs
from aiohttp import web

from ._models import AUTH_ROUTE, ROUTES, DropWhen, Faults
from ._wire import (
    DEFAULT_MSG,
    HTML_TYPE,
    JSON_TYPE,
    PARAM_INVALID,
    RATE_LIMITED,
    error_body,
    json_response,
)

__all__ = ["FaultAction", "FaultInjector", "fault_response"]

_HTML_ERROR = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
}


@attrs.frozen(kw_only=True)
class FaultAction:
    """What to do to one request.

    ``kind`` is ``"error"`` (answer with ``status`` and ``body`` or an envelope with
    ``code``), ``"outage"`` (the same, while an outage lasts ``until`` that time of the fake's
    clock), ``"delay"``, ``"hold"``, ``"drop-before"``, ``"drop-after"`` or ``None`` (handle
    it normally, adding ``headers``). ``delay`` seconds pass before the request is handled,
    ``hold`` seconds after, before the answer is sent (or the connection dropped).
    """

    kind: str | None
    delay: float = 0.0
    hold: float = 0.0
    until: float | None = None
    status: int | None = None
    code: int | None = None
    body: bytes | None = None
    content_type: str = JSON_TYPE
    headers: Mapping[str, str] = attrs.Factory(dict)


@attrs.define
class _Injection:
    action: FaultAction
    remaining: int


@attrs.frozen
class _Outage:
    start: float
    end: float
    status: int


def _seconds(name: str, value: float) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_route(route: str) -> None:
    if route not in ROUTES and route != AUTH_ROUTE:
        raise ValueError(f"unknown route key {route!r}")


class FaultInjector:
    """Decides the fault of each request: an injected one first, else a random one.

    Args:
        faults: The random faults in force at first (``None``: none).
    """

    def __init__(self, faults: Faults | None = None) -> None:
        self._faults: Faults | None = None
        self._rng = random.Random()
        self._injections: dict[str, deque[_Injection]] = {}
        self._outages: dict[str, list[_Outage]] = {}
        self.set_faults(faults)

    @property
    def faults(self) -> Faults | None:
        """The random faults in force, if any."""
        return self._faults

    def set_faults(self, faults: Faults | None) -> None:
        """Replace the random faults (``None`` turns them off); reseeds from ``faults.seed``."""
        self._faults = faults
        self._rng = random.Random(faults.seed if faults is not None else None)

    def inject(
        self,
        route: str,
        *,
        status: int | Literal["auto"] | None,
        code: int | None,
        body: bytes | str | Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        times: int,
        drop: DropWhen | None,
        delay: float,
        hold: float = 0.0,
    ) -> None:
        """Queue a fault for the next ``times`` calls of ``route`` (see ``FakeAily.inject``).

        ``status="auto"`` means 500, or ``None`` (handle the call normally) with ``hold``.
        """
        _check_route(route)
        if times < 1:
            raise ValueError("times must be >= 1")
        if drop not in (None, "before", "after"):
            raise ValueError("drop must be None, 'before' or 'after'")
        delay = _seconds("delay", delay)
        hold = _seconds("hold", hold)
        if status == "auto":
            status = None if hold > 0 else 500
        raw: bytes | None
        if body is None:
            raw = None
        elif isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body, ensure_ascii=False).encode()
        content_type = HTML_TYPE if raw is not None and raw.lstrip()[:1] == b"<" else JSON_TYPE
        kind: str | None
        if drop is not None:
            kind = f"drop-{drop}"
        elif status is not None:
            kind = "error"
        elif hold > 0:
            kind = "hold"
        elif delay > 0:
            kind = "delay"
        else:
            kind = None
        action = FaultAction(
            kind=kind,
            delay=delay,
            hold=hold,
            status=status,
            code=code,
            body=raw,
            content_type=content_type,
            headers=dict(headers or {}),
        )
        self._injections.setdefault(route, deque()).append(_Injection(action, times))

    def add_outage(self, route: str, *, start: float, seconds: float, status: int) -> None:
        """Answer every call of ``route`` arriving in ``[start, start + seconds)`` with ``status``.

        Times are the fake's clock. Windows may overlap; the one added last sets the status.
        """
        _check_route(route)
        seconds = _seconds("seconds", seconds)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status!r}")
        self._outages.setdefault(route, []).append(_Outage(start, start + seconds, status))

    def _outage(self, route: str, now: float) -> FaultAction | None:
        windows = self._outages.get(route)
        if not windows:
            return None
        # The clock never goes back, so a window that ended is gone for good.
        windows[:] = [window for window in windows if now < window.end]
        active = [window for window in windows if window.start <= now]
        if not active:
            return None
        window = active[-1]
        return FaultAction(kind="outage", status=window.status, until=window.end)

    def _roll(self, route: str) -> FaultAction | None:
        faults = self._faults
        if faults is None or not faults.applies_to(route):
            return None
        rng = self._rng
        # Always draw the same number of values, so each request's fate depends on the seed
        # and its position only.
        r_kind, r_side, r_status, r_body, r_delay = (rng.random() for _ in range(5))
        low, high = faults.delay
        delay = low + (high - low) * r_delay
        if r_kind < faults.drop_rate:
            return FaultAction(kind="drop-before" if r_side < 0.5 else "drop-after", delay=delay)
        if r_kind < faults.drop_rate + faults.error_rate:
            status = (500, 502, 503)[min(2, int(r_status * 3))]
            if r_body < 0.5:
                html = _HTML_ERROR.format(status=status, reason=_REASONS[status]).encode()
                return FaultAction(
                    kind="error", delay=delay, status=status, body=html, content_type=HTML_TYPE
                )
            return FaultAction(kind="error", delay=delay, status=status, code=1)
        if delay > 0:
            return FaultAction(kind="delay", delay=delay)
        return None

    def take(self, route: str, now: float) -> FaultAction | None:
        """Return the fault of the request arriving on ``route`` at ``now``, if any.

        An outage comes first, then injected faults (an outage does not use them up), then
        random ones. The random faults are rolled in every case, so outages and injections do
        not shift the seeded sequence.
        """
        rolled = self._roll(route)
        outage = self._outage(route, now)
        if outage is not None:
            return outage
        queue = self._injections.get(route)
        if queue:
            injection = queue[0]
            injection.remaining -= 1
            if injection.remaining <= 0:
                queue.popleft()
            return injection.action
        return rolled


def fault_response(action: FaultAction, log_id: str) -> web.Response:
    """Build the error answer of an ``"error"`` or ``"outage"`` fault."""
    status = action.status if action.status is not None else 500
    if action.body is not None:
        return web.Response(
            body=action.body, status=status, headers={"Content-Type": action.content_type}
        )
    code = action.code
    if code is None:
        code = {429: RATE_LIMITED, 400: PARAM_INVALID, 404: PARAM_INVALID}.get(status, 1)
    msg = DEFAULT_MSG.get(code, "error")
    return json_response(status, error_body(code, msg, log_id))
