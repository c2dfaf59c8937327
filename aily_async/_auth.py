"""Access tokens: a fixed one, or a tenant token fetched, cached and refreshed ahead of expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["TENANT_TOKEN_INVALID", "TOKEN_CALL", "TOKEN_PATH", "Credentials"]

#: Codes meaning "the tenant token is invalid or expired": refresh once and retry.
TENANT_TOKEN_INVALID = frozenset({99991663, 99991665})

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
#: The name token fetches go by in errors, logs and events.
TOKEN_CALL = "auth.token"

Fetch = Callable[[dict[str, str]], Awaitable[dict[str, Any]]]

#: After a failed fetch the next one waits this long, doubling while fetches keep failing, up
#: to ``_MAX_GAP``: however many calls wait, a failing token endpoint sees a few fetches.
_MIN_GAP = 0.1
_MAX_GAP = 5.0


class Credentials:
    """Where the ``Authorization`` header comes from. Never shows a secret in its repr."""

    __slots__ = (
        "_app_id",
        "_app_secret",
        "_expires_at",
        "_fixed",
        "_gap",
        "_next_at",
        "_pending",
        "_token",
        "_waiting",
    )

    def __init__(self, *, app_id: str | None, app_secret: str | None, fixed: str | None) -> None:
        self._app_id = app_id
        self._app_secret = app_secret
        self._fixed = fixed
        self._token: str | None = None
        self._expires_at = 0.0  # loop time after which the token must be refreshed
        self._pending: asyncio.Task[str] | None = None  # the one fetch under way
        self._waiting = 0  # callers awaiting it
        self._next_at = 0.0  # loop time before which no fetch starts (one just failed)
        self._gap = _MIN_GAP  # the wait after the next failure

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
        """A valid token. When one must be fetched, every caller waiting meanwhile shares one
        fetch, and its failure: a caller retries (through its own retry loop) by calling again.
        A fetch after a failed one waits out a gap first (0.1 s, doubling while they fail, at
        most 5 s), shared like the fetch itself.
        """
        token = self.cached()
        if token is not None:
            return token
        pending = self._pending
        if pending is None or pending.done():
            assert self._app_id is not None
            assert self._app_secret is not None
            body = {"app_id": self._app_id, "app_secret": self._app_secret}
            pending = self._pending = asyncio.get_running_loop().create_task(
                self._fetch(fetch, body)
            )
            pending.add_done_callback(_observed)
        # Shielded: a caller that gives up (cancelled, deadline) does not end the others'
        # fetch; the last one to give up ends it, so no fetch outlives every caller.
        self._waiting += 1
        try:
            return await asyncio.shield(pending)
        finally:
            self._waiting -= 1
            if not self._waiting and not pending.done():
                pending.cancel()

    async def _fetch(self, fetch: Fetch, body: dict[str, str]) -> str:
        loop = asyncio.get_running_loop()
        if self._next_at > loop.time():
            await asyncio.sleep(self._next_at - loop.time())
        try:
            answer = await fetch(body)
            token = answer.get("tenant_access_token")
            if not isinstance(token, str) or not token:
                raise ValueError("the token answer has no tenant_access_token")
        except Exception:
            self._next_at = loop.time() + self._gap
            self._gap = min(_MAX_GAP, 2 * self._gap)
            raise
        self._gap = _MIN_GAP
        expire = answer.get("expire")
        if not isinstance(expire, int | float) or isinstance(expire, bool) or expire <= 0:
            expire = 7200
        # Refresh ahead of expiry: 5 minutes early, or a fifth of a short lifetime.
        ahead = min(300.0, expire / 5)
        self._token = token
        self._expires_at = asyncio.get_running_loop().time() + expire - ahead
        return token

    def abort(self) -> None:
        """Cancel a fetch under way (the client is closing)."""
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
        self._pending = None

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


def _observed(task: asyncio.Task[str]) -> None:
    """Mark a fetch's failure as retrieved: its waiters (if any are left) received it."""
    if not task.cancelled():
        task.exception()
