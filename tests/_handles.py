"""What the handle tests share (``test_runhandle``, ``test_agent_chat``): a FakeAily with a
client for it, a fixed poll schedule, and the client's own tasks."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Any

from _fake_client import fake_and_client

from aily_async import AilyClient, PollPolicy, RetryPolicy
from aily_async.testing import FakeAily

#: Polls at 0.5 s, then gaps ×1.5 up to 10 s, no jitter and no learning: exact poll times.
FIXED = PollPolicy(interval=0.5, backoff=1.5, max_interval=10.0, jitter=0.0, adaptive=False)


def aily(
    *, client: dict[str, Any] | None = None, **fake: Any
) -> AbstractAsyncContextManager[tuple[FakeAily, AilyClient]]:
    """A FakeAily and a client for it (no limiter, retries without waiting, polls every 0.5 s)."""
    defaults = {"retry": RetryPolicy.no_wait(), "limiter": None, "poll_interval": 0.5}
    return fake_and_client(defaults, client, **fake)


def client_tasks() -> list[asyncio.Task[Any]]:
    """Tasks besides the current one, leaving out the fake server's request handlers."""
    current = asyncio.current_task()
    return [
        t
        for t in asyncio.all_tasks()
        if t is not current and not t.get_coro().__qualname__.startswith("RequestHandler.")  # type: ignore[union-attr]
    ]
