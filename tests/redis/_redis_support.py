"""Helpers the Redis tests share: counting grants in windows, Redis's command counts, and
worker processes started together (``_redis_worker.py``)."""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from _redis_server import RedisServer, find_redis_server, free_port  # noqa: F401 (re-exported)

from aily_async.testing import FakeAily

ROOT = Path(__file__).resolve().parents[2]  # the repository
WORKER = Path(__file__).resolve().parent / "_redis_worker.py"
APP = "cli_shared"
AILY_APP = "spring_449d72db2f__c"


# -- a real redis-server ----------------------------------------------------------------------


# -- counting ---------------------------------------------------------------------------------


def max_in_window(times: Sequence[float], window: float) -> int:
    """The most of ``times`` in any half-open window ``[t, t + window)``."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0
    )


def accepted(fake: FakeAily, route: str = "skills.start") -> list[float]:
    """When the fake accepted each request of ``route``."""
    return [r.time for r in fake.requests if r.route == route and r.status == 200]


async def command_calls(client: aioredis.Redis, command: str) -> int:
    """How many times Redis ran ``command`` since the last ``CONFIG RESETSTAT``."""
    stats = await client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def run_workers(
    fake: FakeAily, redis_url: str, specs: Sequence[Sequence[str]], *, timeout: float = 40.0
) -> list[dict[str, Any]]:
    """Start one worker process per spec (extra CLI args), start them together, collect results."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            "--fake",
            fake.url,
            "--redis",
            redis_url,
            "--app-id",
            APP,
            *spec,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for spec in specs
    ]

    async def start_together_and_collect() -> list[dict[str, Any]]:
        for proc in procs:
            assert proc.stdout is not None
            line = await proc.stdout.readline()
            if line.strip() != b"ready":
                assert proc.stderr is not None
                err = await proc.stderr.read()
                raise AssertionError(f"worker failed to start: {line!r} {err.decode()}")
        fake.reset_log()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        results = []
        for proc in procs:
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        return results

    try:
        return await asyncio.wait_for(start_together_and_collect(), timeout)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
