"""Fan-out scale: 10,000 pending RunHandles on one client: memory, event-loop lag, none lost.

    python benchmarks/bench_fanout.py            # full run (about 2.5 minutes)
    python benchmarks/bench_fanout.py --quick    # smoke run (1,000 handles)

Time is scaled 60×: a minute of the real API is a second here. The client's limiter is the
default per-call one with the documented quotas scaled the same way (polls share 1000 per
second, as they would share 1000 per minute), and the poll policy's intervals are divided by 60.

Each repetition, against a FakeAily in a child process whose runs never end until told:

1. creates N sessions and N runs (creation calls unthrottled);
2. starts one task awaiting each handle, so N poll loops run, and lets them settle;
3. measures the event loop's lag (a ticker every 5 ms, and the longest gen-2 garbage
   collection) for a few seconds while the N handles stay pending;
4. tells the server to end every run, then checks that every awaiting task returns a COMPLETED
   run, that no poll loop is left behind, and that client and server count the same GETs.

Repetitions alternate: the odd ones run ``tracemalloc`` through steps 1–2 and read the memory
still held after each step (``gc.collect()`` first), then the memory of N bare tasks awaiting a
future (the caller's own share, which no client can avoid); the even ones run without it and
also measure the lag during step 2 (all N awaits begun at once).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc
from typing import Any

from _common import (
    AILY_APP,
    APP_ID,
    APP_SECRET,
    GcWatch,
    Server,
    Ticker,
    header,
    median,
    percentile,
    pin_client,
    table,
)

from aily_async import AilyClient, Limits, PollPolicy, RunHandle, RunStatus

SCALE = 1 / 60
HOLD = 10**6  # seconds a run works: until the server's clock is advanced


async def create_handles(client: AilyClient, n: int, concurrency: int) -> list[RunHandle]:
    """``n`` sessions with one run each, created by ``concurrency`` workers."""
    handles: list[RunHandle] = []
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            session = await client.sessions.create()
            handles.append(await client.runs.create(session.id, app_id=AILY_APP))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return handles


async def awaiting_floor(n: int) -> float:
    """Bytes per task of ``n`` tasks awaiting one shared future: the caller's own share of a
    pending handle (its awaiting task), which no client can avoid."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def idle() -> None:
        await fut

    tracemalloc.start()
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    tasks = [asyncio.ensure_future(idle()) for _ in range(n)]
    await asyncio.sleep(0.05)
    gc.collect()
    size = (tracemalloc.get_traced_memory()[0] - base) / n
    tracemalloc.stop()
    fut.set_result(None)
    await asyncio.gather(*tasks)
    return size


async def leftover_tasks() -> int:
    """Tasks still alive on the loop besides the caller: poll loops left behind (public API
    only, so the count means the same whatever the client keeps privately)."""
    for _ in range(3):
        await asyncio.sleep(0)  # let cancelled or finished loops unwind
    me = asyncio.current_task()
    return sum(1 for t in asyncio.all_tasks() if t is not me and not t.done())


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(
        {
            "sessions.create": (10**9, 1.0),
            "runs.create": (10**9, 1.0),
            "runs.get": (args.poll_rate, 1.0),
        }
    )


def _lag(lags: list[float], gcs: GcWatch) -> dict[str, float]:
    return {
        "p50": percentile(lags, 50) * 1000,
        "p99": percentile(lags, 99) * 1000,
        "max": max(lags) * 1000,
        "gc2": gcs.longest(2) * 1000,
        "gc2_n": gcs.count(2),
    }


