"""The exceptions raised by aily_async.

Every exception this library raises on purpose derives from :class:`AilyError`::

    AilyError
    ├── AilyValidationError (ValueError)      bad input, raised before any request is sent
    ├── AilyClosedError (RuntimeError)         the client was closed (or closed while waiting)
    ├── AilyTransportError                     the HTTP exchange itself failed
    │   ├── AilyConnectionError                  could not connect, or the connection dropped
    │   └── AilyTimeoutError (TimeoutError)      no answer in time
    │       ├── RunWaitTimeout                     RunHandle.wait() deadline (the run goes on)
    │       └── LimiterTimeout                     a limiter could not grant within the timeout
    ├── AilyResponseError                      the answer was not understood (not JSON, wrong
    │                                          shape, too large, an unexpected redirect)
    ├── AilyRateLimiterError                   a shared limiter's backend (Redis) failed
    └── AilyAPIError                           the service answered with a non-zero ``code``
        ├── AilyAuthError                        token missing/invalid/expired, bad credentials
        ├── AilyPermissionError                  missing scope or authorisation, IP, quota used
        ├── AilyRateLimitError                   HTTP 429 / code 99991400 (``retry_after``)
        ├── AilyInvalidParamsError (ValueError)  code 2700001 "param is invalid"
        ├── AilyNotFoundError                    HTTP 404
        └── AilyServerError                      HTTP 5xx

Every message starts with the call that failed (``runs.create: ...``) and API errors end with
the request's log id, which Feishu support asks for. No message ever contains a secret.
"""

from __future__ import annotations

__all__ = [
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
    "LimiterTimeout",
    "RunWaitTimeout",
]


class AilyError(Exception):
    """Root of every error raised by aily_async. ``call`` names the API call (may be empty)."""

    call: str

    def __init__(self, message: str, *, call: str = "") -> None:
        self.call = call
        super().__init__(f"{call}: {message}" if call else message)


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

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_api_error,
            (type(self), self.msg, self.code, self.http_status, self.log_id, self.call),
        )


def _rebuild_api_error(
    cls: type[AilyAPIError], msg: str, code: int | None, status: int, log_id: str | None, call: str
) -> AilyAPIError:
    return cls(msg, code=code, http_status=status, log_id=log_id, call=call)


class AilyAuthError(AilyAPIError):
    """Authentication failed: token missing, invalid or expired, or bad app credentials."""


class AilyPermissionError(AilyAPIError):
    """Authenticated but not allowed: missing scope or user authorisation, IP, monthly quota."""


class AilyRateLimitError(AilyAPIError):
    """The gateway answered 429 / code 99991400. ``retry_after`` is the reset header in seconds."""

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
    ) -> None:
        self.retry_after = retry_after
        super().__init__(
            msg, code=code, http_status=http_status, log_id=log_id, call=call, hint=hint
        )


class AilyInvalidParamsError(AilyAPIError, ValueError):
    """The service rejected the parameters (code 2700001)."""


class AilyNotFoundError(AilyAPIError):
    """The session, run, message or skill does not exist (HTTP 404)."""


class AilyServerError(AilyAPIError):
    """The service failed (HTTP 5xx); retried where safe before this is raised."""
