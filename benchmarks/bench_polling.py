"""Polling economy: GETs per completed run and delay in noticing completion, per poll policy.

    python benchmarks/bench_polling.py            # full run (about 90 s)
    python benchmarks/bench_polling.py --quick    # smoke run

Part 1, a realistic spread: runs whose durations are log-normal (median 10 s, sigma 0.8: p5 ≈
2.7 s, p95 ≈ 37 s) arriving as a Poisson stream, with time scaled by 0.05 (a 10 s run lasts
0.5 s here; every policy's intervals are scaled the same way; the figures are scaled back to
real seconds). Each policy gets a fresh client (so adaptive polling learns from nothing) and the
same runs in the same order:

* ``fixed 1 s``: ``PollPolicy(interval=1, backoff=1.0, adaptive=False, jitter=0)``;
* ``backoff, adaptive off``: the default policy with ``adaptive=False``;
* ``default (adaptive)``: ``PollPolicy()``, the client's default.

Part 2, the case of issue 3: 200 runs at once, durations uniform in 0.2–2 s (real time, no
scaling), ``AilyClient(poll_interval=0.1)``; once on a fresh client and once more on the same
client (which has now seen 200 runs end).

The detection delay of a run is the moment ``await handle`` returned (``time.time()`` in the
client) minus the run's ``ended_at`` as the server reports it (same clock, 1 ms resolution).
The server (FakeAily) runs in a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
from typing import Any

import attrs
from _common import AILY_APP, APP_ID, APP_SECRET, Server, header, median, percentile, pin_client
from _common import table as md_table

from aily_async import AilyClient, PollPolicy, RunStatus


def policies(scale: float) -> dict[str, PollPolicy]:
    default = PollPolicy()
    scaled = attrs.evolve(
        default, interval=default.interval * scale, max_interval=default.max_interval * scale
    )
    return {
        "fixed 1 s": PollPolicy(interval=1.0 * scale, backoff=1.0, adaptive=False, jitter=0.0),
        "backoff, adaptive off": attrs.evolve(scaled, adaptive=False),
        "default (adaptive)": scaled,
    }


async def one_run(client: AilyClient, duration: float, start: float, t0: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, t0 + start - loop.time()))
    session = await client.sessions.create()
    handle = await client.runs.create(
        session.id, app_id=AILY_APP, metadata={"duration": round(duration, 4)}
    )
    run = await handle
    returned = time.time()
    assert run.status == RunStatus.COMPLETED, run
    assert run.ended_at is not None
    return {"polls": handle.polls, "delay": returned - run.ended_at / 1000}


async def stream(
    url: str, policy: PollPolicy, durations: list[float], starts: list[float]
) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    async with AilyClient(APP_ID, APP_SECRET, base_url=url, limiter=None, poll=policy) as client:
        await client.sessions.create()  # token and connection first
        t0 = loop.time() + 0.05
        return list(
            await asyncio.gather(
                *(one_run(client, d, s, t0) for d, s in zip(durations, starts, strict=True))
            )
        )


def summarize(results: list[dict[str, Any]], scale: float) -> dict[str, float]:
    polls = [r["polls"] for r in results]
    delays = [r["delay"] / scale for r in results]
    return {
        "gets": sum(polls) / len(polls),
        "p50": percentile(delays, 50),
        "p95": percentile(delays, 95),
        "mean": sum(delays) / len(delays),
    }


async def issue3(url: str, n: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    out = []
    async with AilyClient(APP_ID, APP_SECRET, base_url=url, limiter=None, poll_interval=0.1) as c:
        await c.sessions.create()
        for _ in ("cold", "warm"):
            durations = [rng.uniform(0.2, 2.0) for _ in range(n)]
            t0 = asyncio.get_running_loop().time()
            results = await asyncio.gather(*(one_run(c, d, 0.0, t0) for d in durations))
            polls = [r["polls"] for r in results]
            delays = [r["delay"] for r in results]
            out.append(
                {
                    "completed": len(results),
                    "gets": sum(polls) / len(polls),
                    "p50": percentile(delays, 50),
                    "p95": percentile(delays, 95),
                    "max": max(delays),
                }
            )
    return out


async def run(args: argparse.Namespace) -> None:
    pols = policies(args.scale)
    part1: dict[str, list[dict[str, float]]] = {name: [] for name in pols}
    part2: list[list[dict[str, float]]] = []
    with Server() as server:
        for rep in range(args.reps):
            rng = random.Random(args.seed + rep)
            durations = [
                rng.lognormvariate(math.log(10.0), args.sigma) * args.scale
                for _ in range(args.runs)
            ]
            starts, t = [], 0.0
            for _ in range(args.runs):
                starts.append(t)
                t += rng.expovariate(args.rate)
            names = list(pols)
            names = names[rep % len(names) :] + names[: rep % len(names)]
            for name in names:
                s = summarize(await stream(server.url, pols[name], durations, starts), args.scale)
                part1[name].append(s)
                print(
                    f"  rep {rep + 1}/{args.reps} {name:<22} {s['gets']:5.2f} GETs/run, delay "
                    f"p50 {s['p50']:5.2f} s p95 {s['p95']:5.2f} s (real-time equivalent)",
                    flush=True,
                )
            part2.append(await issue3(server.url, args.issue3_runs, args.seed + rep))
            for label, r in zip(("cold", "warm"), part2[-1], strict=True):
                print(
                    f"  rep {rep + 1}/{args.reps} issue 3 ({label}): {r['gets']:.2f} GETs/run, "
                    f"delay p50 {r['p50'] * 1000:.0f} ms p95 {r['p95'] * 1000:.0f} ms",
                    flush=True,
                )
        stats = await server.acommand("stats")

    print(
        f"\nPart 1: {args.runs} runs per policy, log-normal durations (median 10 s, sigma "
        f"{args.sigma:g}), Poisson arrivals, time scale {args.scale:g}; delays in real-time "
        f"seconds; median of {args.reps} repetitions:\n"
    )
    rows = []
    for name, rs in part1.items():
        rows.append(
            [
                name,
                f"{median(r['gets'] for r in rs):.2f}",
                f"{median(r['p50'] for r in rs):.2f}",
                f"{median(r['p95'] for r in rs):.2f}",
                f"{median(r['mean'] for r in rs):.2f}",
            ]
        )
    print(
        md_table(["policy", "GETs per run", "delay p50, s", "delay p95, s", "delay mean, s"], rows)
    )
    print(
        f"\nPart 2 (issue 3): {args.issue3_runs} concurrent runs of 0.2–2 s, poll_interval=0.1, "
        f"median of {args.reps} repetitions:\n"
    )
    rows = []
    for i, label in enumerate(("fresh client", "same client, second batch")):
        rs = [rep[i] for rep in part2]
        rows.append(
            [
                label,
                f"{min(r['completed'] for r in rs):.0f}/{args.issue3_runs}",
                f"{median(r['gets'] for r in rs):.2f}",
                f"{median(r['p50'] for r in rs) * 1000:.0f}",
                f"{median(r['p95'] for r in rs) * 1000:.0f}",
                f"{median(r['max'] for r in rs) * 1000:.0f}",
            ]
        )
    print(
        md_table(
            [
                "batch",
                "completed",
                "GETs per run",
                "delay p50, ms",
                "delay p95, ms",
                "delay max, ms",
            ],
            rows,
        )
    )
    print(f"\nserver: {stats['routes'].get('runs.get', 0):,} get-run calls in all, no 429s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--reps", type=int, default=3, help="repetitions")
    parser.add_argument("--runs", type=int, default=200, help="runs per policy (part 1)")
    parser.add_argument("--rate", type=float, default=40.0, help="arrivals per scaled second")
    parser.add_argument("--scale", type=float, default=0.05, help="time scale (part 1)")
    parser.add_argument("--sigma", type=float, default=0.8, help="log-normal sigma")
    parser.add_argument("--issue3-runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.reps, args.runs, args.issue3_runs = 1, 60, 50
    placement = pin_client()
    header("Polling economy", args)
    print(placement)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
