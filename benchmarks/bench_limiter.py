"""Limiter precision: K = N/2, N and 4N calls against a strict window, and acquire cost.

    python benchmarks/bench_limiter.py            # full run (about 4 minutes)
    python benchmarks/bench_limiter.py --quick    # smoke run

A FakeAily server in a child process enforces a strict sliding window on get-run (by default
N = 60 calls in any W = 3 s: Aily's quotas in scaled time) and announces the wait in
``x-ogw-ratelimit-reset``. Each client sends K calls at once (``asyncio.gather``), K = N/2, N and
4N, and retries every 429 after the announced reset:

* ``TokenBucket, fed back``: ``TokenBucket(N, W)`` (the default, with its ramp) in a hand-rolled
  aiohttp loop that gives it the client's feedback: ``acquire(first=True)`` for a retry,
  ``confirm()`` after an answer, ``pause(reset)`` after a 429;
* ``AilyClient + TokenBucket``: ``AilyClient(limiter=TokenBucket(N, W))``, with whatever
  feedback the client's transport gives the bucket (none: the ramp goes on by silence);
* ``AilyClient + TokenBucket(ramp=False)``: the same, told the window is empty at the start;
* ``AilyClient + paced``: ``TokenBucket(N, W, paced=True)``, the former default;
* ``aiohttp + aiolimiter``: ``AsyncLimiter(N, W)`` as it is commonly used (``async with
  limiter:`` around each request, sleep the reset on a 429, retry);
* ``aiohttp, no limiter``: the same loop without a limiter.

Each measurement uses its own app id (the server counts quotas per app) and starts once the
token is fetched and a connection is open. The makespan is the time until the last call
succeeded; the physical limit of K calls is ``ceil(K/N - 1) * W``: the least a strict window
allows, plus round trips. Targets: K = 4N within 1.1× of it, K ≤ N within one round trip
plus 0.2 s, zero 429s.

Then the uncontended ``acquire()`` cost of TokenBucket and aiolimiter: a tight loop of awaited
acquisitions on a limiter that never blocks, in ns per call, median of interleaved runs.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from _common import AILY_APP, APP_SECRET, Server, header, median, pin_client, table
from aiolimiter import AsyncLimiter

from aily_async import AilyClient, AilyError, TokenBucket

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
ROWS = (
    "TokenBucket, fed back",
    "AilyClient + TokenBucket",
    "AilyClient + TokenBucket(ramp=False)",
    "AilyClient + paced",
    "aiohttp + aiolimiter",
    "aiohttp, no limiter",
)


async def setup_run(url: str) -> tuple[str, str]:
    async with AilyClient("cli_setup", APP_SECRET, base_url=url, limiter=None) as client:
        session = await client.sessions.create()
        handle = await client.runs.create(session.id, app_id=AILY_APP, metadata={"duration": 0})
        await handle.wait(timeout=10)
        return session.id, handle.id


class _Unlimited:
    async def acquire(self, timeout: float | None = None) -> None:
        pass

    async def pause(self, seconds: float) -> None:
        pass


class _OnGetRun:
    """The limiter on get-run only (the warm-up call takes nothing from it)."""

    def __init__(self, limiter: Any) -> None:
        self.limiter = limiter

    def for_call(self, call: str) -> Any:
        return self.limiter if call == "runs.get" else _Unlimited()


async def batch_aily(url: str, app: str, sid: str, rid: str, k: int, limiter: Any) -> float:
    """``k`` get-run calls at once through an AilyClient; the makespan."""
    limits = _OnGetRun(limiter)
    async with AilyClient(app, APP_SECRET, base_url=url, limiter=limits) as client:
        await client.skills.get(AILY_APP, "skill_echo")  # the token, a warm connection
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(client.runs.get(sid, rid) for _ in range(k)), return_exceptions=True
        )
        wall = time.perf_counter() - t0
    failed = [r for r in results if isinstance(r, AilyError)]
    if failed:
        raise RuntimeError(f"{len(failed)} calls failed: {failed[0]}")
    return wall


async def batch_aiohttp(url: str, app: str, sid: str, rid: str, k: int, limiter: Any) -> float:
    """The hand-rolled loop: (limiter,) request, on 429 sleep the reset and try again; with a
    TokenBucket, the feedback the client gives it. The makespan."""
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url + TOKEN_PATH, json={"app_id": app, "app_secret": APP_SECRET}
        ) as resp:
            token = (await resp.json())["tenant_access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        run_url = f"{url}/open-apis/aily/v1/sessions/{sid}/runs/{rid}"
        async with session.get(run_url.rsplit("/runs/", 1)[0], headers=headers) as resp:
            await resp.read()  # a warm connection

        async def get() -> tuple[int, float]:
            async with session.get(run_url, headers=headers) as resp:
                await resp.read()
                return resp.status, float(resp.headers.get("x-ogw-ratelimit-reset", "1"))

        async def one() -> None:
            retry = False
            while True:
                if isinstance(limiter, TokenBucket):
                    await limiter.acquire(first=retry)
                    status, reset = await get()
                    if status == 429:
                        await limiter.pause(reset)
                    else:
                        limiter.confirm()
                elif limiter is not None:
                    async with limiter:
                        status, reset = await get()
                else:
                    status, reset = await get()
                if status != 429:
                    if status != 200:
                        raise RuntimeError(f"HTTP {status}")
                    return
                retry = True
                if not isinstance(limiter, TokenBucket):
                    await asyncio.sleep(reset)

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(k)))
        return time.perf_counter() - t0


async def round_trip(url: str, sid: str, rid: str) -> float:
    """The median round trip of a get-run on a warm connection, in seconds."""
    async with AilyClient("cli_rtt", APP_SECRET, base_url=url, limiter=None) as client:
        await client.runs.get(sid, rid)
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            await client.runs.get(sid, rid)
            times.append(time.perf_counter() - t0)
    return median(times)


async def measure(
    server: Server, row: str, app: str, sid: str, rid: str, k: int, n: int, w: float
) -> dict[str, float]:
    url = server.url
    await server.acommand("reset")
    batch: Callable[[], Awaitable[float]]
    if row == "TokenBucket, fed back":
        batch = lambda: batch_aiohttp(url, app, sid, rid, k, TokenBucket(n, w))  # noqa: E731
    elif row == "AilyClient + TokenBucket":
        batch = lambda: batch_aily(url, app, sid, rid, k, TokenBucket(n, w))  # noqa: E731
    elif row == "AilyClient + TokenBucket(ramp=False)":
        bucket = TokenBucket(n, w, ramp=False)
        batch = lambda: batch_aily(url, app, sid, rid, k, bucket)  # noqa: E731
    elif row == "AilyClient + paced":
        batch = lambda: batch_aily(url, app, sid, rid, k, TokenBucket(n, w, paced=True))  # noqa: E731
    elif row == "aiohttp + aiolimiter":
        batch = lambda: batch_aiohttp(url, app, sid, rid, k, AsyncLimiter(n, w))  # noqa: E731
    else:
        batch = lambda: batch_aiohttp(url, app, sid, rid, k, None)  # noqa: E731
    wall = await batch()
    stats = await server.acommand("stats")
    return {"429": stats["rate_limited"].get("runs.get", 0), "wall": wall}


def physical(k: int, n: int, w: float) -> float:
    """The least time ``k`` calls take against a strict window of ``n`` per ``w`` seconds."""
    return math.ceil(k / n - 1) * w


async def acquire_cost(n: int, reps: int) -> dict[str, list[float]]:
    """ns per uncontended ``await limiter.acquire()``, and of awaiting an empty coroutine."""

    async def empty() -> None:
        pass

    def bucket() -> Any:
        try:  # a window known to be empty: every acquire takes the fast path
            return TokenBucket(10**9, 1.0, ramp=False).acquire
        except TypeError:  # an older aily_async (bench_guard.py runs this on both trees)
            return TokenBucket(10**9, 1.0).acquire

    makers: dict[str, Callable[[], Callable[[], Awaitable[None]]]] = {
        "TokenBucket": bucket,
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
    n, w = args.quota, args.window
    sizes = (n // 2, n, 4 * n)
    with Server(rate_limits={"runs.get": [[n, w]]}) as server:
        sid, rid = await setup_run(server.url)
        rtt = await round_trip(server.url, sid, rid)
        print(f"get-run round trip (median of 30, warm): {rtt * 1000:.1f} ms", flush=True)
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        for rep in range(args.reps):
            order = ROWS[rep % len(ROWS) :] + ROWS[: rep % len(ROWS)]
            for k in sizes:
                for i, row in enumerate(order):
                    app = f"cli_limiter_{rep}_{k}_{i}"
                    r = await measure(server, row, app, sid, rid, k, n, w)
                    results.setdefault((row, k), []).append(r)
                    print(
                        f"  rep {rep + 1}/{args.reps} K={k:<4} {row:<37} 429s={r['429']:<4.0f} "
                        f"makespan={r['wall']:6.2f}s",
                        flush=True,
                    )
    costs = await acquire_cost(args.acquires, args.reps + 4)

    print(
        f"\nK get-run calls at once against a strict window of N = {n} per W = {w:g} s; "
        f"median of {args.reps} interleaved repetitions (worst in brackets). Round trip "
        f"{rtt * 1000:.1f} ms. Physical limit ceil(K/N - 1) * W: "
        + ", ".join(f"K={k}: {physical(k, n, w):g} s" for k in sizes)
        + ".\n"
    )
    head = ["client"]
    for k in sizes:
        kind = "s" if physical(k, n, w) == 0 else "× limit"
        head += [f"K={k} makespan, {kind}", f"K={k} 429s"]
    rows = []
    for row in ROWS:
        line = [row]
        for k in sizes:
            rs = results[(row, k)]
            limit = physical(k, n, w)
            walls = [r["wall"] / limit if limit else r["wall"] for r in rs]
            fmt = "{:.2f}×" if limit else "{:.3f}"
            line += [
                f"{fmt.format(median(walls))} ({fmt.format(max(walls))})",
                f"{median(r['429'] for r in rs):.0f} ({max(r['429'] for r in rs):.0f})",
            ]
        rows.append(line)
    print(table(head, rows))
    print(f"\nUncontended acquire, {args.acquires:,} awaited calls, median of {args.reps + 4}:\n")
    base = median(costs["(empty coroutine)"])
    crows = [
        [name, f"{median(v):.0f}", f"{median(v) - base:.0f}" if name[0] != "(" else "-"]
        for name, v in costs.items()
    ]
    print(table(["limiter", "ns per await acquire()", "ns above an empty await"], crows))

    print()
    for row in ROWS[:3]:
        worst_429 = max(r["429"] for k in sizes for r in results[(row, k)])
        small = max(r["wall"] for k in sizes[:2] for r in results[(row, k)])
        big = max(r["wall"] for r in results[(row, sizes[2])]) / physical(sizes[2], n, w)
        met = worst_429 == 0 and small <= rtt + 0.2 and big <= 1.1
        print(
            f"target {row}: 0 × 429 (worst {worst_429:.0f}), K ≤ N within a round trip + 0.2 s "
            f"(worst {small:.3f} s), K = 4N within 1.1× the limit (worst {big:.2f}×) -> "
            f"{'met' if met else 'MISSED'}"
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
    parser.add_argument("--quota", type=int, default=60, help="N: calls allowed per window")
    parser.add_argument("--window", type=float, default=3.0, help="W: window, seconds")
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
