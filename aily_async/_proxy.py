"""Which HTTP proxy a request goes through: the client's ``proxy=``, else the environment.

``trust_env`` reads ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` (and a proxy's credentials from
``~/.netrc``) with aiohttp's own reader, :func:`aiohttp.helpers.get_env_proxy_for_url`, so the
rules are aiohttp's. The choice is made once per origin (a client talks to one host), not per
request, and the session itself keeps ``trust_env`` off: a ``~/.netrc`` entry for the API host
(or a ``default`` one) must not add a second ``Authorization`` to the token's.

The one look-up (the environment, and ``~/.netrc`` when a proxy is named) is made on the loop,
at the first request to a host: quick, and without the thread hop aiohttp makes per request.
"""

from __future__ import annotations

from typing import Any

from aiohttp import BasicAuth
from aiohttp.helpers import get_env_proxy_for_url, strip_auth_from_url
from yarl import URL

__all__ = ["ProxyChoice", "check_proxy"]


def check_proxy(proxy: str | URL | None) -> tuple[URL, BasicAuth | None] | None:
    """``proxy=`` as a URL without credentials and the credentials it held (``None``: none
    given); raise ``ValueError`` if it is not an http(s) URL with a host."""
    if proxy is None:
        return None
    url = URL(proxy)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"proxy must be an http(s) URL such as http://proxy:3128, got {proxy!r}")
    return strip_auth_from_url(url)


class ProxyChoice:
    """The per-request proxy arguments of an aiohttp request, decided once per origin."""

    __slots__ = ("_base", "_chosen", "_fixed", "_trust_env")

    def __init__(
        self,
        proxy: tuple[URL, BasicAuth | None] | None,
        *,
        trust_env: bool,
        base: dict[str, Any],
    ) -> None:
        self._fixed = proxy
        self._trust_env = trust_env
        self._base = base  # the other per-request arguments, merged in once
        self._chosen: dict[tuple[str, str | None, int | None], dict[str, Any]] = {}

    @property
    def active(self) -> bool:
        """False when no request can go through a proxy (no ``proxy=``, environment ignored)."""
        return self._fixed is not None or self._trust_env

    def options(self, url: URL) -> dict[str, Any]:
        """The request arguments for ``url``: ``proxy``/``proxy_auth`` when a proxy applies."""
        key = (url.scheme, url.raw_host, url.port)
        found = self._chosen.get(key)
        if found is not None:
            return found
        chosen: tuple[URL, BasicAuth | None] | None = self._fixed
        if chosen is None and self._trust_env:
            try:  # reads ~/.netrc too, for the proxy's credentials (once per origin)
                chosen = get_env_proxy_for_url(url)
            except LookupError:  # NO_PROXY names the host, or no proxy for the scheme
                chosen = None
        options = dict(self._base)
        if chosen is not None:
            options["proxy"], options["proxy_auth"] = chosen
        self._chosen[key] = options
        return options

    def describe(self) -> str:
        """``proxy=URL``, ``proxy from the environment`` or ``no proxy`` (no credentials)."""
        if self._fixed is not None:
            return f"proxy={self._fixed[0]}"
        return "proxy from the environment" if self._trust_env else "no proxy"
