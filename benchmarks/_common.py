"""Shared helpers of the benchmarks: the server process, a loop-lag ticker, statistics, tables."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
APP_ID = "cli_bench"
APP_SECRET = "bench-secret"
AILY_APP = "spring_bench__c"


# -- CPU placement ---------------------------------------------------------------------------


def _cpus() -> list[int]:
    if os.environ.get("AILY_BENCH_NO_PIN"):
        return []
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return []


def pin_client() -> str:
    """Pin this (client) process to the first CPU, leaving the last one to the server."""
    cpus = _cpus()
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[0]})
        return f"client on CPU {cpus[0]}, server on CPU {cpus[-1]}"
    return "no CPU pinning (AILY_BENCH_NO_PIN set, fewer than 2 CPUs, or not Linux)"


# -- the server process ----------------------------------------------------------------------


SERVER_PATH_VAR = "AILY_BENCH_SERVER_PYTHONPATH"


def server_env() -> dict[str, str] | None:
    """The server process's environment: this one's, except that ``PYTHONPATH`` is
    ``$AILY_BENCH_SERVER_PYTHONPATH`` when that is set (empty: no ``PYTHONPATH``). The guard
    (``bench_guard.py``) uses it to serve both trees it compares from one and the same FakeAily."""
    path = os.environ.get(SERVER_PATH_VAR)
    if path is None:
        return None
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if path:
        env["PYTHONPATH"] = path
    return env


class Server:
    """``benchmarks/_server.py`` in a child process (pinned to the last CPU when possible)."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Server:
        cpus = _cpus()
        preexec = None
        if len(cpus) >= 2:
            last = cpus[-1]

            def preexec() -> None:
                os.sched_setaffinity(0, {last})

        self._proc = subprocess.Popen(
            [sys.executable, str(HERE / "_server.py"), json.dumps(self.options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=preexec,
            env=server_env(),
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("READY "):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the benchmark server did not start: {line!r}")
        self.url = line.split()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(Exception):
            self._send({"cmd": "quit"}, proc)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _send(self, command: dict[str, Any], proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdin is not None
        assert proc.stdout is not None
        with self._lock:
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()
            answer: dict[str, Any] = json.loads(proc.stdout.readline())
        return answer

    def command(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send a command and return the server's answer (blocking: call outside the loop or
        through :meth:`acommand`)."""
        assert self._proc is not None
        return self._send({"cmd": cmd, **args}, self._proc)

    async def acommand(self, cmd: str, **args: Any) -> dict[str, Any]:
        """:meth:`command` without blocking the event loop."""
        return await asyncio.to_thread(self.command, cmd, **args)


# -- event-loop lag --------------------------------------------------------------------------


class Ticker:
    """Wakes every ``period`` seconds and records how late each wake-up was (loop lag).

    ``gaps`` holds the time between consecutive wake-ups; ``lags`` how much later than asked each
    one came. Use as ``async with Ticker() as t: ...``; :meth:`mark` clears what was recorded.
    """

    def __init__(self, period: float = 0.001) -> None:
        self.period = period
        self.gaps: list[float] = []
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        clock = time.perf_counter
        last = clock()
        while True:
            await asyncio.sleep(self.period)
            now = clock()
            gap = now - last
            self.gaps.append(gap)
            self.lags.append(max(0.0, gap - self.period))
            last = now

    def mark(self) -> None:
        self.gaps.clear()
        self.lags.clear()

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.sleep(self.period * 5)  # let it settle
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class GcWatch:
    """Records how long each garbage collection took, as ``(generation, seconds)``."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))

    def mark(self) -> None:
        self.pauses.clear()

    def longest(self, generation: int = 2) -> float:
        return max((d for g, d in self.pauses if g == generation), default=0.0)

    def count(self, generation: int = 2) -> int:
        return sum(1 for g, _ in self.pauses if g == generation)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


# -- statistics and output -------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` (0–100) percentile, linear interpolation (0 for no values)."""
    data = sorted(values)
    if not data:
        return 0.0
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (what ``benchmarks/README.md`` quotes)."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    sep = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> str:
    """One line about the machine and the packages measured."""
    libs = ", ".join(
        f"{name} {_version(name)}"
        for name in ("aily-async", "aiohttp", "httpx", "aiolimiter", "lark-oapi")
    )
    return (
        f"{os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.release()}; {libs}"
    )


def header(title: str, args: Any) -> None:
    print(f"## {title}")
    print(f"machine: {machine()}")
    print(f"command: python {' '.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}")
    print(f"options: {vars(args)}")
    print(f"load average at start: {load()} (other work on the machine skews wall-clock figures)")
    print()
    atexit.register(lambda: print(f"\nload average at end: {load()}"))


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"
