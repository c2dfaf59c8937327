"""Limiter precision: a batch of 4× the quota against a strict sliding window, and acquire cost.

    python benchmarks/bench_limiter.py            # full run (about 2 minutes)
    python benchmarks/bench_limiter.py --quick    # smoke run

A FakeAily server in a child process enforces a strict sliding window on get-run (by default
60 calls in any 3 s: Aily's quotas in scaled time). Each client sends 4× the quota at once
(``asyncio.gather``) and retries every 429 after the server's ``x-ogw-ratelimit-reset``:

* ``aily_async TokenBucket``: ``AilyClient(limiter=TokenBucket(60, 3.0))``;
* ``aiohttp + aiolimiter``: the hand-rolled loop, ``AsyncLimiter(60, 3.0)`` as it is commonly
  used (``async with limiter:`` around each request, sleep the reset on a 429, retry);
* ``aiohttp, no limiter``: the same loop without a limiter;
* ``aily_async, limiter=None``: the client's own retries on 429 (4 attempts at most).

Each client uses its own app id (the server counts quotas per app). The achieved rate is
successful calls / wall time, as a % of the quota (60 / 3 s = 20/s).

Then the uncontended ``acquire()`` cost of TokenBucket and aiolimiter: a tight loop of awaited
acquisitions on a limiter that never blocks, in ns per call, median of interleaved runs.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from _common import AILY_APP, APP_SECRET, Server, header, median, pin_client, table
from aiolimiter import AsyncLimiter

from aily_async import AilyClient, AilyError, TokenBucket

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
ROWS = ("aily_async TokenBucket", "aiohttp + aiolimiter", "aiohttp, no limiter", "aily_async, None")


async def setup_run(url: str) -> tuple[str, str]:
    async with AilyClient("cli_setup", APP_SECRET, base_url=url, limiter=None) as client:
        session = await client.sessions.create()
        handle = await client.runs.create(session.id, app_id=AILY_APP, metadata={"duration": 0})
        await handle.wait(timeout=10)
        return session.id, handle.id


async def batch_aily(url: str, app: str, sid: str, rid: str, n: int, limiter: Any) -> int:
    """Send ``n`` get-run calls at once through an AilyClient; return how many failed."""
    async with AilyClient(app, APP_SECRET, base_url=url, limiter=limiter) as client:
        results = await asyncio.gather(
            *(client.runs.get(sid, rid) for _ in range(n)), return_exceptions=True
        )
    return sum(isinstance(r, AilyError) for r in results)


async def batch_aiohttp(
    url: str, app: str, sid: str, rid: str, n: int, limiter: AsyncLimiter | None
) -> int:
    """The hand-rolled loop: (limiter,) request, on 429 sleep the reset and try again."""
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url + TOKEN_PATH, json={"app_id": app, "app_secret": APP_SECRET}
        ) as resp:
            token = (await resp.json())["tenant_access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        run_url = f"{url}/open-apis/aily/v1/sessions/{sid}/runs/{rid}"

        async def get() -> tuple[int, float]:
            async with session.get(run_url, headers=headers) as resp:
                await resp.read()
                return resp.status, float(resp.headers.get("x-ogw-ratelimit-reset", "1"))

        async def one() -> None:
            while True:
                if limiter is not None:
                    async with limiter:
                        status, reset = await get()
                else:
                    status, reset = await get()
                if status != 429:
                    if status != 200:
                        raise RuntimeError(f"HTTP {status}")
                    return
                await asyncio.sleep(reset)

        results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    return sum(isinstance(r, Exception) for r in results)


async def saturate(
    server: Server, row: str, app: str, sid: str, rid: str, quota: int, window: float
) -> dict[str, float]:
    n = 4 * quota
    url = server.url
    await server.acommand("reset")
    batch: Callable[[], Awaitable[int]]
    if row == "aily_async TokenBucket":
        batch = lambda: batch_aily(url, app, sid, rid, n, TokenBucket(quota, window))  # noqa: E731
    elif row == "aily_async, None":
        batch = lambda: batch_aily(url, app, sid, rid, n, None)  # noqa: E731
    elif row == "aiohttp + aiolimiter":
        batch = lambda: batch_aiohttp(url, app, sid, rid, n, AsyncLimiter(quota, window))  # noqa: E731
    else:
        batch = lambda: batch_aiohttp(url, app, sid, rid, n, None)  # noqa: E731
    t0 = time.perf_counter()
    failed = await batch()
    wall = time.perf_counter() - t0
    stats = await server.acommand("stats")
    rejected = stats["rate_limited"].get("runs.get", 0)
    ok = n - failed
    return {
        "429": rejected,
        "failed": failed,
        "wall": wall,
        "rate": ok / wall / (quota / window) * 100,
    }


async def acquire_cost(n: int, reps: int) -> dict[str, list[float]]:
    """ns per uncontended ``await limiter.acquire()``, and of awaiting an empty coroutine."""

    async def empty() -> None:
        pass

    makers: dict[str, Callable[[], Callable[[], Awaitable[None]]]] = {
        "TokenBucket": lambda: TokenBucket(10**9, 1.0).acquire,
        "aiolimiter.AsyncLimiter": lambda: AsyncLimiter(10**9, 1.0).acquire,
        "(empty coroutine)": lambda: empty,
    }
    out: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(reps):
        for name, make in makers.items():
            acquire = make()
            for _ in range(1000):
                await acquire()
            t0 = time.perf_counter_ns()
            for _ in range(n):
                await acquire()
            out[name].append((time.perf_counter_ns() - t0) / n)
    return out


async def run(args: argparse.Namespace) -> None:
    with Server(rate_limits={"runs.get": [[args.quota, args.window]]}) as server:
        sid, rid = await setup_run(server.url)
        results: dict[str, list[dict[str, float]]] = {row: [] for row in ROWS}
        for rep in range(args.reps):
            order = ROWS[rep % len(ROWS) :] + ROWS[: rep % len(ROWS)]
            for i, row in enumerate(order):
                app = f"cli_limiter_{rep}_{i}"
                r = await saturate(server, row, app, sid, rid, args.quota, args.window)
                results[row].append(r)
                print(
                    f"  rep {rep + 1}/{args.reps} {row:<24} 429s={r['429']:<4.0f} "
                    f"failed={r['failed']:<3.0f} wall={r['wall']:5.2f}s rate={r['rate']:5.1f}%",
                    flush=True,
                )
    costs = await acquire_cost(args.acquires, args.reps + 4)

    n = 4 * args.quota
    print(
        f"\n{n} get-run calls at once against a strict window of {args.quota} per "
        f"{args.window:g} s, median of {args.reps} interleaved repetitions (worst in brackets):\n"
    )
    rows = []
    for row in ROWS:
        rs = results[row]
        rows.append(
            [
                row,
                f"{median(r['429'] for r in rs):.0f} ({max(r['429'] for r in rs):.0f})",
                f"{median(r['failed'] for r in rs):.0f}",
                f"{median(r['rate'] for r in rs):.1f}% ({min(r['rate'] for r in rs):.1f}%)",
                f"{median(r['wall'] for r in rs):.2f}",
            ]
        )
    print(
        table(
            ["client", "429s received", "calls failed", "achieved rate, % of quota", "wall s"],
            rows,
        )
    )
    ideal = (n / args.quota - 1) * args.window
    print(
        f"\n(A strict window allows the whole quota at the start of each window, so the fastest "
        f"any client can finish {n} calls is about {ideal:g} s, i.e. "
        f"{n / ideal / (args.quota / args.window) * 100:.0f}% on this measure, by firing bursts; "
        f"a paced limiter's ceiling is 100%.)"
    )
    print(f"\nUncontended acquire, {args.acquires:,} awaited calls, median of {args.reps + 4}:\n")
    base = median(costs["(empty coroutine)"])
    crows = [
        [name, f"{median(v):.0f}", f"{median(v) - base:.0f}" if name[0] != "(" else "-"]
        for name, v in costs.items()
    ]
    print(table(["limiter", "ns per await acquire()", "ns above an empty await"], crows))
    tb = results["aily_async TokenBucket"]
    worst_429 = max(r["429"] for r in tb)
    rate = min(r["rate"] for r in tb)
    print(
        f"\ntarget: zero 429s and >= 95% of the quota through the limiter: worst {worst_429:.0f} "
        f"429s, lowest rate {rate:.1f}% -> "
        f"{'met' if worst_429 == 0 and rate >= 95 else 'MISSED'}"
    )
    ours, theirs = median(costs["TokenBucket"]), median(costs["aiolimiter.AsyncLimiter"])
    print(
        f"target: uncontended acquire no dearer than aiolimiter's: {ours:.0f} ns vs "
        f"{theirs:.0f} ns -> {'met' if ours <= theirs else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--quota", type=int, default=60, help="calls allowed per window")
    parser.add_argument("--window", type=float, default=3.0, help="window, seconds")
    parser.add_argument("--acquires", type=int, default=200_000, help="acquires per timing")
    args = parser.parse_args()
    if args.quick:
        args.reps, args.quota, args.window, args.acquires = 1, 20, 1.0, 20_000
    placement = pin_client()
    header("Limiter precision and acquire cost", args)
    print(placement)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
