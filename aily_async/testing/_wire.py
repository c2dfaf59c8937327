"""Wire format of the Aily OpenAPI: routes, envelopes, error codes and request field checks.

Pure helpers with no state: they turn values into what the real service sends (JSON
envelopes, ``X-Tt-Logid`` values, rate-limit headers) and check request fields the way it
does, raising :class:`FakeApiError` with the documented codes.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Mapping
from typing import Any, Literal

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from ._models import AUTH_ROUTE, FakeApiError, RecordedRequest

__all__ = [
    "DEFAULT_MSG",
    "HTML_TYPE",
    "JSON_TYPE",
    "PARAM_INVALID",
    "RATE_LIMITED",
    "ROUTE_TABLE",
    "TENANT_TOKEN_INVALID",
    "TOKEN_MISSING",
    "UNKNOWN_ROUTE",
    "USER_TOKEN_EXPIRED",
    "USER_TOKEN_INVALID",
    "abort",
    "decode_json",
    "error_body",
    "format_reset",
    "invalid",
    "json_response",
    "new_log_id",
    "not_found",
    "object_field",
    "rate_limit_error",
    "recorded_request",
    "str_field",
    "str_list",
]

_API = "/open-apis/aily/v1"
_TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
_AGENT = f"{_API}/agents/{{agent_id}}"

#: Route name of every path the API does not know.
UNKNOWN_ROUTE = "unknown"
JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"

PARAM_INVALID = 2700001
RATE_LIMITED = 99991400
TOKEN_MISSING = 99991661
TENANT_TOKEN_INVALID = 99991663
USER_TOKEN_INVALID = 99991668
USER_TOKEN_EXPIRED = 99991677

#: The ``msg`` the service sends with each error code.
DEFAULT_MSG = {
    PARAM_INVALID: "param is invalid",
    RATE_LIMITED: "request trigger frequency limit",
    TOKEN_MISSING: "Missing access token for authorization",
    TENANT_TOKEN_INVALID: "Invalid access token for authorization",
    99991665: "Invalid access token for authorization",
    USER_TOKEN_INVALID: "Invalid access token for authorization",
    USER_TOKEN_EXPIRED: "Authentication token expired",
    1: "internal error",
}

#: ``(route key, HTTP method, path)`` of every endpoint the fake serves.
ROUTE_TABLE: tuple[tuple[str, str, str], ...] = (
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
    ("knowledge.ask", "POST", f"{_API}/apps/{{app_id}}/knowledges/ask"),
    ("data_assets.create", "POST", f"{_API}/apps/{{app_id}}/data_assets"),
    ("data_assets.list", "GET", f"{_API}/apps/{{app_id}}/data_assets"),
    ("data_assets.upload_file", "POST", f"{_API}/apps/{{app_id}}/data_assets/upload_file"),
    ("data_assets.get", "GET", f"{_API}/apps/{{app_id}}/data_assets/{{data_asset_id}}"),
    ("data_assets.delete", "DELETE", f"{_API}/apps/{{app_id}}/data_assets/{{data_asset_id}}"),
    ("data_asset_tags.list", "GET", f"{_API}/apps/{{app_id}}/data_asset_tags"),
    ("app_stats.list", "GET", f"{_API}/app_stats"),
    ("agents.sessions.create", "POST", f"{_AGENT}/sessions"),
    ("agents.sessions.list", "GET", f"{_AGENT}/sessions"),
    ("agents.sessions.get", "GET", f"{_AGENT}/sessions/{{agent_chat_session_id}}"),
    ("agents.sessions.delete", "DELETE", f"{_AGENT}/sessions/{{agent_chat_session_id}}"),
    ("agents.chats.create", "POST", f"{_AGENT}/chats"),
    ("agents.chats.get", "GET", f"{_AGENT}/chats/{{agent_chat_id}}"),
    ("agents.artifacts.get", "GET", f"{_AGENT}/artifacts/{{agent_artifact_id}}"),
    ("agents.attachments.create", "POST", f"{_AGENT}/attachments"),
    ("agents.check_visibility", "POST", f"{_AGENT}/agent_visibility/check"),
    (AUTH_ROUTE, "POST", _TOKEN_PATH),
)


# --------------------------------------------------------------------------- answers


def json_response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> web.Response:
    """Answer with ``body`` as compact JSON, plus ``headers``."""
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    response = web.Response(body=payload, status=status, headers={"Content-Type": JSON_TYPE})
    if headers:
        response.headers.update(headers)
    return response


def error_body(code: int, msg: str, log_id: str) -> dict[str, Any]:
    """Return the error envelope the service sends with ``code`` and ``msg``."""
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


def abort(request: web.Request) -> web.Response:
    """Close the connection at once; the returned response can never be sent.

    aiohttp then fails to write it, takes that for a client that went away and only logs it
    at debug level.
    """
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=599)


def new_log_id(wall_ms: int, counter: int) -> str:
    """Return an ``X-Tt-Logid`` value: a UTC stamp, a counter and random hex."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(wall_ms / 1000))
    return f"{stamp}{counter:06X}{secrets.token_hex(6).upper()}"


