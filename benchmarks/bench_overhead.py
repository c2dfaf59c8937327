"""Overhead per request: aily_async against raw aiohttp, httpx and lark-oapi, on get-run.

    python benchmarks/bench_overhead.py            # full run (about 2 minutes)
    python benchmarks/bench_overhead.py --quick    # smoke run

A FakeAily server runs in a child process (pinned to the other CPU when there are two), so
``time.process_time()`` in this process is the client's CPU alone. Each repetition measures every
client once, in a rotated order, with a fresh client warmed by a few calls; the tables show the
medians over the repetitions. The first-call stall is measured in a fresh process per client and
repetition: a ticker wakes every 1 ms and the longest gap between its wake-ups while the first
call (session set-up and token fetch included) runs is the stall.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _common import (
    AILY_APP,
    APP_ID,
    APP_SECRET,
    HERE,
    Server,
    Ticker,
    header,
    median,
    pin_client,
    table,
)

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
CLIENTS = ("aiohttp", "aily_async", "aily_async+limiter", "httpx", "lark-oapi")
NOTES = {
    "aiohttp": "raw aiohttp, one shared ClientSession (the floor)",
    "aily_async": "AilyClient(limiter=None)",
    "aily_async+limiter": (
        "AilyClient(limiter=Limits(default=(10**9, 1.0))), its buckets without the ramp: on, "
        "never binding"
    ),
    "httpx": "one shared httpx.AsyncClient, pool of 100 kept-alive connections",
    "lark-oapi": "client.aily.v1.aily_session_run.aget(request)",
}


class Bench:
    """One client under test: ``call()`` fetches the run (the first call fetches the token)."""

    call: Callable[[], Awaitable[Any]]

    async def close(self) -> None:
        pass


class RawAiohttp(Bench):
    def __init__(self, url: str, sid: str, rid: str) -> None:
        import aiohttp

        self.aiohttp = aiohttp
        self.url = url
        self.run_url = f"{url}/open-apis/aily/v1/sessions/{sid}/runs/{rid}"
        self.session: Any = None
        self.headers: dict[str, str] = {}
        self.call = self._first

    async def _first(self) -> Any:
        self.session = self.aiohttp.ClientSession()
        async with self.session.post(
            self.url + TOKEN_PATH, json={"app_id": APP_ID, "app_secret": APP_SECRET}
        ) as resp:
            token = (await resp.json())["tenant_access_token"]
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json; charset=utf-8",
        }
        self.call = self._get
        return await self._get()

    async def _get(self) -> Any:
        async with self.session.get(self.run_url, headers=self.headers) as resp:
            body = json.loads(await resp.read())
        if body["code"] != 0:
            raise RuntimeError(body)
        return body["data"]["run"]

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class Httpx(Bench):
    def __init__(self, url: str, sid: str, rid: str) -> None:
        import httpx

        # A pool like aiohttp's (100 connections, all kept alive): httpx's default keeps only
        # 20 alive, so at concurrency 32 it would reconnect on every third call.
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        self.client = httpx.AsyncClient(base_url=url, limits=limits)
        self.path = f"/open-apis/aily/v1/sessions/{sid}/runs/{rid}"
        self.headers: dict[str, str] = {}
        self.call = self._first

    async def _first(self) -> Any:
        resp = await self.client.post(TOKEN_PATH, json={"app_id": APP_ID, "app_secret": APP_SECRET})
        self.headers = {
            "Authorization": f"Bearer {resp.json()['tenant_access_token']}",
            "Content-Type": "application/json; charset=utf-8",
        }
        self.call = self._get
        return await self._get()

    async def _get(self) -> Any:
        body = (await self.client.get(self.path, headers=self.headers)).json()
        if body["code"] != 0:
            raise RuntimeError(body)
        return body["data"]["run"]

    async def close(self) -> None:
        await self.client.aclose()


class Aily(Bench):
    def __init__(self, url: str, sid: str, rid: str, *, limited: bool) -> None:
        from aily_async import AilyClient, Limits, RateLimiter, TokenBucket

        def bucket(call: str, windows: tuple[tuple[int, float], ...]) -> RateLimiter:
            # No ramp: a fresh bucket's first window (1 s here, the whole measurement) holds
            # calls back until answers confirm them, which is bench_limiter's subject; this
            # measures what every request pays on a client past its first window.
            (rate, per), *also = windows
            return TokenBucket(rate, per, also=also, ramp=False, name=call)

        limiter = Limits(default=(10**9, 1.0), factory=bucket) if limited else None
        self.client = AilyClient(APP_ID, APP_SECRET, base_url=url, limiter=limiter)
        self.sid, self.rid = sid, rid

    async def call(self) -> Any:  # type: ignore[override]
        return await self.client.runs.get(self.sid, self.rid)

    async def close(self) -> None:
        await self.client.close()


class Lark(Bench):
    def __init__(self, url: str, sid: str, rid: str) -> None:
        import lark_oapi as lark
        from lark_oapi.api.aily.v1 import GetAilySessionRunRequest

        self.client = (
            lark.Client.builder()
            .app_id(APP_ID)
            .app_secret(APP_SECRET)
            .domain(url)
            .log_level(lark.LogLevel.ERROR)
            .build()
        )
        self.runs = self.client.aily.v1.aily_session_run
        self.request = GetAilySessionRunRequest
        self.sid, self.rid = sid, rid

    async def call(self) -> Any:  # type: ignore[override]
        request = self.request.builder().aily_session_id(self.sid).run_id(self.rid).build()
        resp = await self.runs.aget(request)
        if not resp.success():
            raise RuntimeError(f"lark-oapi: {resp.code} {resp.msg}")
        return resp.data.run


def make(name: str, url: str, sid: str, rid: str) -> Bench:
    if name == "aiohttp":
        return RawAiohttp(url, sid, rid)
    if name == "aily_async":
        return Aily(url, sid, rid, limited=False)
    if name == "aily_async+limiter":
        return Aily(url, sid, rid, limited=True)
    if name == "httpx":
        return Httpx(url, sid, rid)
    if name == "lark-oapi":
        return Lark(url, sid, rid)
    raise ValueError(name)


async def throughput(bench: Bench, n: int, concurrency: int, warmup: int) -> tuple[float, float]:
    """(requests per second, client CPU seconds per 1,000 requests) over ``n`` calls."""
    remaining = 0

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await bench.call()

    await bench.call()  # token fetch, session set-up
    remaining = warmup
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    gc.collect()
    remaining = n
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return n / wall, cpu / n * 1000


async def setup_run(url: str) -> tuple[str, str]:
    """A session with one finished run, for everyone to fetch."""
    from aily_async import AilyClient

    async with AilyClient(APP_ID, APP_SECRET, base_url=url, limiter=None) as client:
        session = await client.sessions.create()
        handle = await client.runs.create(session.id, app_id=AILY_APP, metadata={"duration": 0})
        await handle.wait(timeout=10)
        return session.id, handle.id


def stall_child(name: str, url: str, sid: str, rid: str) -> None:
    """In a fresh process: the loop's longest stall during a client's first call."""
    bench = make(name, url, sid, rid)  # imports and construction happen before the loop runs

    async def main() -> dict[str, float]:
        async with Ticker(0.001) as ticker:
            ticker.mark()
            t0 = time.perf_counter()
            await bench.call()
            first = time.perf_counter() - t0
            await asyncio.sleep(0.003)
            gaps = list(ticker.gaps)
        await bench.close()
        return {"first_ms": first * 1000, "stall_ms": max(gaps) * 1000}

    print(json.dumps(asyncio.run(main())))


def stall(name: str, url: str, sid: str, rid: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(HERE / "bench_overhead.py"), "--stall-child", name, url, sid, rid],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


async def measure_all(args: argparse.Namespace, url: str, sid: str, rid: str) -> dict[str, Any]:
    results: dict[str, dict[str, list[float]]] = {
        name: {"rps": [], "cpu": []} for name in args.clients
    }
    for rep in range(args.reps):
        order = list(args.clients)
        order = order[rep % len(order) :] + order[: rep % len(order)]
        for name in order:
            bench = make(name, url, sid, rid)
            slow = name == "lark-oapi"
            n = args.lark_requests if slow else args.requests
            try:
                rps, cpu = await throughput(bench, n, args.concurrency, warmup=max(20, n // 10))
            finally:
                await bench.close()
            results[name]["rps"].append(rps)
            results[name]["cpu"].append(cpu)
            print(
                f"  rep {rep + 1}/{args.reps} {name:<19} {rps:8.0f} req/s {cpu:7.3f} CPU s/1k",
                flush=True,
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--requests", type=int, default=3000, help="calls per measurement")
    parser.add_argument("--lark-requests", type=int, default=120, help="calls for lark-oapi")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--stall-reps", type=int, default=3, help="fresh processes per client")
    parser.add_argument("--clients", nargs="+", default=list(CLIENTS), choices=CLIENTS)
    parser.add_argument("--stall-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stall_child:
        stall_child(*args.stall_child)
        return
    if args.quick:
        args.reps, args.requests, args.lark_requests, args.stall_reps = 2, 500, 40, 1
    placement = pin_client()
    header("Overhead per request (get-run)", args)
    print(placement)
    with Server() as server:
        sid, rid = asyncio.run(setup_run(server.url))
        results = asyncio.run(measure_all(args, server.url, sid, rid))
        server.command("reset")
        stalls: dict[str, list[dict[str, float]]] = {name: [] for name in args.clients}
        for _ in range(args.stall_reps):
            for name in args.clients:
                stalls[name].append(stall(name, server.url, sid, rid))
        stats = server.command("stats")
    print()
    cpu = {name: median(r["cpu"]) for name, r in results.items()}
    ours_name = "aily_async+limiter" if "aily_async+limiter" in results else "aily_async"

    def ratio(name: str, to: str) -> float | None:
        """Median of the per-repetition ratios (paired, so slow spells of the machine cancel)."""
        if to not in results:
            return None
        pairs = zip(results[name]["cpu"], results[to]["cpu"], strict=True)
        return median(a / b for a, b in pairs)

    rows = []
    for name in args.clients:
        rps = median(results[name]["rps"])
        to_base, to_ours = ratio(name, "aiohttp"), ratio(name, ours_name)
        rows.append(
            [
                name,
                f"{rps:,.0f}",
                f"{cpu[name]:.3f}",
                f"{to_base:.2f}×" if to_base else "-",
                f"{to_ours:.2f}×" if to_ours else "-",
            ]
        )
    print(
        f"Throughput and client CPU, concurrency {args.concurrency}, "
        f"{args.requests} calls per measurement ({args.lark_requests} for lark-oapi), "
        f"median of {args.reps} interleaved repetitions (ratios: median of the per-repetition "
        f"ratios):\n"
    )
    print(
        table(
            ["client", "requests/s", "CPU s / 1,000 req", "× raw aiohttp", "× aily_async"],
            rows,
        )
    )
    print()
    print(
        f"First call (session set-up + token fetch + get-run) in a fresh process, "
        f"median of {args.stall_reps} (worst in brackets):\n"
    )
    srows = []
    for name in args.clients:
        first = [s["first_ms"] for s in stalls[name]]
        gap = [s["stall_ms"] for s in stalls[name]]
        srows.append(
            [
                name,
                f"{median(first):.1f} ({max(first):.1f})",
                f"{median(gap):.1f} ({max(gap):.1f})",
            ]
        )
    print(table(["client", "first call, ms", "longest loop stall, ms (1 ms ticker)"], srows))
    print()
    for name in args.clients:
        print(f"- {name}: {NOTES[name]}")
    print(f"\nserver: {stats['token_fetches']} token fetches during the stall runs")
    target = ratio(ours_name, "aiohttp") if "aiohttp" in results else None
    if target:
        print(
            f"\ntarget: aily_async CPU/request <= 1.5× raw aiohttp ({ours_name}): "
            f"{target:.2f}× -> {'met' if target <= 1.5 else 'MISSED'}"
        )
    ours_stalls = [
        s["stall_ms"] for n in ("aily_async", "aily_async+limiter") for s in stalls.get(n, [])
    ]
    if ours_stalls:
        worst = max(ours_stalls)
        print(
            f"target: aily_async first call stalls the loop < 5 ms: worst {worst:.1f} ms -> "
            f"{'met' if worst < 5 else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
