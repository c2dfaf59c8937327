"""``FakeAily``: a real HTTP server that speaks the Aily OpenAPI, for tests and local runs.

Lifecycle, inspection API and fault controls; it composes the store, the endpoint handlers,
tokens, faults, the clock and the request pipeline (``_pipeline``) kept beside it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

from ._agent_models import ChatPlan, ChatScript
from ._agents_state import AgentStore, FakeAgents
from ._assets_state import AssetStore, FakeKnowledge
from ._clock import Clock
from ._context import Handler
from ._faults import FaultInjector
from ._handlers_agents import AgentHandlers, make_chat_script
from ._handlers_assets import AssetHandlers
from ._handlers_knowledge import KnowledgeHandlers
from ._handlers_runs import RunHandlers, make_run_script
from ._handlers_sessions import SessionHandlers, message_entries
from ._handlers_skills import SkillHandlers
from ._handlers_stats import StatsHandlers
from ._models import (
    ROUTES,
    DropWhen,
    FakeSkill,
    Faults,
    RecordedRequest,
    RunPlan,
    RunScript,
    SkillHandler,
)
from ._pipeline import Pipeline
from ._ratelimit import RateLimitConfig, SlidingWindowLimiter, resolve_limits
from ._state import run_wire, session_wire
from ._store import Store
from ._tokens import TokenStore
from ._wire import ROUTE_TABLE, UNKNOWN_ROUTE

__all__ = ["FakeAily"]


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

    Time-dependent behaviour (run progress, token expiry, rate windows, outages) reads the
    event loop's clock (``loop.time()``) or ``clock`` when given, so virtual-time loops drive
    the fake too. Runs advance lazily: nothing runs in the background. Wall-clock times (the
    ``created_at``-style timestamps, ``started_at``, ``ended_at``, the stamp in log ids) are
    that clock pinned to real time when the fake starts, plus ``clock_offset``; every answer
    carries a ``Date`` header taken from the same clock when it is sent, so the two agree.

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
        clock_offset: Seconds the server's wall clock is ahead of the real one (negative:
            behind). It shifts every timestamp the fake sends and the ``Date`` header of every
            answer (API calls and the token endpoint, errors and 429s included), never the
            fake's own timing (run progress, token expiry, windows), which runs on ``clock``.
        import_duration: Seconds a new data asset stays ``"PROCESSING"`` before its import
            ends (``"SUCCESS"``, or ``"FAILED"`` when there was nothing to import).
        chat_script: A :class:`ChatPlan` for every agent chat, or a callable that plans each
            chat from a :class:`ChatRequest` (how its status, reply and event stream go, and
            the stream's drop and stall test hooks).

    Choices where the documentation is silent:

    - Unknown (but well-formed) session, run, message or skill ids get HTTP 404 with code
      2700001 and a msg ending in ``"not found"``; malformed ones get HTTP 400.
    - Run timestamps not reached yet (``started_at``, ``ended_at``) are sent as ``"0"``;
      ``error`` is present only on ``FAILED`` runs.
    - Messages are listed oldest first, runs newest first, skills in catalogue order.
    - Only ``COMPLETED`` runs leave an answer message; a cancelled, failed or expired run
      leaves none. ``created_messages`` counts user messages only.
    - Faults (outages too) are decided before auth and rate limits; a 429 or a fault counts in
      :meth:`route_counts`, and an accepted call that then fails validation still uses quota.
    - Each token fetch issues a new tenant token (the real service may hand back the
      current one while it has more than 30 minutes left).
    - Knowledge, data assets and app stats (values the SDK does not give): see the modules
      ``_assets_state``, ``_handlers_assets``, ``_handlers_knowledge`` and ``_handlers_stats``
      of this package. In short: asset statuses ``PROCESSING`` → ``SUCCESS`` / ``FAILED``;
      asset times in milliseconds, strings in create/get answers and numbers in lists; item
      resources with the SDK's misspelt ``resouce_type``; uploads take the part named
      ``file`` with or without a filename and part type (both forms the SDK sends); asks
      answer from FAQ entries or the words of imported files; tags exist only through
      ``fake.knowledge`` (:class:`FakeKnowledge`); these calls get the default quota.
    - Agents (see ``_agents_state`` and ``_handlers_agents``): any agent id exists; chats go
      ``QUEUED`` → ``IN_PROGRESS`` → the plan's outcome with its ``finish_reason``; a chat
      created with ``stream: true`` is answered as an event stream of the fake's own format;
      the SDK's oddities are served (``next_page_token``, ``turns`` as one object, timestamps
      as strings or numbers by call); inspect and steer them through ``fake.agents``
      (:class:`FakeAgents`); these calls get the default quota.
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
        clock_offset: float = 0.0,
        import_duration: float = 0.2,
        chat_script: ChatPlan | ChatScript | None = None,
    ) -> None:
        if token_ttl <= 0:
            raise ValueError(f"token_ttl must be > 0, got {token_ttl!r}")
        if run_script is not None and run_duration is not None:
            raise ValueError("give run_script or run_duration, not both")
        if import_duration < 0:
            raise ValueError(f"import_duration must be >= 0, got {import_duration!r}")
        self._host = host
        self._port = port
        self._clock = Clock(clock, offset=clock_offset)
        self._store = Store()
        self._assets = AssetStore(self._store.new_id, self._store.next_seq)
        #: Data assets, uploads, tags and FAQ entries: inspect them, add tags and FAQs.
        self.knowledge = FakeKnowledge(self._assets, self._clock)
        agents = AgentStore(self._store.new_id, self._store.next_seq)
        #: Agent sessions, chats and attachments: inspect them, hide agents.
        self.agents = FakeAgents(agents, self._clock)
        run_handlers = RunHandlers(
            self._store, self._clock, make_run_script(run_script, run_duration)
        )
        skill_handlers = SkillHandlers(skills, skill_handler)
        self._limiter = SlidingWindowLimiter(resolve_limits(rate_limits, time_scale=time_scale))
        self._faults = FaultInjector(faults)
        self._tokens = TokenStore(
            credentials=credentials,
            ttl=float(token_ttl),
            invalid_token_status=invalid_token_status,
            now=self._clock.now,
        )
        # The token dicts under their old names (tests look at every token ever issued).
        self._tenant_tokens = self._tokens.tenant
        self._user_tokens = self._tokens.user
        handlers: dict[str, Handler] = {
            **SessionHandlers(self._store, self._clock).routes(),
            **run_handlers.routes(),
            **skill_handlers.routes(),
            **AssetHandlers(self._assets, self._clock, float(import_duration)).routes(),
            **KnowledgeHandlers(self._assets, self._clock).routes(),
            **StatsHandlers(self._store, self._assets, self._clock).routes(),
            **AgentHandlers(agents, self._clock, make_chat_script(chat_script)).routes(),
        }
        self._pipeline = Pipeline(
            clock=self._clock,
            faults=self._faults,
            tokens=self._tokens,
            limiter=self._limiter,
            handlers=handlers,
            reset_header_precision=reset_header_precision,
        )
        self._requests = self._pipeline.requests

        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start listening; calling it again while running does nothing."""
        if self._runner is not None:
            return
        if self._closed:
            raise RuntimeError("this FakeAily is closed; create a new one")
        self._clock.bind(asyncio.get_running_loop())
        # Roomy request limit, so oversized fields reach validation and get the API's answer.
        app = web.Application(client_max_size=64 * 1024 * 1024)
        endpoint = self._pipeline.endpoint
        for name, method, path in ROUTE_TABLE:
            app.router.add_route(method, path, endpoint, name=name)
        app.router.add_route("*", "/{tail:.*}", endpoint, name=UNKNOWN_ROUTE)
        app.on_response_prepare.append(self._pipeline.stamp_date)
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
        """Stop listening and drop open connections; calling it again does nothing.

        Calls still waiting out a ``delay`` or ``hold`` end at once, without an answer.
        """
        self._closed = True
        self._pipeline.close()
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
            f"<FakeAily {where} sessions={len(self._store.sessions)}"
            f" runs={len(self._store.runs)} requests={len(self._requests)}>"
        )

    # ------------------------------------------------------------------ tokens

    def issue_tenant_token(self, app_id: str = "cli_fake", *, ttl: float | None = None) -> str:
        """Issue a tenant token without an HTTP call (not counted in :attr:`token_fetches`)."""
        lifetime = self._tokens.ttl if ttl is None else ttl
        return self._tokens.issue(user=False, app_id=app_id, principal=app_id, ttl=lifetime)

    def issue_user_token(
        self, ttl: float = 7200.0, *, app_id: str = "cli_fake", user_id: str = "ou_fake_user"
    ) -> str:
        """Issue a user access token (``"u-…"``) that lives ``ttl`` seconds of the fake's clock."""
        return self._tokens.issue(user=True, app_id=app_id, principal=user_id, ttl=ttl)

    def expire_tokens(self, *, user: bool = False) -> None:
        """Make every tenant token issued so far invalid (and user tokens too with ``user``)."""
        self._tokens.expire(user=user)

    @property
    def token_fetches(self) -> int:
        """Requests the token endpoint received (refused ones included)."""
        return self._pipeline.token_fetches

    # ------------------------------------------------------------------ inspection

    @property
    def created_sessions(self) -> int:
        """Sessions created through the API."""
        return self._store.created_sessions

    @property
    def created_runs(self) -> int:
        """Runs created through the API."""
        return self._store.created_runs

    @property
    def created_messages(self) -> int:
        """User messages created through the API; deduplicated sends do not count."""
        return self._store.created_messages

    def session_ids(self) -> list[str]:
        """Ids of the sessions that exist now, oldest first."""
        return list(self._store.sessions)

    def get_session(self, session_id: str) -> dict[str, Any]:
        """Return a session as the API would send it; ``KeyError`` if unknown."""
        return session_wire(self._store.sessions[session_id], self._clock.ms)

    def run_count(self, session_id: str | None = None) -> int:
        """Count the runs that exist, in one session or in all."""
        if session_id is None:
            return len(self._store.runs)
        session = self._store.sessions.get(session_id)
        return 0 if session is None else len(session.runs)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """Return a run as the API would send it now; ``KeyError`` if unknown."""
        return run_wire(self._store.runs[run_id], self._clock.now(), self._clock.ms)

    def runs_in(self, session_id: str) -> list[dict[str, Any]]:
        """Return a session's runs as the API would send them now, oldest first."""
        now = self._clock.now()
        runs = self._store.sessions[session_id].runs
        return [run_wire(run, now, self._clock.ms) for run in runs]

    def messages_in(self, session_id: str, *, with_partial: bool = False) -> list[dict[str, Any]]:
        """Return a session's messages (user and assistant) as the API would list them now."""
        session = self._store.sessions[session_id]
        entries = message_entries(session, None, with_partial, self._clock.now(), self._clock.ms)
        return [render() for _, render in entries]

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, in the order the answers were finished."""
        return list(self._requests)

    def route_counts(self) -> Counter[str]:
        """Count logged requests per route key (429s, faults and drops included)."""
        return Counter(request.route for request in self._requests)

    @property
    def rate_limited(self) -> Counter[str]:
        """Answers refused with HTTP 429 by the rate limits, per route key."""
        return self._pipeline.rate_limited

    @property
    def reset_header_precision(self) -> Literal["int", "float"]:
        """``"int"`` or ``"float"``: how ``x-ogw-ratelimit-reset`` is written (settable)."""
        return self._pipeline.reset_header_precision

    @reset_header_precision.setter
    def reset_header_precision(self, value: Literal["int", "float"]) -> None:
        self._pipeline.reset_header_precision = value

    def reset_log(self) -> None:
        """Clear the request log, :attr:`rate_limited` and :attr:`token_fetches`.

        Sessions, runs, messages and the ``created_*`` counters are kept.
        """
        self._pipeline.requests.clear()
        self._pipeline.rate_limited.clear()
        self._pipeline.token_fetches = 0

    # ------------------------------------------------------------------ rate limits

    def external_load(self, route: str, n: int, *, app_id: str | None = None) -> None:
        """Use ``n`` slots of a route's quota now, as other workers of the app would.

        With ``app_id=None`` the load counts against every app. Does nothing when the route
        is not rate limited.
        """
        if route not in ROUTES:
            raise ValueError(f"unknown route key {route!r}")
        self._limiter.consume(route, n, self._clock.now(), app_id)

    # ------------------------------------------------------------------ faults

    @property
    def faults(self) -> Faults | None:
        """The random faults in force, if any."""
        return self._faults.faults

    def set_faults(self, faults: Faults | None) -> None:
        """Replace the random faults (``None`` turns them off); reseeds from ``faults.seed``."""
        self._faults.set_faults(faults)

    def inject(
        self,
        route: str,
        *,
        status: int | Literal["auto"] | None = "auto",
        code: int | None = None,
        body: bytes | str | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
        drop: DropWhen | None = None,
        delay: float = 0.0,
        hold: float = 0.0,
    ) -> None:
        """Answer the next ``times`` calls of ``route`` with a fault, in place of random ones.

        By default the call is answered with HTTP ``status`` and a JSON error envelope with
        ``code`` (default: 1 for 5xx, 99991400 for 429, 2700001 for 4xx, 1 otherwise) without
        taking effect; ``body`` replaces the envelope (a mapping is sent as JSON, bytes and
        text as they are, as HTML when they start with ``<``). ``status=None`` handles the
        call normally, which is useful with ``delay``, ``hold`` or ``headers``; the default
        ``"auto"`` means 500, or ``None`` when ``hold`` is given. ``drop="before"`` closes
        the connection without an answer before handling; ``drop="after"`` handles the call
        (it takes effect) and then closes the connection (``status`` is ignored with a drop).
        ``delay`` seconds pass before the call is handled; ``hold`` seconds pass after it was
        handled (so it took effect, with ``status=None``) before the answer is sent, so a
        client with a shorter timeout gives up on a call that did land. Both are slept on
        the event loop (a virtual-time loop fast-forwards them), not on ``clock``. A held
        answer whose client has gone is logged with status ``None``. ``headers`` are added
        to the answer. ``route`` may be ``"auth"`` for the token endpoint. Injections for one
        route are used in the order given.

        Note that aiohttp's client itself sends an idempotent request (GET, PUT, DELETE...)
        again, once, when the connection is closed before the answer, so a dropped GET, PUT
        or DELETE may show up twice in :attr:`requests`.
        """
        self._faults.inject(
            route,
            status=status,
            code=code,
            body=body,
            headers=headers,
            times=times,
            drop=drop,
            delay=delay,
            hold=hold,
        )

    def outage(self, route: str, seconds: float, *, status: int = 503) -> None:
        """Answer every call of ``route`` arriving within the next ``seconds`` with ``status``.

        ``route`` is a route key, or ``"auth"`` for the token endpoint; ``seconds`` are
        counted on the fake's clock from now. Each such call gets HTTP ``status`` (400-599)
        and the usual JSON error envelope (code 1 for 5xx, 99991400 for 429, 2700001 for other
        4xx), without taking effect, logged with fault ``"outage"``; a 429 also carries
        ``x-ogw-ratelimit-reset``, the time left in the window. An outage comes before
        injected faults, which wait for the calls after it. Windows may overlap; the latest
        one sets the status.
        """
        self._faults.add_outage(route, start=self._clock.now(), seconds=seconds, status=status)
