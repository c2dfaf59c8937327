"""The exceptions raised by aily_async.

Every exception this library raises on purpose derives from :class:`AilyError`::

    AilyError
    ├── AilyValidationError (ValueError)      bad input, raised before any request is sent
    ├── AilyClosedError (RuntimeError)         the client was closed (or closed while waiting)
    ├── AilyTransportError                     the HTTP exchange itself failed
    │   ├── AilyConnectionError                  could not connect, or the connection dropped
    │   └── AilyTimeoutError (TimeoutError)      no answer in time
    │       ├── RunWaitTimeout                     RunHandle.wait() deadline (the run goes on)
    │       ├── DeadlineExceeded                   a call's ``timeout=`` passed, or the limiter
    │       │                                      cannot grant before it (failed at once)
    │       ├── AgentChatWaitTimeout               an agent chat's wait deadline or max_wait
    │       └── LimiterTimeout                     a limiter could not grant within the timeout
    ├── AilyResponseError                      the answer was not understood (not JSON, wrong
    │                                          shape, too large, an unexpected redirect)
    ├── AilyRateLimiterError                   a shared limiter's backend (Redis) failed
    ├── CheckpointError (RuntimeError)         a batch checkpoint file cannot be used
    ├── RunFailedError                         a batch's run ended other than COMPLETED
    └── AilyAPIError                           the service answered with a non-zero ``code``
        ├── AilyAuthError                        token missing/invalid/expired, bad credentials
        ├── AilyPermissionError                  missing scope or authorisation, IP, quota used
        ├── AilyRateLimitError                   HTTP 429 / code 99991400 (``retry_after``)
        ├── AilyInvalidParamsError (ValueError)  code 2700001 "param is invalid"
        ├── AilyNotFoundError                    HTTP 404
        └── AilyServerError                      HTTP 5xx

Every message starts with the call that failed (``runs.create: ...``) and API errors end with
the request's log id, which Feishu support asks for. No message ever contains a secret.
:func:`api_error` maps an answer (HTTP status, Aily code) to its class, with a hint per code.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models import RunResult

__all__ = [
    "AgentChatWaitTimeout",
    "AilyAPIError",
    "AilyAuthError",
    "AilyClosedError",
    "AilyConnectionError",
    "AilyError",
    "AilyInvalidParamsError",
    "AilyNotFoundError",
    "AilyPermissionError",
    "AilyRateLimitError",
    "AilyRateLimiterError",
    "AilyResponseError",
    "AilyServerError",
    "AilyTimeoutError",
    "AilyTransportError",
    "AilyValidationError",
    "CheckpointError",
    "DeadlineExceeded",
    "LimiterTimeout",
    "RunFailedError",
    "RunWaitTimeout",
    "api_error",
]


class AilyError(Exception):
    """Root of every error raised by aily_async. ``call`` names the API call (may be empty)."""

    call: str

    def __init__(self, message: str, *, call: str = "") -> None:
        self.call = call
        super().__init__(f"{call}: {message}" if call else message)

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from the message and attributes, not by calling __init__ again (whose
        # arguments differ from class to class): every error pickles, e.g. across processes.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[AilyError], args: tuple[object, ...], state: dict[str, Any]) -> AilyError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class AilyValidationError(AilyError, ValueError):
    """An argument broke one of the API's documented rules; nothing was sent.

    ``field`` names the argument and ``rule`` the rule it broke.
    """

    def __init__(self, field: str, rule: str, *, call: str = "", got: str = "") -> None:
        self.field = field
        self.rule = rule
        detail = f" (got {got})" if got else ""
        super().__init__(f"{field} {rule}{detail}", call=call)


class AilyClosedError(AilyError, RuntimeError):
    """The client is closed: it cannot be used again, and pending waits end with this."""


class AilyTransportError(AilyError):
    """The HTTP exchange failed before an answer arrived."""


class AilyConnectionError(AilyTransportError):
    """Connecting failed or the connection dropped; ``sent`` tells whether the request left."""

    def __init__(self, message: str, *, call: str = "", sent: bool = True) -> None:
        self.sent = sent
        super().__init__(message, call=call)


class AilyTimeoutError(AilyTransportError, TimeoutError):
    """Something did not finish in time (a request, a wait, a limiter grant)."""


class RunWaitTimeout(AilyTimeoutError):
    """``RunHandle.wait(timeout=...)`` passed its deadline; the run goes on server-side.

    ``run`` is the last state seen. Waiting on the handle again resumes.
    """

    def __init__(self, message: str, *, call: str = "", run: object = None) -> None:
        self.run = run
        super().__init__(message, call=call)


class AgentChatWaitTimeout(AilyTimeoutError):
    """Waiting on an :class:`AgentChatHandle` passed its deadline (the wait's ``timeout`` or
    the handle's ``max_wait``); the chat goes on server-side.

    ``chat`` is the last state seen.
    """

    def __init__(self, message: str, *, call: str = "", chat: object = None) -> None:
        self.chat = chat
        super().__init__(message, call=call)


class DeadlineExceeded(AilyTimeoutError):
    """A call's ``timeout=`` bounds everything it does (queueing for the quota, the token,
    every attempt and every wait between them). Raised when it passed, or at once when the rate
    limiter's schedule shows that no grant can come before it (nothing was sent then)."""


