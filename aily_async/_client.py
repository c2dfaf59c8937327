"""``AilyClient``: the facade that builds the transport, the resources and batches."""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import aiohttp

from ._agents import Agents
from ._app_stats import AppStats
from ._auth import Credentials
from ._data_assets import DataAssets, DataAssetTags
from ._hooks import EventHooks, Hook, check_hooks
from ._knowledge import Knowledge
from ._limiter import DEFAULT_LIMITS, LimiterOption, RateLimiter, limiter_set
from ._polling import DurationStats, PollPolicy
from ._resources import Messages, Sessions, Skills
from ._retry import RetryPolicy, Safety
from ._runs import Runs
from ._stats import Stats
from ._transport import Transport
from ._validation import biz_user_id as check_biz_user_id
from ._wire import AiohttpWire, Wire
from .batch import Batch

__all__ = ["DEFAULT_LIMITS", "FEISHU_HOST", "LARK_HOST", "AilyClient"]

FEISHU_HOST = "https://open.feishu.cn"
LARK_HOST = "https://open.larksuite.com"


class AilyClient:
    """An asyncio client for the Aily OpenAPI.

    Hold one for the life of your program (``async with AilyClient(...) as client`` or
    ``await client.close()`` at the end). It owns one pooled aiohttp session, created on first
    use inside the running loop, and sends every call through one transport that adds the
    token, the rate limiter, retries, decoding and error mapping.

    The calls, by group: ``client.sessions``, ``client.messages``, ``client.runs`` (``run()``
    for a whole round trip, ``create()`` for an awaitable :class:`RunHandle`),
    ``client.skills``, ``client.knowledge``, ``client.data_assets``,
    ``client.data_asset_tags``, ``client.app_stats`` and ``client.agents``; ``client.batch``
    runs many of them. Every call takes ``timeout=`` (seconds), which bounds all it does.

    Credentials: ``app_id``/``app_secret`` of the Feishu self-built app (default: the
    ``FEISHU_APP_ID``/``FEISHU_APP_SECRET`` environment variables), or a fixed
    ``tenant_access_token`` or ``user_access_token``.

    ``limiter``: left out, each call gets a bucket sized to its documented quota
    (:class:`Limits`); a single :class:`TokenBucket` (or any :class:`RateLimiter`) throttles
    every call together; a :class:`Limits` (or any object with ``for_call``) chooses per call;
    ``None`` turns client-side throttling off.

    ``base_url``: the API host (default: the ``AILY_BASE_URL`` environment variable, else
    :data:`FEISHU_HOST`); an argument beats the environment.

    Connections: ``trust_env`` (default on) sends requests through the proxy named by
    ``HTTP_PROXY``/``HTTPS_PROXY`` unless ``NO_PROXY`` names the host, as aiohttp reads them;
    ``proxy`` names one outright. ``session``: your own :class:`aiohttp.ClientSession` to
    send through (its connector, proxy settings and TLS); the client never closes it, and
    still never follows a redirect nor lets aiohttp resend a request.

    Polling (run handles): left out, the client's pollers share a budget of ``runs.get``
    polls (:meth:`PollPolicy.shared`: each run is polled every 0.5 s while few are going, and
    the budget is shared fairly when many are); ``poll_interval=S`` or ``poll=PollPolicy(...)``
    choose a schedule instead (:meth:`PollPolicy.frugal` for the fewest requests).

    ``wire``: how requests leave (default: one pooled aiohttp session the client owns and
    closes); give your own :class:`aily_async.Wire` to play answers in tests.
    """

    def __init__(
        self,
        app_id: str | None = None,
        app_secret: str | None = None,
        *,
        tenant_access_token: str | None = None,
        user_access_token: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_connections: int = 100,
        limiter: LimiterOption = DEFAULT_LIMITS,
        retry: RetryPolicy | None = None,
        poll_interval: float | None = None,
        poll: PollPolicy | None = None,
        biz_user_id: str | None = None,
        event_hooks: EventHooks | None = None,
        verify_ssl: bool = True,
        max_response_size: int = 16 * 1024 * 1024,
        trust_env: bool = True,
        proxy: str | None = None,
        session: aiohttp.ClientSession | None = None,
        wire: Wire | None = None,
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
        if base_url is None:
            base_url = os.environ.get("AILY_BASE_URL") or FEISHU_HOST
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
        if wire is not None and not isinstance(wire, Wire):
            raise TypeError(f"wire must have send() and close(), got {wire!r}")
        if wire is not None and (session is not None or proxy is not None):
            raise ValueError("session= and proxy= configure the default wire: not with wire=")
        own_wire: AiohttpWire | None = None
        if wire is None:
            wire = own_wire = AiohttpWire(
                timeout=timeout,
                connect_timeout=connect_timeout,
                max_connections=max_connections,
                verify_ssl=verify_ssl,
                max_response_size=max_response_size,
                trust_env=trust_env,
                proxy=proxy,
                session=session,
            )
        self._credentials = Credentials(app_id=app_id, app_secret=app_secret, fixed=fixed)
        self._base = base_url.rstrip("/")
        self._transport = Transport(
            credentials=self._credentials,
            base_url=self._base,
            wire=wire,
            owns_wire=own_wire is not None,
            limits=limiter_set(limiter),
            retry=retry or RetryPolicy(),
            biz_user_id=(
                check_biz_user_id("AilyClient", biz_user_id, max_len=64)
                if biz_user_id is not None
                else None
            ),
            hooks=check_hooks(event_hooks),
        )
        #: Durations of the runs this client saw end (feeds adaptive polling).
        self.durations = DurationStats()
        transport = self._transport
        self.sessions: Sessions = Sessions(transport)
        self.messages: Messages = Messages(transport)
        self.runs: Runs = Runs(
            transport,
            sessions=self.sessions,
            messages=self.messages,
            poll=poll or _poll_policy(poll_interval),
            durations=self.durations,
        )
        self.skills: Skills = Skills(transport)
        self.knowledge: Knowledge = Knowledge(transport)
        self.data_assets: DataAssets = DataAssets(transport)
        self.data_asset_tags: DataAssetTags = DataAssetTags(transport)
        self.app_stats: AppStats = AppStats(transport)
        # Agent chats poll like runs; a stream may stay silent as long as a request may take.
        self.agents: Agents = Agents(transport, poll=self.runs.poll_policy, read_timeout=timeout)
        self.batch: Batch = Batch(self)
        if own_wire is not None:
            # Dropped unclosed (a notebook cell run again): its connections are released
            # when it is collected, so aiohttp has no "Unclosed client session" to report.
            weakref.finalize(self, own_wire.abandon)

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> AilyClient:
        self._transport.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections and end every call and wait under way with
        :class:`AilyClosedError`. Idempotent; a closed client cannot be used again."""
        await self._transport.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._transport.closed

    def __del__(self, _warn: Any = warnings.warn) -> None:
        transport = getattr(self, "_transport", None)
        if transport is not None and transport.state == "open":
            _warn(
                f"unclosed {self!r}: use 'async with AilyClient(...)' or 'await client.close()'",
                ResourceWarning,
                source=self,
                stacklevel=1,
            )

    def __repr__(self) -> str:
        return (
            f"<AilyClient {self._base} {self._transport.state} "
            f"app_id={self._credentials.app_id!r}>"
        )

    # -- configuration and counters -------------------------------------------------------

    @property
    def poll_policy(self) -> PollPolicy:
        """The default polling policy of run handles."""
        return self.runs.poll_policy

    @property
    def stats(self) -> Stats:
        """Counters: requests sent, retries, 429s received, per call."""
        return self._transport.stats

    @property
    def event_hooks(self) -> dict[str, list[Hook]]:
        """The event hooks by kind (a copy): change it and assign it back to replace them,
        as :func:`aily_async.otel.instrument` does."""
        return {kind: list(hooks) for kind, hooks in self._transport.hooks.items()}

    @event_hooks.setter
    def event_hooks(self, hooks: EventHooks) -> None:
        self._transport.set_hooks(check_hooks(hooks))

    @property
    def wire(self) -> Wire:
        """How this client's requests leave."""
        return self._transport.wire

    async def request(
        self,
        call: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        safety: Safety = "idempotent",
        biz_user_id: str | None = None,
    ) -> dict[str, Any]:
        """Send a call this library has no method for, through the same transport (token,
        limiter ``call``, retries by ``safety``, decoding); returns the answer's ``data``.

        ``path`` is below ``/open-apis/aily/v1``, its ids already URL-encoded.
        """
        return await self._transport.request(
            call, method, path, body=body, params=params, safety=safety, biz_user_id=biz_user_id
        )

    def limiter_for(self, call: str) -> RateLimiter | None:
        """The limiter that ``call`` goes through (``None`` when throttling is off)."""
        return self._transport.limiter_for(call)


def _poll_policy(interval: float | None) -> PollPolicy:
    """The default polling: the shared budget, or a schedule from ``poll_interval``."""
    return PollPolicy.shared() if interval is None else PollPolicy(interval=interval)