async def rep(server: Server, args: argparse.Namespace, traced: bool) -> dict[str, Any]:
    """One repetition; ``traced``: measure memory (tracemalloc on until the handles settled),
    else measure the loop's lag from the moment the N awaiting tasks start."""
    n = args.handles
    poll = PollPolicy(interval=1.0 * SCALE, max_interval=10.0 * SCALE)
    loop = asyncio.get_running_loop()
    url = server.url
    out: dict[str, Any] = {"n": n, "traced": traced}
    gcs = GcWatch()
    async with AilyClient(APP_ID, APP_SECRET, base_url=url, limiter=_limits(args), poll=poll) as c:
        # Warm up: token, connection pool, first-use caches.
        warm = await create_handles(c, 200, args.concurrency)
        for handle in warm:
            await handle.refresh()
        del warm, handle
        gc.collect()

        if traced:
            tracemalloc.start()
            gc.collect()
            base = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        handles = await create_handles(c, n, args.concurrency)
        out["created_s"] = time.perf_counter() - t0
        gc.collect()
        if traced:
            out["rest_b"] = (tracemalloc.get_traced_memory()[0] - base) / n
            tracemalloc.reset_peak()

        gcs.__enter__()
        async with Ticker(0.005) as ticker:
            ticker.mark()
            gcs.mark()
            t1 = time.perf_counter()
            tasks = [loop.create_task(h.wait()) for h in handles]
            out["spawn_ms"] = (time.perf_counter() - t1) * 1000  # the caller's own loop
            samples = []
            for _ in range(3):
                await asyncio.sleep(args.settle / 3)
                if traced:
                    gc.collect()
                    samples.append(tracemalloc.get_traced_memory()[0] - base)
            if traced:
                out["pending_b"] = max(samples) / n
                out["peak_b"] = (tracemalloc.get_traced_memory()[1] - base) / n
                tracemalloc.stop()
                gc.collect()
                await asyncio.sleep(0.05)  # the stall of stopping tracemalloc is not lag
            else:
                out["startup"] = _lag(ticker.lags, gcs)

            ticker.mark()
            gcs.mark()
            await asyncio.sleep(args.pending)
            out["steady"] = _lag(ticker.lags, gcs)
            out["pending_at_release"] = sum(1 for t in tasks if not t.done())

            await server.acommand("advance", seconds=2 * HOLD)
            ticker.mark()
            gcs.mark()
            t1 = time.perf_counter()
            results = await asyncio.wait_for(
                asyncio.gather(*tasks, return_exceptions=True), timeout=args.timeout
            )
            out["drain_s"] = time.perf_counter() - t1
            out["drain"] = _lag(ticker.lags, gcs)
        gcs.__exit__()
        out["completed"] = sum(
            1
            for r in results
            if not isinstance(r, BaseException) and r.status == RunStatus.COMPLETED
        )
        out["errors"] = sum(1 for r in results if isinstance(r, BaseException))
        out["leftover"] = await leftover_tasks()
        out["client_gets"] = c.stats.by_call.get("runs.get", 0)
    if traced:
        out["floor_b"] = await awaiting_floor(n)
    stats = await server.acommand("stats")
    await server.acommand("reset")
    out["server_gets"] = stats["routes"].get("runs.get", 0)
    out["rate_limited"] = sum(stats["rate_limited"].values())
    return out