class LimiterTimeout(AilyTimeoutError):
    """``acquire(timeout=...)`` could not be granted in time; nothing was consumed."""


class AilyResponseError(AilyError):
    """The answer could not be understood: not JSON, the wrong shape, too large, a redirect.

    ``http_status`` and ``log_id`` are set when known.
    """

    def __init__(
        self,
        message: str,
        *,
        call: str = "",
        http_status: int | None = None,
        log_id: str | None = None,
    ) -> None:
        self.http_status = http_status
        self.log_id = log_id
        suffix = f" [http {http_status}]" if http_status is not None else ""
        suffix += f" [log_id {log_id}]" if log_id else ""
        super().__init__(message + suffix, call=call)


class AilyRateLimiterError(AilyError):
    """A shared rate limiter's backend (e.g. Redis) failed and the limiter fails closed."""


class AilyAPIError(AilyError):
    """The service answered with a non-zero ``code``.

    Attributes: ``code`` (the body's code, or ``None`` when the body had none), ``msg`` (the
    body's message), ``http_status``, ``log_id`` (the ``X-Tt-Logid`` header, quote it to support).
    """

    def __init__(
        self,
        msg: str,
        *,
        code: int | None,
        http_status: int,
        log_id: str | None = None,
        call: str = "",
        hint: str = "",
    ) -> None:
        self.code = code
        self.msg = msg
        self.http_status = http_status
        self.log_id = log_id
        parts = [msg or "(no message)"]
        if hint:
            parts.append(f"- {hint}")
        parts.append(
            f"[code {code}, http {http_status}" + (f", log_id {log_id}]" if log_id else "]")
        )
        super().__init__(" ".join(parts), call=call)


class AilyAuthError(AilyAPIError):
    """Authentication failed: token missing, invalid or expired, or bad app credentials."""


class AilyPermissionError(AilyAPIError):
    """Authenticated but not allowed: missing scope or user authorisation, IP, monthly quota."""


class AilyRateLimitError(AilyAPIError):
    """The gateway answered 429 / code 99991400. ``retry_after`` is the reset header in seconds,
    ``limit`` the ``x-ogw-ratelimit-limit`` header (the quota that was full), each ``None`` when
    the answer did not say."""

    def __init__(
        self,
        msg: str,
        *,
        code: int | None,
        http_status: int,
        log_id: str | None = None,
        call: str = "",
        hint: str = "",
        retry_after: float | None = None,
        limit: int | None = None,
    ) -> None:
        self.retry_after = retry_after
        self.limit = limit
        super().__init__(
            msg, code=code, http_status=http_status, log_id=log_id, call=call, hint=hint
        )


class AilyInvalidParamsError(AilyAPIError, ValueError):
    """The service rejected the parameters (code 2700001)."""


