"""The retry policy: what is retried, how long to wait, and the one place ``backoff`` is used.

Whether an error may be retried depends on the call's *safety*:

* ``"idempotent"`` (reads, ``messages.create`` with its kept ``idempotent_id``, cancel): retried on
  connection errors, timeouts, 5xx and 429.
* ``"unsafe"`` (create run, start skill, session writes): retried only when the request certainly
  did not take effect: the connection was never made, or the gateway answered 429.

A 429 waits the server's ``x-ogw-ratelimit-reset`` (capped by ``max_reset_wait``); when a limiter
is in use it has already been paused for that long, so the retry just queues behind it.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Literal, TypeVar

import attrs
import backoff

from ._errors import (
    AilyConnectionError,
    AilyError,
    AilyRateLimitError,
    AilyServerError,
    AilyTimeoutError,
)

__all__ = ["Retrier", "RetryPolicy"]

Safety = Literal["idempotent", "unsafe"]
T = TypeVar("T")


@attrs.frozen
class RetryPolicy:
    """How often and how patiently failed requests are retried.

    ``max_attempts`` counts the first try. Waits grow as ``base_delay * 2**n`` with full jitter,
    capped at ``max_delay``. ``RetryPolicy.no_wait()`` keeps the attempts but drops the waits
    (for tests).
    """

    max_attempts: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    base_delay: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    max_delay: float = attrs.field(default=8.0, validator=attrs.validators.ge(0))
    max_reset_wait: float = attrs.field(default=60.0, validator=attrs.validators.ge(0))

    @classmethod
    def no_wait(cls, max_attempts: int = 4) -> RetryPolicy:
        """A policy with the usual attempts and no waiting between them."""
        return cls(max_attempts=max_attempts, base_delay=0.0, max_delay=0.0, max_reset_wait=0.0)

    def delay(self, attempt: int) -> float:
        """The jittered wait before retry number ``attempt`` (0-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return random.uniform(0, ceiling) if ceiling > 0 else 0.0


def is_retryable(exc: BaseException, safety: Safety) -> bool:
    """Whether ``exc`` may be retried for a call of the given safety."""
    if isinstance(exc, AilyRateLimitError):
        return True
    if isinstance(exc, AilyConnectionError) and not exc.sent:
        return True
    if safety == "idempotent":
        return isinstance(exc, AilyConnectionError | AilyTimeoutError | AilyServerError)
    return False


def _waits(policy: RetryPolicy, limited: bool) -> Generator[float, BaseException | None, None]:
    attempt = 0
    exc = yield 0.0  # primed by backoff with send(None)
    while True:
        if isinstance(exc, AilyRateLimitError):
            # With a limiter, it already paused for the reset: queue behind it at once.
            wait = 0.0 if limited else min(exc.retry_after or 1.0, policy.max_reset_wait)
        else:
            wait = policy.delay(attempt)
        attempt += 1
        exc = yield wait


RetryHook = Callable[[str, int, float, BaseException], Awaitable[None]]


class Retrier:
    """Runs attempts under a :class:`RetryPolicy`; the ``backoff`` wrappers are built once."""

    __slots__ = ("_on_retry", "_policy", "_wrapped")

    def __init__(self, policy: RetryPolicy, on_retry: RetryHook | None = None) -> None:
        self._policy = policy
        self._on_retry = on_retry
        self._wrapped: dict[tuple[Safety, bool], Callable[..., Awaitable[Any]]] = {}

    @property
    def policy(self) -> RetryPolicy:
        """The policy in force."""
        return self._policy

    async def run(
        self, fn: Callable[[], Awaitable[T]], call: str, safety: Safety, limited: bool
    ) -> T:
        """Call ``fn`` until it succeeds, a non-retryable error comes, or attempts run out."""
        # The first attempt runs bare: a call that succeeds (nearly all) never pays for
        # backoff's bookkeeping, and a caller queued inside it keeps a shallow stack.
        try:
            return await fn()
        except AilyError as exc:
            if self._policy.max_attempts == 1 or not is_retryable(exc, safety):
                raise
            first_failure = [exc]
        wrapped = self._wrapped.get((safety, limited))
        if wrapped is None:
            wrapped = self._wrapped[(safety, limited)] = self._build(safety, limited)
        result: T = await wrapped(fn, call, first_failure)
        return result

    def _build(self, safety: Safety, limited: bool) -> Callable[..., Awaitable[Any]]:
        policy = self._policy
        on_retry = self._on_retry

        async def attempt(
            fn: Callable[[], Awaitable[Any]], call: str, first_failure: list[AilyError]
        ) -> Any:
            if first_failure:  # backoff's try 1 is the bare attempt that already failed
                raise first_failure.pop()
            return await fn()

        def give_up(exc: Exception) -> bool:
            return not is_retryable(exc, safety)

        async def backing_off(details: Any) -> None:
            if on_retry is not None:
                _, call, _ = details["args"]
                await on_retry(call, details["tries"], float(details["wait"]), details["exception"])

        decorate: Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]
        decorate = backoff.on_exception(
            lambda: _waits(policy, limited),
            AilyError,
            max_tries=policy.max_attempts,
            giveup=give_up,
            jitter=None,
            on_backoff=backing_off,
            logger=None,
        )
        return decorate(attempt)