async def run(args: argparse.Namespace) -> None:
    out = []
    with Server(duration=HOLD) as server:
        for i in range(args.reps):
            traced = i % 2 == 0
            r = await rep(server, args, traced)
            out.append(r)
            what = (
                f"{r['pending_b']:.0f} B/pending handle (at rest {r['rest_b']:.0f} B)"
                if traced
                else f"start-up lag p99 {r['startup']['p99']:.1f} ms max {r['startup']['max']:.1f}"
            )
            print(
                f"  rep {i + 1}/{args.reps} ({'memory' if traced else 'lag'}): {what}, steady lag "
                f"p99 {r['steady']['p99']:.1f} ms max {r['steady']['max']:.1f} ms, "
                f"{r['completed']}/{r['n']} completed, {r['errors']} errors, drain "
                f"{r['drain_s']:.1f}s, created in {r['created_s']:.1f}s",
                flush=True,
            )
    traced = [r for r in out if r["traced"]]
    untraced = [r for r in out if not r["traced"]]

    def med(rs: list[dict[str, Any]], get: Any, fmt: str = "{:.0f}") -> str:
        if not rs:
            return "-"
        values = [get(r) for r in rs]
        return f"{fmt.format(median(values))} (worst {fmt.format(max(values))})"

    n = args.handles
    print(
        f"\n{n:,} pending RunHandles on one client; memory: median of {len(traced)} traced "
        f"repetitions, lag: of {len(out)} (start-up: of the {len(untraced)} untraced):\n"
    )
    rows = [
        [
            "memory per pending handle (handle, run, awaiting task, poll task and its "
            "request chain, timers, limiter waiter), bytes",
            med(traced, lambda r: r["pending_b"]),
        ],
        [
            "of which the caller's own awaiting task (a task awaiting a future), bytes",
            med(traced, lambda r: r["floor_b"]),
        ],
        [
            "memory per pending handle without the caller's task (handle, run, poll task and "
            "its request chain, timers, limiter waiter, wait() internals), bytes",
            med(traced, lambda r: r["pending_b"] - r["floor_b"]),
        ],
        [
            "memory per handle at rest (handle + run, nobody awaiting), bytes",
            med(traced, lambda r: r["rest_b"]),
        ],
        ["traced peak while pending, per handle, bytes", med(traced, lambda r: r["peak_b"])],
        [
            f"loop lag p50 / p99 / max, ms, steady ({args.pending:g} s with all {n:,} pending)",
            " / ".join(f"{median(r['steady'][k] for r in out):.1f}" for k in ("p50", "p99", "max")),
        ],
        [
            f"loop lag p50 / p99 / max, ms, start-up (first {args.settle:g} s after "
            f"starting {n:,} awaits)",
            " / ".join(
                f"{median(r['startup'][k] for r in untraced):.1f}" for k in ("p50", "p99", "max")
            )
            if untraced
            else "-",
        ],
        [
            "longest gen-2 garbage collection, ms, worst repetition: steady / start-up / "
            "while completing",
            " / ".join(
                f"{max(r[k]['gc2'] for r in rs):.0f}" if rs else "-"
                for k, rs in (("steady", out), ("startup", untraced), ("drain", out))
            ),
        ],
        [
            f"of the start-up: the caller's own loop creating {n:,} awaiting tasks, ms",
            med(untraced, lambda r: r["spawn_ms"]),
        ],
        [
            "loop lag p50 / p99 / max, ms, while all complete",
            " / ".join(f"{median(r['drain'][k] for r in out):.1f}" for k in ("p50", "p99", "max")),
        ],
        [
            "still pending when released / completed after release",
            f"{min(r['pending_at_release'] for r in out):,} / "
            f"{min(r['completed'] for r in out):,} of {n:,} (worst repetition)",
        ],
        [
            "errors / poll loops left behind",
            f"{max(r['errors'] for r in out)} / {max(r['leftover'] for r in out)}",
        ],
        ["time for all to complete after release, s", med(out, lambda r: r["drain_s"], "{:.1f}")],
        [
            "get-run calls, client count = server count",
            ", ".join(f"{r['client_gets']:,} = {r['server_gets']:,}" for r in out),
        ],
        ["429s from the server", f"{max(r['rate_limited'] for r in out)}"],
        [f"time to create {n:,} sessions + runs, s", med(out, lambda r: r["created_s"], "{:.1f}")],
    ]
    print(table(["measure", "value"], rows))
    if traced:
        own = max(r["pending_b"] - r["floor_b"] for r in traced)
        total = max(r["pending_b"] for r in traced)
        print(
            f"\ntarget: pending handle < 4 KiB (handle + its poll task): worst {own:.0f} B -> "
            f"{'met' if own < 4096 else 'MISSED'} ({total:.0f} B with the caller's awaiting task)"
        )
    p99 = median(r["steady"]["p99"] for r in out)
    worst = max(r["steady"]["p99"] for r in out)
    print(
        f"target: p99 loop lag < 50 ms with {n:,} pending (steady): median {p99:.1f} ms "
        f"(worst repetition {worst:.1f} ms, worst single stall "
        f"{max(r['steady']['max'] for r in out):.0f} ms) -> {'met' if p99 < 50 else 'MISSED'}"
    )
    if untraced:
        s99 = median(r["startup"]["p99"] for r in untraced)
        print(f"        start-up p99 (all {n:,} awaits begun at once): median {s99:.1f} ms")
    lost = n - min(r["completed"] for r in out)
    print(f"target: none lost: {lost} lost -> {'met' if lost == 0 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument(
        "--reps", type=int, default=4, help="repetitions, alternately memory and lag"
    )
    parser.add_argument("--handles", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent creations")
    parser.add_argument("--poll-rate", type=int, default=1000, help="runs.get quota per second")
    parser.add_argument("--settle", type=float, default=1.5, help="seconds before measuring")
    parser.add_argument("--pending", type=float, default=3.0, help="seconds of lag measurement")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to complete")
    args = parser.parse_args()
    if args.quick:
        args.reps, args.handles, args.pending, args.settle = 2, 1000, 1.0, 0.6
    placement = pin_client()
    header("Fan-out: pending RunHandles on one client", args)
    print(placement)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