def format_reset(wait: float, precision: Literal["int", "float"]) -> str:
    """Write ``wait`` seconds as ``x-ogw-ratelimit-reset``: rounded up, at least one unit."""
    # Round away float noise (60.000000001 s is 60 s) before rounding up.
    if precision == "float":
        millis = max(1, math.ceil(round(wait * 1000, 6)))
        return f"{millis / 1000:.3f}".rstrip("0").rstrip(".")
    return str(max(1, math.ceil(round(wait, 6))))


def rate_limit_error(limit: int, wait: float, precision: Literal["int", "float"]) -> FakeApiError:
    """Return the HTTP 429 error of a call over a ``limit``, free again in ``wait`` seconds.

    ``precision`` tells how ``x-ogw-ratelimit-reset`` is written: whole seconds rounded up,
    or up to milliseconds (never below one unit).
    """
    return FakeApiError(
        RATE_LIMITED,
        DEFAULT_MSG[RATE_LIMITED],
        http_status=429,
        headers={
            "x-ogw-ratelimit-limit": str(limit),
            "x-ogw-ratelimit-reset": format_reset(wait, precision),
        },
    )


# --------------------------------------------------------------------------- requests


def decode_json(raw: bytes) -> tuple[Any, bool]:
    """Return ``(value, well_formed)``; an empty body is ``None`` and well formed."""
    if not raw.strip():
        return None, True
    try:
        return json.loads(raw), True
    except ValueError:
        return None, False


def _redact_headers(headers: CIMultiDictProxy[str]) -> CIMultiDictProxy[str]:
    copy = CIMultiDict(headers)
    auth = copy.get("Authorization")
    if auth is not None:
        scheme, _, token = auth.strip().partition(" ")
        token = token.strip()
        copy["Authorization"] = f"{scheme} {token[:2]}<redacted>" if token else scheme
    return CIMultiDictProxy(copy)


def recorded_request(
    request: web.Request,
    route: str,
    arrived: float,
    log_id: str,
    parsed: Any,
    status: int | None,
    fault: str | None,
) -> RecordedRequest:
    """Record ``request`` for the log, with its token and any ``app_secret`` redacted."""
    if route == AUTH_ROUTE and isinstance(parsed, dict) and "app_secret" in parsed:
        parsed = {**parsed, "app_secret": "<redacted>"}
    return RecordedRequest(
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


# --------------------------------------------------------------------------- field checks


def invalid(field: str, rule: str) -> FakeApiError:
    """Return the HTTP 400 error for a ``field`` that breaks ``rule``."""
    return FakeApiError(PARAM_INVALID, f"param is invalid: {field}: {rule}", http_status=400)


def not_found(field: str, what: str) -> FakeApiError:
    """Return the HTTP 404 error for a well-formed ``field`` naming nothing (``what``)."""
    return FakeApiError(
        PARAM_INVALID, f"param is invalid: {field}: {what} not found", http_status=404
    )


def str_field(
    body: Mapping[str, Any],
    name: str,
    *,
    label: str | None = None,
    required: bool = False,
    max_len: int | None = None,
    json_string: bool = False,
) -> str | None:
    """Read an optional string field (``None`` if absent), checking its length and JSON."""
    label = label or name
    value = body.get(name)
    if value is None or (required and value == ""):
        if required:
            raise invalid(label, "is required")
        return None
    if not isinstance(value, str):
        raise invalid(label, "must be a string")
    if max_len is not None and len(value) > max_len:
        raise invalid(label, f"length must be <= {max_len}")
    if json_string and value:
        try:
            json.loads(value)
        except ValueError:
            raise invalid(label, "must be a JSON string") from None
    return value


def str_list(body: Mapping[str, Any], name: str, *, label: str, max_items: int) -> list[str]:
    """Read an optional list of strings (``[]`` if absent) of at most ``max_items``."""
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid(label, "must be a list of strings")
    if len(value) > max_items:
        raise invalid(label, f"must hold at most {max_items} items")
    return list(value)


def object_field(body: Mapping[str, Any], name: str, *, label: str) -> dict[str, Any]:
    """Read an optional JSON object field (``{}`` if absent)."""
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(label, "must be an object")
    return value
