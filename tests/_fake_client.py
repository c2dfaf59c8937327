"""A FakeAily and a client for it, the pair most tests start from."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aily_async import AilyClient
from aily_async.testing import FakeAily


@asynccontextmanager
async def fake_and_client(
    defaults: Mapping[str, Any], client: Mapping[str, Any] | None = None, **fake: Any
) -> AsyncIterator[tuple[FakeAily, AilyClient]]:
    """A ``FakeAily(**fake)`` and a client for it, with the client options ``defaults``
    overridden by ``client``; both closed at the end."""
    options = {**defaults, **(client or {})}
    async with (
        FakeAily(**fake) as server,
        AilyClient("cli_test", "test-secret", base_url=server.url, **options) as aily_client,
    ):
        yield server, aily_client
