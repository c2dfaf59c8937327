"""Access tokens: a fixed one, or a tenant token fetched, cached and refreshed ahead of expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["TENANT_TOKEN_INVALID", "Credentials"]

#: Codes meaning "the tenant token is invalid or expired": refresh once and retry.
TENANT_TOKEN_INVALID = frozenset({99991663, 99991665})

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"

Fetch = Callable[[dict[str, str]], Awaitable[dict[str, Any]]]


class Credentials:
    """Where the ``Authorization`` header comes from. Never shows a secret in its repr."""

    __slots__ = ("_app_id", "_app_secret", "_expires_at", "_fixed", "_lock", "_token")

    def __init__(self, *, app_id: str | None, app_secret: str | None, fixed: str | None) -> None:
        self._app_id = app_id
        self._app_secret = app_secret
        self._fixed = fixed
        self._token: str | None = None
        self._expires_at = 0.0  # loop time after which the token must be refreshed
        self._lock: asyncio.Lock | None = None

    @property
    def app_id(self) -> str | None:
        """The Feishu app id (``cli_…``), when app credentials are used."""
        return self._app_id

    @property
    def refreshable(self) -> bool:
        """True when a new token can be fetched (app credentials rather than a fixed token)."""
        return self._fixed is None

    def cached(self) -> str | None:
        """The token if one is at hand and not due for refresh (no I/O), else ``None``."""
        if self._fixed is not None:
            return self._fixed
        if self._token is not None and asyncio.get_running_loop().time() < self._expires_at:
            return self._token
        return None

    async def token(self, fetch: Fetch) -> str:
        """A valid token, fetching one (once, however many callers wait) when needed."""
        token = self.cached()
        if token is not None:
            return token
        loop = asyncio.get_running_loop()
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            # Whoever held the lock before us may have fetched it already.
            if self._token is not None and loop.time() < self._expires_at:
                return self._token
            assert self._app_id is not None
            assert self._app_secret is not None
            answer = await fetch({"app_id": self._app_id, "app_secret": self._app_secret})
            token = answer.get("tenant_access_token")
            expire = answer.get("expire")
            if not isinstance(token, str) or not token:
                raise ValueError("the token answer has no tenant_access_token")
            if not isinstance(expire, int | float) or isinstance(expire, bool) or expire <= 0:
                expire = 7200
            # Refresh ahead of expiry: 5 minutes early, or a fifth of a short lifetime.
            ahead = min(300.0, expire / 5)
            self._token = token
            self._expires_at = loop.time() + expire - ahead
            return token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (the service said it is invalid) so the next call fetches anew."""
        if self._token == token:
            self._token = None
            self._expires_at = 0.0

    def __repr__(self) -> str:
        if self._fixed is not None:
            return "Credentials(fixed token=***)"
        state = "cached" if self._token else "none yet"
        return f"Credentials(app_id={self._app_id!r}, app_secret=***, token={state})"
