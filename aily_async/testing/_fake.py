"""``FakeAily``: a real HTTP server that speaks the Aily OpenAPI, for tests and local runs."""

from __future__ import annotations

import asyncio
import base64
import bisect
import inspect
import itertools
import json
import logging
import math
import random
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Literal, TypeVar

import attrs
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from ._models import (
    ACTIVE_RUN_STATUSES,
    AUTH_ROUTE,
    ROUTES,
    DropWhen,
    FakeApiError,
    FakeSkill,
    Faults,
    RecordedRequest,
    RunPlan,
    RunRequest,
    RunScript,
    SkillHandler,
    SkillRequest,
)
from ._ratelimit import RateLimitConfig, SlidingWindowLimiter, resolve_limits
from ._state import (
    ID_ALPHABET,
    MESSAGE_ID_RE,
    RUN_ID_RE,
    SESSION_ID_RE,
    MessageRecord,
    RunRecord,
    SessionRecord,
    answer_state,
    answer_wire,
    message_wire,
    run_wire,
    session_wire,
)

__all__ = ["FakeAily"]

_logger = logging.getLogger("aily_async.testing")

_T = TypeVar("_T")
_Handler = Callable[["_Ctx"], Awaitable[dict[str, Any]]]

_API = "/open-apis/aily/v1"
_TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
_UNKNOWN_ROUTE = "unknown"
_JSON_TYPE = "application/json; charset=utf-8"
_HTML_TYPE = "text/html; charset=utf-8"

#: How long the server remembers an ``idempotent_id`` (72 hours, as documented).
_DEDUP_SECONDS = 72 * 3600.0

_DEFAULT_PAGE_SIZE = 20
_MAX_PAGE_SIZE = 100

_PARAM_INVALID = 2700001
_RATE_LIMITED = 99991400
_TOKEN_MISSING = 99991661
_TENANT_TOKEN_INVALID = 99991663
_USER_TOKEN_INVALID = 99991668
_USER_TOKEN_EXPIRED = 99991677

_DEFAULT_MSG = {
    _PARAM_INVALID: "param is invalid",
    _RATE_LIMITED: "request trigger frequency limit",
    _TOKEN_MISSING: "Missing access token for authorization",
    _TENANT_TOKEN_INVALID: "Invalid access token for authorization",
    99991665: "Invalid access token for authorization",
    _USER_TOKEN_INVALID: "Invalid access token for authorization",
    _USER_TOKEN_EXPIRED: "Authentication token expired",
    1: "internal error",
}

_ROUTE_TABLE: tuple[tuple[str, str, str], ...] = (
    ("sessions.create", "POST", f"{_API}/sessions"),
    ("sessions.get", "GET", f"{_API}/sessions/{{aily_session_id}}"),
    ("sessions.update", "PUT", f"{_API}/sessions/{{aily_session_id}}"),
    ("sessions.delete", "DELETE", f"{_API}/sessions/{{aily_session_id}}"),
    ("messages.create", "POST", f"{_API}/sessions/{{aily_session_id}}/messages"),
    ("messages.list", "GET", f"{_API}/sessions/{{aily_session_id}}/messages"),
    ("messages.get", "GET", f"{_API}/sessions/{{aily_session_id}}/messages/{{aily_message_id}}"),
    ("runs.create", "POST", f"{_API}/sessions/{{aily_session_id}}/runs"),
    ("runs.list", "GET", f"{_API}/sessions/{{aily_session_id}}/runs"),
    ("runs.get", "GET", f"{_API}/sessions/{{aily_session_id}}/runs/{{run_id}}"),
    ("runs.cancel", "POST", f"{_API}/sessions/{{aily_session_id}}/runs/{{run_id}}/cancel"),
    ("skills.start", "POST", f"{_API}/apps/{{app_id}}/skills/{{skill_id}}/start"),
    ("skills.list", "GET", f"{_API}/apps/{{app_id}}/skills"),
    ("skills.get", "GET", f"{_API}/apps/{{app_id}}/skills/{{skill_id}}"),
    (AUTH_ROUTE, "POST", _TOKEN_PATH),
)

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


def _default_skills() -> list[FakeSkill]:
    skills = [
        FakeSkill(
            id="skill_echo",
            label="Echo",
            description="Answers with its input, as JSON.",
            samples=("hello",),
            input_schema=json.dumps(
                {"type": "object", "properties": {"query": {"type": "string"}}}
            ),
            output_schema=json.dumps({"type": "object"}),
        )
    ]
    skills.extend(
        FakeSkill(
            id=f"skill_{n:04d}",
            label=f"Skill {n}",
            description=f"Fake skill number {n}.",
            samples=(f"sample {n}",),
        )
        for n in range(1, 5)
    )
    return skills


# --------------------------------------------------------------------------- helpers


@attrs.define
class _Token:
    app_id: str
    principal: str
    expires: float


@attrs.frozen(kw_only=True)
class _FaultAction:
    kind: str | None
    delay: float = 0.0
    status: int | None = None
    code: int | None = None
    body: bytes | None = None
    content_type: str = _JSON_TYPE
    headers: Mapping[str, str] = attrs.Factory(dict)


@attrs.define
class _Injection:
    action: _FaultAction
    remaining: int


@attrs.define
class _Ctx:
    request: web.Request
    route: str
    log_id: str
    now: float
    biz_user_id: str | None
    body: dict[str, Any] = attrs.Factory(dict)
    app_id: str = ""
    principal: str = ""


def _invalid(field: str, rule: str) -> FakeApiError:
    return FakeApiError(_PARAM_INVALID, f"param is invalid: {field}: {rule}", http_status=400)


def _not_found(field: str, what: str) -> FakeApiError:
    return FakeApiError(
        _PARAM_INVALID, f"param is invalid: {field}: {what} not found", http_status=404
    )


