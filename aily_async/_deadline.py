"""Deadlines: a call bounded by its ``timeout``, and a limiter asked in time whether it can
grant before the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from ._errors import AilyError, DeadlineExceeded, LimiterTimeout
from ._limiter import LimiterState, RateLimiter

__all__ = ["acquire_by", "bounded"]


async def bounded(call: str, timeout: float, request: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """Run ``request`` within ``timeout`` seconds, or raise :class:`DeadlineExceeded`."""
    try:
        return await asyncio.wait_for(request, timeout)
    except AilyError:
        raise
    except asyncio.TimeoutError:
        raise DeadlineExceeded(
            f"no answer within the call's timeout of {timeout:.3g}s", call=call
        ) from None


async def acquire_by(
    call: str, limiter: RateLimiter, deadline: float, state: LimiterState | None
) -> None:
    """Wait for a grant that comes before ``deadline``; fail at once when the limiter's
    schedule (``state``: the limiter, if it can tell) already shows it cannot, so a caller
    that would give up anyway spends nothing."""
    remaining = deadline - asyncio.get_running_loop().time()
    if state is not None:
        eta = state.queue_wait()
        if eta > remaining:
            raise DeadlineExceeded(
                f"the rate limiter cannot grant within the call's deadline (next grant in about "
                f"{eta:.2f}s, {remaining:.2f}s left); nothing was sent",
                call=call,
            )
    try:
        await limiter.acquire(timeout=max(0.0, remaining))
    except LimiterTimeout:
        raise DeadlineExceeded(
            "no grant from the rate limiter within the call's deadline; nothing was sent",
            call=call,
        ) from None
