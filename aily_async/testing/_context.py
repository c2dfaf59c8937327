"""Request context: what an endpoint handler gets to know about one call, and shared lookups.

The server builds a :class:`Ctx` once a call passed auth and rate limits; handlers read the
path, query, body and caller from it and find the records the path names with
:func:`session_of` and :func:`run_of`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from aiohttp import web

from ._state import RUN_ID_RE, SESSION_ID_RE, RunRecord, SessionRecord
from ._store import Store
from ._wire import invalid, not_found

__all__ = ["Ctx", "Handler", "check_biz_user", "path_id", "run_of", "session_of"]


@attrs.define
class Ctx:
    """One call: the request, its route key, log id, arrival time, caller and JSON body."""

    request: web.Request
    route: str
    log_id: str
    now: float
    biz_user_id: str | None
    body: dict[str, Any] = attrs.Factory(dict)
    app_id: str = ""
    principal: str = ""
    #: Set by a handler that answers with a stream (an event stream): the pipeline sends the
    #: response it writes instead of the JSON envelope of the ``data`` returned.
    stream: Callable[[], Awaitable[web.StreamResponse]] | None = None


#: An endpoint handler: returns the ``data`` of a successful answer or raises FakeApiError.
Handler = Callable[[Ctx], Awaitable[dict[str, Any]]]


def path_id(ctx: Ctx, name: str, pattern: re.Pattern[str]) -> str:
    """Return the path parameter ``name``, which must match ``pattern``."""
    value = ctx.request.match_info[name]
    if not pattern.fullmatch(value):
        raise invalid(name, f"must match {pattern.pattern}")
    return value


def session_of(ctx: Ctx, store: Store) -> SessionRecord:
    """Return the session the path names, or raise the API's 400/404."""
    session_id = path_id(ctx, "aily_session_id", SESSION_ID_RE)
    session = store.sessions.get(session_id)
    if session is None:
        raise not_found("aily_session_id", f"session {session_id}")
    return session


def run_of(ctx: Ctx, store: Store, session: SessionRecord) -> RunRecord:
    """Return the run of ``session`` the path names, or raise the API's 400/404."""
    run_id = path_id(ctx, "run_id", RUN_ID_RE)
    run = store.runs.get(run_id)
    if run is None or run.session_id != session.id:
        raise not_found("run_id", f"run {run_id}")
    return run


def check_biz_user(ctx: Ctx, max_len: int) -> None:
    """Refuse an ``X-Aily-BizUserID`` header longer than ``max_len``."""
    if ctx.biz_user_id is not None and len(ctx.biz_user_id) > max_len:
        raise invalid("X-Aily-BizUserID", f"length must be <= {max_len}")
