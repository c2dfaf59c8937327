"""Shared fixtures: a real FakeAily on 127.0.0.1 and a client pointed at it."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for ``from _vloop import ...``

from aily_async import AilyClient, RetryPolicy
from aily_async.testing import FakeAily

# Every test talks to servers on 127.0.0.1: a proxy the machine names (clients honour
# HTTP(S)_PROXY by default) must not carry it. tests/test_proxy.py sets its own.
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_name, None)

APP_ID = "spring_449d72db2f__c"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAily]:
    """A FakeAily with default settings, served on an ephemeral port."""
    async with FakeAily() as server:
        yield server


@pytest.fixture
async def client(fake: FakeAily) -> AsyncIterator[AilyClient]:
    """A client for ``fake`` with retries that do not wait and no client-side limiter."""
    async with AilyClient(
        "cli_test",
        "test-secret",
        base_url=fake.url,
        retry=RetryPolicy.no_wait(),
        limiter=None,
        poll_interval=0.02,
    ) as aily:
        yield aily