def _str_field(
    body: Mapping[str, Any],
    name: str,
    *,
    label: str | None = None,
    required: bool = False,
    max_len: int | None = None,
    json_string: bool = False,
) -> str | None:
    label = label or name
    value = body.get(name)
    if value is None or (required and value == ""):
        if required:
            raise _invalid(label, "is required")
        return None
    if not isinstance(value, str):
        raise _invalid(label, "must be a string")
    if max_len is not None and len(value) > max_len:
        raise _invalid(label, f"length must be <= {max_len}")
    if json_string and value:
        try:
            json.loads(value)
        except ValueError:
            raise _invalid(label, "must be a JSON string") from None
    return value


def _str_list(body: Mapping[str, Any], name: str, *, label: str, max_items: int) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid(label, "must be a list of strings")
    if len(value) > max_items:
        raise _invalid(label, f"must hold at most {max_items} items")
    return list(value)


def _object(body: Mapping[str, Any], name: str, *, label: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(label, "must be an object")
    return value


def _decode_json(raw: bytes) -> tuple[Any, bool]:
    """Return ``(value, well_formed)``; an empty body is ``None`` and well formed."""
    if not raw.strip():
        return None, True
    try:
        return json.loads(raw), True
    except ValueError:
        return None, False


def _encode_page_token(kind: str, key: tuple[float, ...]) -> str:
    raw = json.dumps([kind, list(key)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page_token(token: str, kind: str) -> tuple[float, ...]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = json.loads(raw)
    except ValueError:
        raise _invalid("page_token", "is malformed") from None
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or decoded[0] != kind
        or not isinstance(decoded[1], list)
        or not all(isinstance(part, (int, float)) for part in decoded[1])
    ):
        raise _invalid("page_token", "is malformed")
    return tuple(decoded[1])


def _json_response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> web.Response:
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    response = web.Response(body=payload, status=status, headers={"Content-Type": _JSON_TYPE})
    if headers:
        response.headers.update(headers)
    return response


def _abort(request: web.Request) -> web.Response:
    """Close the connection at once; the returned response can never be sent.

    aiohttp then fails to write it, takes that for a client that went away and only logs it
    at debug level.
    """
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=599)


def _redact_headers(headers: CIMultiDictProxy[str]) -> CIMultiDictProxy[str]:
    copy = CIMultiDict(headers)
    auth = copy.get("Authorization")
    if auth is not None:
        scheme, _, token = auth.strip().partition(" ")
        token = token.strip()
        copy["Authorization"] = f"{scheme} {token[:2]}<redacted>" if token else scheme
    return CIMultiDictProxy(copy)


# --------------------------------------------------------------------------- the server


class FakeAily:
    """A local Aily OpenAPI server with the real service's wire format.

    It listens on ``host:port`` (an ephemeral port by default) once started, and answers the
    token endpoint and every Aily endpoint (sessions, messages, runs, skills) with the
    ``{"code", "msg", "data"}`` envelope, an ``X-Tt-Logid`` header and the documented
    validation, so the ``aily_async`` client, the official SDK or raw HTTP can drive it::

        async with FakeAily(run_duration=0.05) as fake:
            client = AilyClient("cli_x", "secret", base_url=fake.url)
            ...
            assert fake.created_runs == 1

    Time-dependent behaviour (run progress, token expiry, rate windows) reads the event loop's
    clock (``loop.time()``) or ``clock`` when given, so virtual-time loops drive the fake too.
    Runs advance lazily: nothing runs in the background.

    Args:
        host: Interface to listen on.
        port: Port to listen on; ``0`` picks a free one (see :attr:`url`).
        credentials: ``{app_id: app_secret}`` accepted by the token endpoint; ``None`` accepts
            any non-empty pair.
        token_ttl: Seconds a tenant token lives; ``expire`` in the answer is its ceiling.
        invalid_token_status: HTTP status of answers to invalid or expired tokens (the real
            service uses 400 and sometimes 200).
        run_script: A :class:`RunPlan` for every run, or a callable that plans each run from
            a :class:`RunRequest`. It may raise :class:`FakeApiError` to refuse the run.
        run_duration: Shortcut for ``run_script=RunPlan(duration=run_duration)``.
        skills: The skill catalogue (ids or :class:`FakeSkill`); default ``skill_echo`` and
            ``skill_0001`` to ``skill_0004``, the same for every app.
        skill_handler: Computes start-skill answers from a :class:`SkillRequest`, returning the
            ``output`` string or ``(output, status)``, sync or async. Default: echo the input.
        rate_limits: ``True`` enforces the documented quotas as strict sliding windows per
            route and app; a mapping sets ``[(limit, window_seconds), ...]`` per route key,
            ``"default"`` covering the routes it does not name. ``False`` (default): no limits.
        time_scale: Multiplies every rate-limit window (``0.01`` turns a minute into 0.6 s).
        faults: Random faults to inject (see :class:`Faults`); change with :meth:`set_faults`.
        clock: Replaces ``loop.time()`` as the fake's clock (seconds, monotonic).
        reset_header_precision: ``"int"`` sends ``x-ogw-ratelimit-reset`` as whole seconds
            (rounded up); ``"float"`` sends up to millisecond precision, e.g. ``"0.35"``.

    Choices where the documentation is silent:

    - Unknown (but well-formed) session, run, message or skill ids get HTTP 404 with code
      2700001 and a msg ending in ``"not found"``; malformed ones get HTTP 400.
    - Run timestamps not reached yet (``started_at``, ``ended_at``) are sent as ``"0"``;
      ``error`` is present only on ``FAILED`` runs.
    - Messages are listed oldest first, runs newest first, skills in catalogue order.
    - Only ``COMPLETED`` runs leave an answer message; a cancelled, failed or expired run
      leaves none. ``created_messages`` counts user messages only.
    - Faults are decided before auth and rate limits; a 429 or a fault still counts in
      :meth:`route_counts`, and an accepted call that then fails validation still uses quota.
    - Each token fetch issues a new tenant token (the real service may hand back the
      current one while it has more than 30 minutes left).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: Mapping[str, str] | None = None,
        token_ttl: float = 7200.0,
        invalid_token_status: int = 400,
        run_script: RunPlan | RunScript | None = None,
        run_duration: float | None = None,
        skills: Sequence[FakeSkill | str] | None = None,
        skill_handler: SkillHandler | None = None,
        rate_limits: bool | RateLimitConfig = False,
        time_scale: float = 1.0,
        faults: Faults | None = None,
        clock: Callable[[], float] | None = None,
        reset_header_precision: Literal["int", "float"] = "int",
    ) -> None:
        if token_ttl <= 0:
            raise ValueError(f"token_ttl must be > 0, got {token_ttl!r}")
        if run_script is not None and run_duration is not None:
            raise ValueError("give run_script or run_duration, not both")
        self._host = host
        self._port = port
        self._credentials = dict(credentials) if credentials is not None else None
        self._token_ttl = float(token_ttl)
        self._invalid_token_status = invalid_token_status
        self._run_script = self._make_run_script(run_script, run_duration)
        catalogue = (
            _default_skills()
            if skills is None
            else [
                skill if isinstance(skill, FakeSkill) else FakeSkill(id=skill, label=skill)
                for skill in skills
            ]
        )
        self._skills: dict[str, FakeSkill] = {skill.id: skill for skill in catalogue}
        self._skill_handler = skill_handler
        self._limiter = SlidingWindowLimiter(resolve_limits(rate_limits, time_scale=time_scale))
        self._clock = clock
        #: ``"int"`` or ``"float"``: how ``x-ogw-ratelimit-reset`` is written.
        self.reset_header_precision: Literal["int", "float"] = reset_header_precision

        self._faults: Faults | None = None
        self._fault_rng = random.Random()
        self.set_faults(faults)
        self._injections: dict[str, deque[_Injection]] = {}

        self._sessions: dict[str, SessionRecord] = {}
        self._runs: dict[str, RunRecord] = {}
        self._messages: dict[str, MessageRecord] = {}
        self._answers: dict[str, RunRecord] = {}
        self._dedup: dict[tuple[str, str], MessageRecord] = {}
        self._taken_ids: set[str] = set()
        self._id_rng = random.Random()
        self._seq = itertools.count()
        self._tenant_tokens: dict[str, _Token] = {}
        self._user_tokens: dict[str, _Token] = {}

        self._requests: list[RecordedRequest] = []
        self._log_counter = 0
        #: Answers refused with HTTP 429, per route key.
        self.rate_limited: Counter[str] = Counter()
        self._token_fetches = 0
        self._created_sessions = 0
        self._created_runs = 0
        self._created_messages = 0

        self._handlers: dict[str, _Handler] = {
            "sessions.create": self._sessions_create,
            "sessions.get": self._sessions_get,
            "sessions.update": self._sessions_update,
            "sessions.delete": self._sessions_delete,
            "messages.create": self._messages_create,
            "messages.get": self._messages_get,
            "messages.list": self._messages_list,
            "runs.create": self._runs_create,
            "runs.get": self._runs_get,
            "runs.list": self._runs_list,
            "runs.cancel": self._runs_cancel,
            "skills.start": self._skills_start,
            "skills.get": self._skills_get,
            "skills.list": self._skills_list,
        }

        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._closed = False
        self._epoch_ms: float | None = None
        self._epoch_now = 0.0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start listening; calling it again while running does nothing."""
        if self._runner is not None:
            return
        if self._closed:
            raise RuntimeError("this FakeAily is closed; create a new one")
        self._loop = asyncio.get_running_loop()
        self._wall_ms(self._now())  # pin the wall clock to the fake's clock
        # Roomy request limit, so oversized fields reach validation and get the API's answer.
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for name, method, path in _ROUTE_TABLE:
            app.router.add_route(method, path, self._endpoint, name=name)
        app.router.add_route("*", "/{tail:.*}", self._endpoint, name=_UNKNOWN_ROUTE)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Stop listening and drop open connections; calling it again does nothing."""
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeAily:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """The base URL, such as ``"http://127.0.0.1:54321"`` (no trailing slash)."""
        if self._url is None:
            raise RuntimeError("FakeAily is not started; use 'async with' or await start()")
        return self._url

    def __repr__(self) -> str:
        where = self._url or "not started"
        return (
            f"<FakeAily {where} sessions={len(self._sessions)} runs={len(self._runs)}"
            f" requests={len(self._requests)}>"
        )

    # ------------------------------------------------------------------ time

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        if self._loop is not None:
            return self._loop.time()
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    def _wall_ms(self, now: float) -> int:
        if self._epoch_ms is None:
            self._epoch_ms = time.time() * 1000
            self._epoch_now = now
        return int(self._epoch_ms + (now - self._epoch_now) * 1000)

    def _ms(self, now: float) -> str:
        return str(self._wall_ms(now))

    # ------------------------------------------------------------------ tokens

    def issue_tenant_token(self, app_id: str = "cli_fake", *, ttl: float | None = None) -> str:
        """Issue a tenant token without an HTTP call (not counted in :attr:`token_fetches`)."""
        lifetime = self._token_ttl if ttl is None else ttl
        return self._new_token(self._tenant_tokens, "t-", app_id, app_id, lifetime)

    def issue_user_token(
        self, ttl: float = 7200.0, *, app_id: str = "cli_fake", user_id: str = "ou_fake_user"
    ) -> str:
        """Issue a user access token (``"u-…"``) that lives ``ttl`` seconds of the fake's clock."""
        return self._new_token(self._user_tokens, "u-", app_id, user_id, ttl)

    def expire_tokens(self, *, user: bool = False) -> None:
        """Make every tenant token issued so far invalid (and user tokens too with ``user``)."""
        stores = [self._tenant_tokens, self._user_tokens] if user else [self._tenant_tokens]
        for store in stores:
            for token in store.values():
                token.expires = -math.inf

    def _new_token(
        self, store: dict[str, _Token], prefix: str, app_id: str, principal: str, ttl: float
    ) -> str:
        token = prefix + secrets.token_hex(16)
        store[token] = _Token(app_id=app_id, principal=principal, expires=self._now() + ttl)
        return token

    @property
    def token_fetches(self) -> int:
        """Requests the token endpoint received (refused ones included)."""
        return self._token_fetches

    # ------------------------------------------------------------------ inspection

    @property
    def created_sessions(self) -> int:
        """Sessions created through the API."""
        return self._created_sessions

    @property
    def created_runs(self) -> int:
        """Runs created through the API."""
        return self._created_runs

    @property
    def created_messages(self) -> int:
        """User messages created through the API; deduplicated sends do not count."""
        return self._created_messages

    def session_ids(self) -> list[str]:
        """Ids of the sessions that exist now, oldest first."""
        return list(self._sessions)

    def get_session(self, session_id: str) -> dict[str, Any]:
        """Return a session as the API would send it; ``KeyError`` if unknown."""
        return session_wire(self._sessions[session_id], self._ms)

    def run_count(self, session_id: str | None = None) -> int:
        """Count the runs that exist, in one session or in all."""
        if session_id is None:
            return len(self._runs)
        session = self._sessions.get(session_id)
        return 0 if session is None else len(session.runs)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """Return a run as the API would send it now; ``KeyError`` if unknown."""
        return run_wire(self._runs[run_id], self._now(), self._ms)

    def runs_in(self, session_id: str) -> list[dict[str, Any]]:
        """Return a session's runs as the API would send them now, oldest first."""
        now = self._now()
        return [run_wire(run, now, self._ms) for run in self._sessions[session_id].runs]

    def messages_in(self, session_id: str, *, with_partial: bool = False) -> list[dict[str, Any]]:
        """Return a session's messages (user and assistant) as the API would list them now."""
        entries = self._message_entries(self._sessions[session_id], None, with_partial)
        return [render() for _, render in entries]

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, in the order the answers were finished."""
        return list(self._requests)

    def route_counts(self) -> Counter[str]:
        """Count logged requests per route key (429s, faults and drops included)."""
        return Counter(request.route for request in self._requests)

    def reset_log(self) -> None:
        """Clear the request log, :attr:`rate_limited` and :attr:`token_fetches`.

        Sessions, runs, messages and the ``created_*`` counters are kept.
        """
        self._requests.clear()
        self.rate_limited.clear()
        self._token_fetches = 0

    # ------------------------------------------------------------------ rate limits

    def external_load(self, route: str, n: int, *, app_id: str | None = None) -> None:
        """Use ``n`` slots of a route's quota now, as other workers of the app would.

        With ``app_id=None`` the load counts against every app. Does nothing when the route
        is not rate limited.
        """
        if route not in ROUTES:
            raise ValueError(f"unknown route key {route!r}")
        self._limiter.consume(route, n, self._now(), app_id)

    def _format_reset(self, wait: float) -> str:
        # Round away float noise (60.000000001 s is 60 s) before rounding up.
        if self.reset_header_precision == "float":
            millis = max(1, math.ceil(round(wait * 1000, 6)))
            return f"{millis / 1000:.3f}".rstrip("0").rstrip(".")
        return str(max(1, math.ceil(round(wait, 6))))

    # ------------------------------------------------------------------ faults

    @property
    def faults(self) -> Faults | None:
        """The random faults in force, if any."""
        return self._faults

    def set_faults(self, faults: Faults | None) -> None:
        """Replace the random faults (``None`` turns them off); reseeds from ``faults.seed``."""
        self._faults = faults
        self._fault_rng = random.Random(faults.seed if faults is not None else None)

    def inject(
        self,
        route: str,
        *,
        status: int | None = 500,
        code: int | None = None,
        body: bytes | str | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
        drop: DropWhen | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``times`` calls of ``route`` with a fault, in place of random ones.

        By default the call is answered with HTTP ``status`` and a JSON error envelope with
        ``code`` (default: 1 for 5xx, 99991400 for 429, 2700001 for 4xx, 1 otherwise) without
        taking effect; ``body`` replaces the envelope (a mapping is sent as JSON, bytes and
        text as they are, as HTML when they start with ``<``). ``status=None`` handles the
        call normally, which is useful with ``delay`` or ``headers``. ``drop="before"``
        closes the connection without an answer before handling; ``drop="after"`` handles
        the call (it takes effect) and then closes the connection. ``delay`` seconds pass
        first in every case; ``headers`` are added to the answer. ``route`` may be ``"auth"``
        for the token endpoint. Injections for one route are used in the order given.

        Note that aiohttp's client itself retries an idempotent request (GET, PUT, DELETE...)
        once when a reused keep-alive connection is closed under it, so a dropped GET may
        show up twice in :attr:`requests`.
        """
        if route not in ROUTES and route != AUTH_ROUTE:
            raise ValueError(f"unknown route key {route!r}")
        if times < 1:
            raise ValueError("times must be >= 1")
        if drop not in (None, "before", "after"):
            raise ValueError("drop must be None, 'before' or 'after'")
        if delay < 0:
            raise ValueError("delay must be >= 0")
        raw: bytes | None
        if body is None:
            raw = None
        elif isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body, ensure_ascii=False).encode()
        content_type = _HTML_TYPE if raw is not None and raw.lstrip()[:1] == b"<" else _JSON_TYPE
        kind: str | None
        if drop is not None:
            kind = f"drop-{drop}"
        elif status is not None:
            kind = "error"
        elif delay > 0:
            kind = "delay"
        else:
            kind = None
        action = _FaultAction(
            kind=kind,
            delay=delay,
            status=status,
            code=code,
            body=raw,
            content_type=content_type,
            headers=dict(headers or {}),
        )
        self._injections.setdefault(route, deque()).append(_Injection(action, times))

    def _roll_fault(self, route: str) -> _FaultAction | None:
        faults = self._faults
        if faults is None or not faults.applies_to(route):
            return None
        rng = self._fault_rng
        # Always draw the same number of values, so each request's fate depends on the seed
        # and its position only.
        r_kind, r_side, r_status, r_body, r_delay = (rng.random() for _ in range(5))
        low, high = faults.delay
        delay = low + (high - low) * r_delay
        if r_kind < faults.drop_rate:
            return _FaultAction(kind="drop-before" if r_side < 0.5 else "drop-after", delay=delay)
        if r_kind < faults.drop_rate + faults.error_rate:
            status = (500, 502, 503)[min(2, int(r_status * 3))]
            if r_body < 0.5:
                html = _HTML_ERROR.format(status=status, reason=_REASONS[status]).encode()
                return _FaultAction(
                    kind="error", delay=delay, status=status, body=html, content_type=_HTML_TYPE
                )
            return _FaultAction(kind="error", delay=delay, status=status, code=1)
        if delay > 0:
            return _FaultAction(kind="delay", delay=delay)
        return None

    def _take_fault(self, route: str) -> _FaultAction | None:
        rolled = self._roll_fault(route)
        queue = self._injections.get(route)
        if queue:
            injection = queue[0]
            injection.remaining -= 1
            if injection.remaining <= 0:
                queue.popleft()
            return injection.action
        return rolled

    def _fault_response(self, action: _FaultAction, log_id: str) -> web.Response:
        status = action.status if action.status is not None else 500
        if action.body is not None:
            return web.Response(
                body=action.body, status=status, headers={"Content-Type": action.content_type}
            )
        code = action.code
        if code is None:
            code = {429: _RATE_LIMITED, 400: _PARAM_INVALID, 404: _PARAM_INVALID}.get(status, 1)
        msg = _DEFAULT_MSG.get(code, "error")
        return _json_response(status, self._error_body(code, msg, log_id))

    # ------------------------------------------------------------------ the request pipeline

    def _new_log_id(self, now: float) -> str:
        self._log_counter += 1
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(self._wall_ms(now) / 1000))
        return f"{stamp}{self._log_counter:06X}{secrets.token_hex(6).upper()}"

    @staticmethod
    def _error_body(code: int, msg: str, log_id: str) -> dict[str, Any]:
        return {
            "code": code,
            "msg": msg,
            "data": {},
            "error": {
                "log_id": log_id,
                "troubleshooter": (
                    "排查建议查看(Troubleshooting suggestions): "
                    f"https://open.feishu.cn/search?code={code}"
                ),
            },
        }

    async def _endpoint(self, request: web.Request) -> web.StreamResponse:
        route = request.match_info.route.name or _UNKNOWN_ROUTE
        arrived = self._now()
        log_id = self._new_log_id(arrived)
        if route == AUTH_ROUTE:
            self._token_fetches += 1
        raw = await request.read()
        parsed, well_formed = _decode_json(raw)
        action = self._take_fault(route)
        kind = action.kind if action is not None else None

        def record(status: int | None) -> None:
            self._record(request, route, arrived, log_id, parsed, status, kind)

        if action is not None and action.delay > 0:
            await asyncio.sleep(action.delay)
        if kind == "drop-before":
            record(None)
            return _abort(request)
        if action is not None and kind == "error":
            response = self._fault_response(action, log_id)
        else:
            response = await self._respond(request, route, log_id, parsed, well_formed)
        if action is not None and action.headers:
            response.headers.update(action.headers)
        response.headers["X-Tt-Logid"] = log_id
        if kind == "drop-after":
            record(None)
            return _abort(request)
        record(response.status)
        return response

    def _record(
        self,
        request: web.Request,
        route: str,
        arrived: float,
        log_id: str,
        parsed: Any,
        status: int | None,
        fault: str | None,
    ) -> None:
        if route == AUTH_ROUTE and isinstance(parsed, dict) and "app_secret" in parsed:
            parsed = {**parsed, "app_secret": "<redacted>"}
        self._requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                route=route,
                query=dict(request.query),
                headers=_redact_headers(request.headers),
                json=parsed,
                status=status,
                time=arrived,
                log_id=log_id,
                fault=fault,
                biz_user_id=request.headers.get("X-Aily-BizUserID"),
            )
        )

    async def _respond(
        self, request: web.Request, route: str, log_id: str, parsed: Any, well_formed: bool
    ) -> web.Response:
        ctx = _Ctx(
            request=request,
            route=route,
            log_id=log_id,
            now=self._now(),
            biz_user_id=request.headers.get("X-Aily-BizUserID"),
        )
        try:
            if route == _UNKNOWN_ROUTE:
                raise FakeApiError(404, "404 page not found", http_status=404)
            if route == AUTH_ROUTE:
                return _json_response(200, self._issue_from_request(ctx, parsed, well_formed))
            self._authenticate(ctx)
            self._check_rate(ctx)
            if not well_formed:
                raise _invalid("body", "is not valid JSON")
            if parsed is not None and not isinstance(parsed, dict):
                raise _invalid("body", "must be a JSON object")
            ctx.body = parsed or {}
            data = await self._handlers[route](ctx)
            return _json_response(200, {"code": 0, "msg": "success", "data": data})
        except FakeApiError as exc:
            body = self._error_body(exc.code, exc.msg, log_id)
            return _json_response(exc.http_status, body, exc.headers)
        except Exception:
            _logger.exception("FakeAily failed on %s %s", request.method, request.path)
            return _json_response(500, self._error_body(1, "internal error", log_id))

    def _issue_from_request(self, ctx: _Ctx, parsed: Any, well_formed: bool) -> dict[str, Any]:
        body = parsed if well_formed and isinstance(parsed, dict) else {}
        app_id, secret = body.get("app_id"), body.get("app_secret")
        if not (isinstance(app_id, str) and app_id and isinstance(secret, str) and secret):
            raise FakeApiError(10003, "invalid param", http_status=400)
        if self._credentials is not None:
            if app_id not in self._credentials:
                raise FakeApiError(10003, "invalid param: app_id not found", http_status=400)
            if not secrets.compare_digest(self._credentials[app_id], secret):
                raise FakeApiError(10014, "app secret invalid", http_status=400)
        token = self._new_token(self._tenant_tokens, "t-", app_id, app_id, self._token_ttl)
        return {
            "code": 0,
            "msg": "ok",
            "tenant_access_token": token,
            "expire": math.ceil(self._token_ttl),
        }

    def _authenticate(self, ctx: _Ctx) -> None:
        header = ctx.request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise FakeApiError(_TOKEN_MISSING, _DEFAULT_MSG[_TOKEN_MISSING], http_status=400)
        status = self._invalid_token_status
        if token.startswith("u-"):
            record = self._user_tokens.get(token)
            if record is None:
                code = _USER_TOKEN_INVALID
                raise FakeApiError(code, _DEFAULT_MSG[code], http_status=status)
            if ctx.now >= record.expires:
                code = _USER_TOKEN_EXPIRED
                raise FakeApiError(code, _DEFAULT_MSG[code], http_status=status)
        else:
            record = self._tenant_tokens.get(token)
            if record is None or ctx.now >= record.expires:
                code = _TENANT_TOKEN_INVALID
                raise FakeApiError(code, _DEFAULT_MSG[code], http_status=status)
        ctx.app_id = record.app_id
        ctx.principal = record.principal

    def _check_rate(self, ctx: _Ctx) -> None:
        refusal = self._limiter.acquire(ctx.app_id, ctx.route, ctx.now)
        if refusal is None:
            return
        limit, wait = refusal
        self.rate_limited[ctx.route] += 1
        raise FakeApiError(
            _RATE_LIMITED,
            _DEFAULT_MSG[_RATE_LIMITED],
            http_status=429,
            headers={
                "x-ogw-ratelimit-limit": str(limit),
                "x-ogw-ratelimit-reset": self._format_reset(wait),
            },
        )

    # ------------------------------------------------------------------ shared lookups

    def _new_id(self, prefix: str) -> str:
        while True:
            candidate = prefix + "".join(self._id_rng.choices(ID_ALPHABET, k=13))
            if candidate not in self._taken_ids:
                self._taken_ids.add(candidate)
                return candidate

    @staticmethod
    def _path_id(ctx: _Ctx, name: str, pattern: re.Pattern[str]) -> str:
        value = ctx.request.match_info[name]
        if not pattern.fullmatch(value):
            raise _invalid(name, f"must match {pattern.pattern}")
        return value

    def _session(self, ctx: _Ctx) -> SessionRecord:
        session_id = self._path_id(ctx, "aily_session_id", SESSION_ID_RE)
        session = self._sessions.get(session_id)
        if session is None:
            raise _not_found("aily_session_id", f"session {session_id}")
        return session

    def _run(self, ctx: _Ctx, session: SessionRecord) -> RunRecord:
        run_id = self._path_id(ctx, "run_id", RUN_ID_RE)
        run = self._runs.get(run_id)
        if run is None or run.session_id != session.id:
            raise _not_found("run_id", f"run {run_id}")
        return run

    @staticmethod
    def _check_biz_user(ctx: _Ctx, max_len: int) -> None:
        if ctx.biz_user_id is not None and len(ctx.biz_user_id) > max_len:
            raise _invalid("X-Aily-BizUserID", f"length must be <= {max_len}")

    @staticmethod
    def _page_size(ctx: _Ctx) -> int:
        raw = ctx.request.query.get("page_size", "")
        if not raw:
            return _DEFAULT_PAGE_SIZE
        try:
            size = int(raw)
        except ValueError:
            raise _invalid("page_size", "must be an integer") from None
        if not 1 <= size <= _MAX_PAGE_SIZE:
            raise _invalid("page_size", f"must be between 1 and {_MAX_PAGE_SIZE}")
        return size

    def _page(
        self, ctx: _Ctx, kind: str, entries: Sequence[tuple[tuple[float, ...], Callable[[], _T]]]
    ) -> tuple[list[_T], bool, str | None]:
        """Cut one page out of ``entries`` (sorted by key); tokens hold the last key sent."""
        size = self._page_size(ctx)
        token = ctx.request.query.get("page_token", "")
        start = 0
        if token:
            cursor = _decode_page_token(token, kind)
            start = bisect.bisect_right([key for key, _ in entries], cursor)
        chunk = entries[start : start + size]
        has_more = start + size < len(entries)
        next_token = _encode_page_token(kind, chunk[-1][0]) if has_more and chunk else None
        return [render() for _, render in chunk], has_more, next_token

    @staticmethod
    def _paged(key: str, items: list[Any], has_more: bool, token: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {key: items, "has_more": has_more}
        if token is not None:
            data["page_token"] = token
        return data

    # ------------------------------------------------------------------ sessions

    async def _sessions_create(self, ctx: _Ctx) -> dict[str, Any]:
        channel_context = _str_field(ctx.body, "channel_context") or ""
        metadata = _str_field(ctx.body, "metadata") or ""
        session = SessionRecord(
            id=self._new_id("session_"),
            created=ctx.now,
            modified=ctx.now,
            created_by=ctx.biz_user_id or ctx.principal,
            channel_context=channel_context,
            metadata=metadata,
        )
        self._sessions[session.id] = session
        self._created_sessions += 1
        return {"session": session_wire(session, self._ms)}

    async def _sessions_get(self, ctx: _Ctx) -> dict[str, Any]:
        return {"session": session_wire(self._session(ctx), self._ms)}

    async def _sessions_update(self, ctx: _Ctx) -> dict[str, Any]:
        session = self._session(ctx)
        channel_context = _str_field(ctx.body, "channel_context")
        metadata = _str_field(ctx.body, "metadata")
        if channel_context is not None:
            session.channel_context = channel_context
        if metadata is not None:
            session.metadata = metadata
        session.modified = ctx.now
        return {"session": session_wire(session, self._ms)}

    async def _sessions_delete(self, ctx: _Ctx) -> dict[str, Any]:
        session = self._session(ctx)
        del self._sessions[session.id]
        for message in session.messages:
            self._messages.pop(message.id, None)
            self._dedup.pop((session.id, message.idempotent_id), None)
        for run in session.runs:
            self._runs.pop(run.id, None)
            self._answers.pop(run.answer_message_id, None)
        return {}

    # ------------------------------------------------------------------ messages

    async def _messages_create(self, ctx: _Ctx) -> dict[str, Any]:
        self._path_id(ctx, "aily_session_id", SESSION_ID_RE)
        body = ctx.body
        idempotent_id = _str_field(body, "idempotent_id", required=True, max_len=64)
        content_type = _str_field(body, "content_type", required=True, max_len=64)
        content = _str_field(body, "content", max_len=61440)
        if content is None:
            raise _invalid("content", "is required")
        files = _str_list(body, "file_ids", label="file_ids", max_items=32)
        quote = _str_field(body, "quote_message_id") or ""
        if quote and not MESSAGE_ID_RE.fullmatch(quote):
            raise _invalid("quote_message_id", f"must match {MESSAGE_ID_RE.pattern}")
        mentions = body.get("mentions") or []
        if not isinstance(mentions, list) or not all(isinstance(m, dict) for m in mentions):
            raise _invalid("mentions", "must be a list of objects")
        session = self._session(ctx)
        assert idempotent_id is not None
        assert content_type is not None

        key = (session.id, idempotent_id)
        existing = self._dedup.get(key)
        if existing is not None and ctx.now - existing.created < _DEDUP_SECONDS:
            return {"message": message_wire(existing, self._ms)}

        message = MessageRecord(
            id=self._new_id("message_"),
            session_id=session.id,
            content_type=content_type,
            content=content,
            files=tuple(files),
            quote_message_id=quote,
            mentions=mentions,
            sender={
                "entity_id": ctx.biz_user_id or ctx.principal,
                "identity_provider": "FEISHU",
                "sender_type": "USER",
                "aily_id": "",
            },
            created=ctx.now,
            seq=next(self._seq),
            idempotent_id=idempotent_id,
        )
        session.messages.append(message)
        self._messages[message.id] = message
        self._dedup[key] = message
        self._created_messages += 1
        # A run waiting for the user goes on with this message.
        if session.runs:
            run = session.runs[-1]
            if run.view(ctx.now).status == "REQUIRES_MESSAGE":
                run.resumed_at = ctx.now
                if run.echo_reply:
                    run.answer = f"Echo: {content}"
        return {"message": message_wire(message, self._ms)}

    async def _messages_get(self, ctx: _Ctx) -> dict[str, Any]:
        session = self._session(ctx)
        message_id = self._path_id(ctx, "aily_message_id", MESSAGE_ID_RE)
        message = self._messages.get(message_id)
        if message is not None and message.session_id == session.id:
            return {"message": message_wire(message, self._ms)}
        run = self._answers.get(message_id)
        if run is not None and run.session_id == session.id:
            state = answer_state(run, ctx.now, partial=True)
            if state is not None:
                return {"message": answer_wire(run, state, self._ms)}
        raise _not_found("aily_message_id", f"message {message_id}")

    def _message_entries(
        self, session: SessionRecord, run_id: str | None, with_partial: bool
    ) -> list[tuple[tuple[float, ...], Callable[[], dict[str, Any]]]]:
        now = self._now()
        entries: list[tuple[tuple[float, ...], Callable[[], dict[str, Any]]]] = []
        if not run_id:
            for message in session.messages:
                entries.append(
                    ((message.created, message.seq), partial(message_wire, message, self._ms))
                )
        for run in session.runs:
            if run_id and run.id != run_id:
                continue
            state = answer_state(run, now, partial=with_partial)
            if state is not None:
                entries.append(
                    ((state[0], run.answer_seq), partial(answer_wire, run, state, self._ms))
                )
        entries.sort(key=lambda entry: entry[0])
        return entries

    async def _messages_list(self, ctx: _Ctx) -> dict[str, Any]:
        session = self._session(ctx)
        query = ctx.request.query
        run_id = query.get("run_id", "")
        if run_id and not RUN_ID_RE.fullmatch(run_id):
            raise _invalid("run_id", f"must match {RUN_ID_RE.pattern}")
        partial_raw = query.get("with_partial_message", "false").lower()
        if partial_raw not in ("true", "false", "1", "0", ""):
            raise _invalid("with_partial_message", "must be true or false")
        with_partial = partial_raw in ("true", "1")
        entries = self._message_entries(session, run_id or None, with_partial)
        items, has_more, token = self._page(ctx, "messages", entries)
        return self._paged("messages", items, has_more, token)

    # ------------------------------------------------------------------ runs

    async def _runs_create(self, ctx: _Ctx) -> dict[str, Any]:
        self._path_id(ctx, "aily_session_id", SESSION_ID_RE)
        self._check_biz_user(ctx, 64)
        body = ctx.body
        app_id = _str_field(body, "app_id", required=True, max_len=64)
        skill_id = _str_field(body, "skill_id", max_len=32) or None
        skill_input = _str_field(body, "skill_input", max_len=255, json_string=True)
        metadata = _str_field(body, "metadata", max_len=255, json_string=True)
        session = self._session(ctx)
        assert app_id is not None
        if session.runs:
            last = session.runs[-1]
            status = last.view(ctx.now).status
            if status in ACTIVE_RUN_STATUSES:
                raise FakeApiError(
                    _PARAM_INVALID,
                    f"param is invalid: session {session.id} already has an active run "
                    f"{last.id} ({status})",
                    http_status=400,
                )
        request = RunRequest(
            session_id=session.id,
            app_id=app_id,
            skill_id=skill_id,
            skill_input=skill_input,
            metadata=metadata,
            last_user_message=session.messages[-1].content if session.messages else None,
            biz_user_id=ctx.biz_user_id,
        )
        plan = self._run_script(request)
        if not isinstance(plan, RunPlan):
            raise TypeError(f"run_script must return a RunPlan, got {plan!r}")
        answer, echo_reply = plan.answer, False
        if answer is None:
            if skill_id and skill_input:
                answer = json.dumps(json.loads(skill_input), ensure_ascii=False)
            else:
                answer = f"Echo: {request.last_user_message or ''}"
                echo_reply = True
        run = RunRecord(
            id=self._new_id("run_"),
            session_id=session.id,
            app_id=app_id,
            skill_id=skill_id,
            skill_input=skill_input,
            metadata=metadata,
            plan=plan,
            answer=answer,
            answer_message_id=self._new_id("message_"),
            created=ctx.now,
            seq=next(self._seq),
            answer_seq=next(self._seq),
            echo_reply=echo_reply,
        )
        session.runs.append(run)
        self._runs[run.id] = run
        self._answers[run.answer_message_id] = run
        self._created_runs += 1
        return {"run": run_wire(run, ctx.now, self._ms)}

    async def _runs_get(self, ctx: _Ctx) -> dict[str, Any]:
        session = self._session(ctx)
        return {"run": run_wire(self._run(ctx, session), ctx.now, self._ms)}

    async def _runs_list(self, ctx: _Ctx) -> dict[str, Any]:
        """List runs newest first."""
        session = self._session(ctx)
        now = ctx.now
        entries: list[tuple[tuple[float, ...], Callable[[], dict[str, Any]]]] = [
            ((-run.seq,), partial(run_wire, run, now, self._ms)) for run in reversed(session.runs)
        ]
        items, has_more, token = self._page(ctx, "runs", entries)
        return self._paged("runs", items, has_more, token)

    async def _runs_cancel(self, ctx: _Ctx) -> dict[str, Any]:
        session = self._session(ctx)
        run = self._run(ctx, session)
        if run.view(ctx.now).status in ACTIVE_RUN_STATUSES:
            run.cancelled_at = ctx.now
        return {"run": run_wire(run, ctx.now, self._ms)}

    @staticmethod
    def _make_run_script(
        run_script: RunPlan | RunScript | None, run_duration: float | None
    ) -> RunScript:
        if run_script is None:
            run_script = RunPlan() if run_duration is None else RunPlan(duration=run_duration)
        if isinstance(run_script, RunPlan):
            plan = run_script
            return lambda _request: plan
        return run_script

    # ------------------------------------------------------------------ skills

    @staticmethod
    def _skill_path(ctx: _Ctx, *, with_skill: bool) -> tuple[str, str]:
        app_id = ctx.request.match_info["app_id"]
        if len(app_id) > 64:
            raise _invalid("app_id", "length must be <= 64")
        skill_id = ctx.request.match_info.get("skill_id", "") if with_skill else ""
        if len(skill_id) > 32:
            raise _invalid("skill_id", "length must be <= 32")
        return app_id, skill_id

    async def _skills_start(self, ctx: _Ctx) -> dict[str, Any]:
        app_id, skill_id = self._skill_path(ctx, with_skill=True)
        self._check_biz_user(ctx, 255)
        gv = _object(ctx.body, "global_variable", label="global_variable")
        query = _str_field(gv, "query", label="global_variable.query", max_len=40960)
        files = _str_list(gv, "files", label="global_variable.files", max_items=32)
        channel = _object(gv, "channel", label="global_variable.channel")
        variables = _str_field(
            channel,
            "variables",
            label="global_variable.channel.variables",
            max_len=255,
            json_string=True,
        )
        skill_input = _str_field(ctx.body, "input", max_len=40960, json_string=True)
        request = SkillRequest(
            app_id=app_id,
            skill_id=skill_id,
            query=query,
            files=tuple(files),
            variables=variables,
            input=skill_input,
            biz_user_id=ctx.biz_user_id,
        )
        if self._skill_handler is None:
            output, status = self._echo_skill(request), "success"
        else:
            result = self._skill_handler(request)
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, str):
                output, status = result, "success"
            else:
                output, status = result
        return {"output": output, "status": status}

    @staticmethod
    def _echo_skill(request: SkillRequest) -> str:
        def parsed(raw: str | None) -> Any:
            if not raw:
                return None
            try:
                return json.loads(raw)
            except ValueError:
                return raw

        return json.dumps(
            {
                "skill_id": request.skill_id,
                "query": request.query or "",
                "files": list(request.files),
                "variables": parsed(request.variables),
                "input": parsed(request.input),
            },
            ensure_ascii=False,
        )

    async def _skills_get(self, ctx: _Ctx) -> dict[str, Any]:
        _, skill_id = self._skill_path(ctx, with_skill=True)
        skill = self._skills.get(skill_id)
        if skill is None:
            raise _not_found("skill_id", f"skill {skill_id}")
        return {"skill": skill.to_wire()}

    async def _skills_list(self, ctx: _Ctx) -> dict[str, Any]:
        self._skill_path(ctx, with_skill=False)
        entries: list[tuple[tuple[float, ...], Callable[[], dict[str, Any]]]] = [
            ((float(index),), skill.to_wire) for index, skill in enumerate(self._skills.values())
        ]
        items, has_more, token = self._page(ctx, "skills", entries)
        return self._paged("skills", items, has_more, token)