class AilyNotFoundError(AilyAPIError):
    """The session, run, message or skill does not exist (HTTP 404)."""


class AilyServerError(AilyAPIError):
    """The service failed (HTTP 5xx); retried where safe before this is raised."""


class CheckpointError(AilyError, RuntimeError):
    """The checkpoint file cannot be used: locked by another batch, unreadable, or it holds a
    different input under an item's key."""


class RunFailedError(AilyError):
    """A run of a batch ended in a state other than ``COMPLETED`` (``FAILED``, ``EXPIRED``…).

    ``result`` is the :class:`RunResult` (the final ``run`` and any answer messages).
    """

    def __init__(self, result: RunResult) -> None:
        self.result = result
        run = result.run
        detail = ""
        if run.error is not None and (run.error.code or run.error.message):
            detail = f": {run.error.code or ''} {run.error.message or ''}".rstrip()
        super().__init__(f"run {run.id} ended {run.status.value}{detail}", call="batch.runs")


# -- from an answer to its error ------------------------------------------------------------

#: Codes of authentication failures (token missing, invalid or expired; bad app credentials).
AUTH_CODES = frozenset({99991661, 99991663, 99991665, 99991668, 99991677, 10003, 10014})
#: Codes of permission failures (scope, user authorisation, IP allow-list, monthly quota).
PERMISSION_CODES = frozenset({99991672, 99991679, 99991401, 99991403})
#: The gateway's "rate limited" code (sent with HTTP 429).
RATE_LIMITED_CODE = 99991400
#: The service's "param is invalid" code.
INVALID_PARAMS_CODE = 2700001

HINTS = {
    99991661: "no access token was sent",
    99991663: "the tenant access token is invalid",
    99991665: "the tenant access token has expired",
    99991668: "the user access token is invalid; the caller must refresh it",
    99991677: "the user access token has expired; the caller must refresh it",
    99991672: "the app lacks the API scope (e.g. aily:run:write); add it in the developer console",
    99991679: "the user has not authorised the app for this scope",
    99991401: "the caller's IP is not in the app's allow-list",
    99991403: "the app's monthly API quota is used up",
    RATE_LIMITED_CODE: "rate limited",
    INVALID_PARAMS_CODE: "the service rejected a parameter",
    10014: "the app secret is wrong",
    10003: "the app id is unknown",
}


def api_error(
    call: str,
    status: int,
    code: int | None,
    msg: str,
    log_id: str | None,
    reset: str | None,
    limit: str | None = None,
) -> AilyAPIError:
    """The error for an answer with HTTP ``status`` and Aily ``code``; ``reset`` and ``limit``
    are the ``x-ogw-ratelimit-reset`` (seconds) and ``x-ogw-ratelimit-limit`` headers, read
    into ``retry_after`` and ``limit`` of a 429."""
    hint = HINTS.get(code, "") if code is not None else ""
    kwargs: dict[str, Any] = {
        "code": code,
        "http_status": status,
        "log_id": log_id,
        "call": call,
        "hint": hint,
    }
    if status == 429 or code == RATE_LIMITED_CODE:
        return AilyRateLimitError(msg, retry_after=_seconds(reset), limit=_count(limit), **kwargs)
    if code in AUTH_CODES:
        return AilyAuthError(msg, **kwargs)
    if code in PERMISSION_CODES:
        return AilyPermissionError(msg, **kwargs)
    if status == 404:
        return AilyNotFoundError(msg, **kwargs)
    if status >= 500:
        return AilyServerError(msg, **kwargs)
    if code == INVALID_PARAMS_CODE:
        return AilyInvalidParamsError(msg, **kwargs)
    return AilyAPIError(msg, **kwargs)


def _count(header: str | None) -> int | None:
    """A positive whole number from a header, or ``None``."""
    if not header or len(header) > 12:
        return None
    try:
        value = int(header.strip())
    except ValueError:
        return None
    return value if value > 0 else None


def _seconds(header: str | None) -> float | None:
    if not header:
        return None
    try:
        value = max(0.0, float(header))
    except ValueError:
        return None
    return value if math.isfinite(value) else None
