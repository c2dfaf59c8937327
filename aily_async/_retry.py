"""Retrying: the policy, the rules of what may be sent again, and the one retry loop.

Whether a failed attempt may be sent again depends on the call's *safety*:

* ``"idempotent"`` (reads, ``messages.create`` with its kept ``idempotent_id``, cancel,
  delete): retried after connection errors, timeouts and 5xx answers.
* ``"unsafe"`` (create run, start skill, session create and update): retried only when the
  request certainly did not take effect: it never left (the connection was never made, the
  token could not be had, see :class:`NotSent`) or the gateway rejected its token. After a
  failure that may have landed (sent, then a drop, a timeout or a 5xx), a call that can look
  for its own effect (``recover``, e.g. ``runs.create`` listing the session's runs) looks
  first: the effect found is the call's result; none found, it is sent again.

``max_attempts`` bounds the *failed* attempts, the recovery look-ups included. A 429 is not a
failed attempt but a wait for the quota: the call waits the announced reset (1 s when none is
announced; at most ``max_reset_wait``) and tries again, for as long as its deadline and
``max_quota_wait`` allow (the waits for quota added up, each counted as at least 1 s).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import attrs
import backoff

from ._auth import TENANT_TOKEN_INVALID
from ._errors import (
    AilyAuthError,
    AilyConnectionError,
    AilyError,
    AilyInvalidParamsError,
    AilyNotFoundError,
    AilyRateLimitError,
    AilyServerError,
    AilyTimeoutError,
)

__all__ = ["NotSent", "RetryPolicy", "Safety", "call_with_retries", "may_have_landed", "not_sent"]

logger = logging.getLogger("aily_async")

Safety = Literal["idempotent", "unsafe"]
T = TypeVar("T")


@attrs.frozen
class RetryPolicy:
    """How often and how patiently failed requests are retried.

    ``max_attempts`` counts the failed attempts a call may make (the first included). Waits
    between them grow as ``base_delay * 2**n`` with full jitter, capped at ``max_delay``. A 429
    waits the server's reset header, at most ``max_reset_wait`` at a time and
    ``max_quota_wait`` in all. ``RetryPolicy.no_wait()`` keeps the attempts but drops the waits
    (for tests).
    """

    max_attempts: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    base_delay: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    max_delay: float = attrs.field(default=8.0, validator=attrs.validators.ge(0))
    max_reset_wait: float = attrs.field(default=60.0, validator=attrs.validators.ge(0))
    max_quota_wait: float = attrs.field(default=120.0, validator=attrs.validators.ge(0))

    @classmethod
    def no_wait(cls, max_attempts: int = 4) -> RetryPolicy:
        """A policy with the usual attempts and no waiting between them."""
        return cls(max_attempts=max_attempts, base_delay=0.0, max_delay=0.0, max_reset_wait=0.0)

    def delay(self, attempt: int) -> float:
        """The jittered wait before retry number ``attempt`` (0-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return backoff.full_jitter(ceiling) if ceiling > 0 else 0.0


class NotSent(Exception):
    """Raised by an attempt that failed before its request left (the token could not be had):
    ``error`` is what failed; the call may be tried again whatever its safety."""

    def __init__(self, error: AilyError) -> None:
        super().__init__(str(error))
        self.error = error


def not_sent(exc: BaseException) -> bool:
    """True when the failed attempt certainly had no effect: no connection was made, or the
    gateway rejected the token."""
    if isinstance(exc, AilyConnectionError) and not exc.sent:
        return True
    return isinstance(exc, AilyAuthError) and exc.code in TENANT_TOKEN_INVALID


def may_have_landed(exc: BaseException) -> bool:
    """True when a request was sent and failed in a way that leaves its effect unknown."""
    if not_sent(exc):
        return False
    if isinstance(exc, AilyConnectionError):
        return exc.sent
    return isinstance(exc, AilyTimeoutError | AilyServerError)


def _retryable(exc: AilyError, safety: Safety) -> bool:
    if not_sent(exc):
        return True
    return safety == "idempotent" and may_have_landed(exc)


#: One attempt of the call.
Attempt = Callable[[], Awaitable[T]]
#: Looks for the effect of a write that may have landed; ``None`` when there is none.
Recover = Callable[[], Awaitable[T | None]]
#: Waits ``seconds`` for the quota after a 429 (the client pauses its limiter, or sleeps).
QuotaWait = Callable[[AilyRateLimitError, float], Awaitable[None]]
#: Told of each retry: the call, the failed attempt's number, the wait, the error.
RetryHook = Callable[[str, int, float, AilyError], Awaitable[None]]


async def call_with_retries(
    attempt: Attempt[T],
    *,
    call: str,
    safety: Safety,
    policy: RetryPolicy,
    quota_wait: QuotaWait,
    on_retry: RetryHook,
    recover: Recover[T] | None = None,
    gone: Callable[[], T] | None = None,
    deadline: float | None = None,
    refreshable: bool = True,
) -> T:
    """Run ``attempt`` until it succeeds or the rules (module docstring) say stop.

    ``gone`` gives the result when an attempt answered "not found" after an earlier one may
    have landed (a delete that did its work before its answer was lost). ``deadline`` (loop
    time) bounds every wait; ``refreshable=False`` says a rejected token cannot be replaced (a
    fixed token), so a call it failed is not tried again.
    """
    loop = asyncio.get_running_loop()
    failures = 0
    quota_waited = 0.0
    uncertain = False  # an earlier attempt may have landed
    refreshed = False  # the token was replaced once already
    while True:
        try:
            return await attempt()
        except AilyRateLimitError as exc:
            announced = 1.0 if exc.retry_after is None else exc.retry_after
            wait = min(policy.max_reset_wait, announced)
            # Counted as at least 1 s, so the cap bounds a storm of 429s even where the waits
            # are nil (a reset of 0, RetryPolicy.no_wait()).
            quota_waited += max(1.0, wait)
            if quota_waited > policy.max_quota_wait or (
                deadline is not None and loop.time() + wait > deadline
            ):
                raise
            await quota_wait(exc, wait)
            continue
        except NotSent as exc:
            error = exc.error
            unsent = True
        except AilyError as exc:
            error = exc
            unsent = False
        if gone is not None and uncertain and isinstance(error, AilyNotFoundError):
            return gone()
        failures += 1
        landed = may_have_landed(error)
        uncertain = uncertain or landed
        if recover is not None and (
            landed or (uncertain and isinstance(error, AilyInvalidParamsError))
        ):
            # The write may have taken effect, or a retry was refused because it did (a run is
            # already going): look for it before anything is sent again.
            found = await recover()
            if found is not None:
                return found
            retryable = landed
        elif isinstance(error, AilyAuthError):
            # A rejected token is replaced once per call: a second rejection is not a stale
            # token but a real problem.
            retryable = refreshable and not refreshed and not_sent(error)
            refreshed = True
        else:
            retryable = unsent or _retryable(error, safety)
        if not retryable or failures >= policy.max_attempts:
            raise error
        # A rejected token was replaced already: no reason to wait.
        wait = 0.0 if isinstance(error, AilyAuthError) else policy.delay(failures - 1)
        if deadline is not None and loop.time() + wait > deadline:
            raise error
        await on_retry(call, failures, wait, error)
        if wait > 0:
            await asyncio.sleep(wait)
