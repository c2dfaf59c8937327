"""A client dropped without ``close()`` (a notebook cell run again) releases its connections
when it is collected: aiohttp has no "Unclosed client session/connector" to report, in
whatever code runs then; the client's own ResourceWarning stays, for scripts."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from aily_async import AilyClient
from aily_async.testing import FakeAily


async def test_a_dropped_client_closes_its_session_quietly(
    fake: FakeAily, caplog: pytest.LogCaptureFixture
) -> None:
    """Collected with a kept-alive connection open: its session is closed on the loop, no
    aiohttp warning or loop error is reported, and the client still warns ResourceWarning."""
    client = AilyClient("cli_test", "secret", base_url=fake.url, limiter=None)
    await client.sessions.create()
    connector: Any = getattr(client.wire, "pool")  # noqa: B009 - AiohttpWire only
    assert connector is not None
    assert not connector.closed
    caplog.set_level(logging.DEBUG, logger="asyncio")
    with pytest.warns(ResourceWarning) as record:  # noqa: PT031 - the collection must be inside
        del client
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)  # the closing task runs
        gc.collect()
    messages = [str(w.message) for w in record]
    assert any("unclosed <AilyClient" in m for m in messages), messages
    assert not [m for m in messages if "Unclosed" in m], messages
    assert not [r.getMessage() for r in caplog.records if "Unclosed" in r.getMessage()]
    assert connector.closed


async def test_a_session_of_your_own_is_left_alone_when_dropped(fake: FakeAily) -> None:
    """A dropped client never closes a session the caller gave it."""
    import aiohttp

    async with aiohttp.ClientSession() as own:
        client = AilyClient("cli_test", "secret", base_url=fake.url, limiter=None, session=own)
        await client.sessions.create()
        with pytest.warns(ResourceWarning):  # noqa: PT031 - the collection must be inside
            del client
            gc.collect()
            await asyncio.sleep(0)
        assert not own.closed
