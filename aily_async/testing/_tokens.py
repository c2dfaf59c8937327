"""Access tokens: the tenant token endpoint, user tokens, and checking ``Authorization``.

Tenant tokens (``"t-…"``) come from the token endpoint or :meth:`TokenStore.issue`; user
tokens (``"u-…"``) only from :meth:`TokenStore.issue`. Both expire on the fake's clock.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._models import FakeApiError
from ._wire import (
    DEFAULT_MSG,
    TENANT_TOKEN_INVALID,
    TOKEN_MISSING,
    USER_TOKEN_EXPIRED,
    USER_TOKEN_INVALID,
)

__all__ = ["Token", "TokenStore"]


@attrs.define
class Token:
    """What a token stands for: the app, the principal (app or user id) and its expiry."""

    app_id: str
    principal: str
    expires: float


class TokenStore:
    """Issues and checks the tokens of one fake.

    Args:
        credentials: ``{app_id: app_secret}`` the token endpoint accepts; ``None``: any pair.
        ttl: Seconds a tenant token from the token endpoint lives.
        invalid_token_status: HTTP status of answers to invalid or expired tokens.
        now: The fake's clock.
    """

    def __init__(
        self,
        *,
        credentials: Mapping[str, str] | None,
        ttl: float,
        invalid_token_status: int,
        now: Callable[[], float],
    ) -> None:
        self._credentials = dict(credentials) if credentials is not None else None
        self.ttl = ttl
        self._invalid_token_status = invalid_token_status
        self._now = now
        #: Tenant tokens ever issued, by token.
        self.tenant: dict[str, Token] = {}
        #: User tokens ever issued, by token.
        self.user: dict[str, Token] = {}

    def issue(self, *, user: bool, app_id: str, principal: str, ttl: float) -> str:
        """Issue a tenant (or, with ``user``, user) token living ``ttl`` seconds from now."""
        store, prefix = (self.user, "u-") if user else (self.tenant, "t-")
        token = prefix + secrets.token_hex(16)
        store[token] = Token(app_id=app_id, principal=principal, expires=self._now() + ttl)
        return token

    def expire(self, *, user: bool = False) -> None:
        """Make every tenant token issued so far invalid (and user tokens too with ``user``)."""
        stores = [self.tenant, self.user] if user else [self.tenant]
        for store in stores:
            for token in store.values():
                token.expires = -math.inf

    def grant(self, parsed: Any, well_formed: bool) -> dict[str, Any]:
        """Answer the token endpoint for the decoded request body ``parsed``."""
        body = parsed if well_formed and isinstance(parsed, dict) else {}
        app_id, secret = body.get("app_id"), body.get("app_secret")
        if not (isinstance(app_id, str) and app_id and isinstance(secret, str) and secret):
            raise FakeApiError(10003, "invalid param", http_status=400)
        if self._credentials is not None:
            if app_id not in self._credentials:
                raise FakeApiError(10003, "invalid param: app_id not found", http_status=400)
            if not secrets.compare_digest(self._credentials[app_id], secret):
                raise FakeApiError(10014, "app secret invalid", http_status=400)
        token = self.issue(user=False, app_id=app_id, principal=app_id, ttl=self.ttl)
        return {
            "code": 0,
            "msg": "ok",
            "tenant_access_token": token,
            "expire": math.ceil(self.ttl),
        }

    def authenticate(self, header: str, now: float) -> Token:
        """Return the token an ``Authorization`` header carries, or raise the API's error."""
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise FakeApiError(TOKEN_MISSING, DEFAULT_MSG[TOKEN_MISSING], http_status=400)
        status = self._invalid_token_status
        if token.startswith("u-"):
            record = self.user.get(token)
            if record is None:
                code = USER_TOKEN_INVALID
                raise FakeApiError(code, DEFAULT_MSG[code], http_status=status)
            if now >= record.expires:
                code = USER_TOKEN_EXPIRED
                raise FakeApiError(code, DEFAULT_MSG[code], http_status=status)
        else:
            record = self.tenant.get(token)
            if record is None or now >= record.expires:
                code = TENANT_TOKEN_INVALID
                raise FakeApiError(code, DEFAULT_MSG[code], http_status=status)
        return record
