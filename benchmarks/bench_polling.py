"""Polling: detection delay, GETs per run and 429s of the shared and the frugal poll policies.

    python benchmarks/bench_polling.py            # full run (about 6 minutes)
    python benchmarks/bench_polling.py --quick    # smoke run (about 25 s; rough figures)

Two policies, each at 10, 50 and 300 active runs:

* ``shared``: ``PollPolicy.shared()``, the client's default. The client's pollers share
  ``share`` polls per second (80% of the ``runs.get`` quota of 1000 per minute), each polling
  every ``max(interval, active / share)`` seconds (interval 0.5 s).
* ``frugal``: ``PollPolicy.frugal()``, the adaptive backoff schedule for apps on a monthly call
  cap (``--frugal-quantile``, ``--frugal-backoff``, ``--frugal-interval`` try other values).

Durations: uniform in 2–8 s for the 10-run case, log-normal (median 10 s, sigma 0.8: p5 ≈ 2.7 s,
p95 ≈ 37 s) for the 50- and 300-run cases. Two scenarios per case, on one client per case
(its own app id, so quota windows do not carry over between cases):

* ``steady``: N workers, each with its own session, start a new run as soon as their last one
  returns, so N runs stay active. Only the runs started within a span (40 s) after a warm-up
  are measured, and the workers keep N runs active until every measured run has returned. The
  warm-up lasts 30 s (10 s for N=10) and, for the frugal policy, until 1024 runs have ended too: its
  adaptive schedule learns from the last 1024 durations it saw, and the first runs to end are
  the shortest ones.
* ``burst``: N runs created at once on the same (warm) client, all awaited; batches are
  repeated until about 60 runs are measured.

The detection delay of a run is the moment ``await handle`` returned (``time.time()`` in the
client) minus the run's ``ended_at`` as the server reports it (same clock, 1 ms resolution).
Two ratios: delay ÷ duration, and delay ÷ age, the run's age when it was noticed (duration plus
delay): the frugal target ("detection within 50% of the run's age") is read as the latter,
which a schedule whose poll ages double meets by construction; the former is printed too.

Time runs in REAL time, SCALED: durations, the policies' ``interval``, ``max_interval`` and
``max_outage``, their ``share`` (divided), the ``runs.get`` quota windows of both the fake and
the client's limiter, and the limiter's ramp (``confirm_after``) are multiplied by ``--scale``
(default 0.1: a 10 s run lasts 1 s); the figures are converted back to
unscaled seconds. What is not scaled: the client's own latency (a GET's round trip, timer
lateness), which the conversion magnifies by 1/scale (the script measures and prints it), and
retry back-off after a 429. The server's movable clock (``advance``) is not used: it moves the
server's clock only, not the client's timers.

The fake (in a child process) enforces a strict sliding window on ``runs.get`` only: the
documented 1000 per minute and 50 per second, time-scaled. The client runs with its default
per-call limiter, scaled the same way, except that ``runs.create`` is unthrottled: its real quota
(100 per minute) could not keep 300 runs of about 14 s active. ``--minute-window-only`` drops
the fake's 50-per-second window; ``--limiter-margin`` sets the buckets' safety margin (real
seconds). ``--sizes``, ``--policies`` and ``--scenarios`` (comma-separated) pick the cases.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
from collections.abc import Callable
from typing import Any

import attrs
from _common import AILY_APP, APP_SECRET, Server, header, median, percentile, pin_client, table

from aily_async import AilyClient, Limits, PollPolicy, RateLimiter, RunStatus, TokenBucket

#: The documented quota of ``runs.get`` (every call but runs.create and skills.start).
GET_QUOTA = ((1000, 60.0), (50, 1.0))
UNTHROTTLED = (10**9, 60.0)
SIZES = (10, 50, 300)
POLICIES = ("shared", "frugal")
SCENARIOS = ("steady", "burst")

Dist = Callable[[random.Random], float]


# -- set-up ----------------------------------------------------------------------------------


def scaled_policy(policy: PollPolicy, scale: float) -> PollPolicy:
    """``policy`` with every time in it multiplied by ``scale`` (its ``share`` divided)."""
    return attrs.evolve(
        policy,
        interval=policy.interval * scale,
        max_interval=policy.max_interval * scale,
        max_outage=policy.max_outage * scale,
        share=None if policy.share is None else policy.share / scale,
    )


def frugal_policy(args: argparse.Namespace) -> PollPolicy:
    """``PollPolicy.frugal()``, with the values given on the command line."""
    base = PollPolicy.frugal()
    changes: dict[str, Any] = {}
    if args.frugal_quantile is not None:
        changes["quantile"] = args.frugal_quantile
    if args.frugal_backoff is not None:
        changes["backoff"] = args.frugal_backoff
    if args.frugal_interval is not None:
        changes["interval"] = args.frugal_interval
    return attrs.evolve(base, **changes)


def frugal_label(args: argparse.Namespace) -> str:
    """``frugal``, with the values changed on the command line."""
    changed = [
        f"{key} {value:g}"
        for key, value in (
            ("quantile", args.frugal_quantile),
            ("backoff", args.frugal_backoff),
            ("interval", args.frugal_interval),
        )
        if value is not None
    ]
    return f"frugal ({', '.join(changed)})" if changed else "frugal"


def describe(policy: PollPolicy) -> str:
    if policy.share is not None:
        return (
            f"share {policy.share:.2f}/s, interval {policy.interval:g} s, jitter {policy.jitter:g}"
        )
    return (
        f"interval {policy.interval:g} s, backoff {policy.backoff:g}, max_interval "
        f"{policy.max_interval:g} s, jitter {policy.jitter:g}, adaptive {policy.adaptive} "
        f"(quantile {policy.quantile:g}, min_samples {policy.min_samples})"
    )


def client_limits(scale: float, margin: float | None) -> Limits:
    """The client's default per-call limits, time-scaled, with runs.create unthrottled. The
    buckets' ramp confirms a grant by silence after ``confirm_after`` (1 s): scaled too.
    ``margin``: real seconds of every window's safety margin (None: the default, 2% of each
    scaled window)."""

    def bucket(call: str, windows: tuple[tuple[int, float], ...]) -> RateLimiter:
        (rate, per), *also = windows
        return TokenBucket(
            rate, per, also=also, margin=margin, confirm_after=1.0 * scale, name=call
        )

    return Limits.scaled(scale, {"runs.create": UNTHROTTLED}, factory=bucket)


def distribution(n: int, sigma: float) -> tuple[str, Dist]:
    if n <= 10:
        return "uniform 2–8 s", lambda rng: rng.uniform(2.0, 8.0)
    return (
        f"log-normal, median 10 s, sigma {sigma:g}",
        lambda rng: rng.lognormvariate(math.log(10.0), sigma),
    )


# -- one run ---------------------------------------------------------------------------------


async def one_run(
    client: AilyClient, session_id: str, duration: float, scale: float
) -> dict[str, float]:
    """Create a run that works ``duration`` (unscaled) seconds and await it."""
    handle = await client.runs.create(
        session_id, app_id=AILY_APP, metadata={"duration": round(duration * scale, 4)}
    )
    run = await handle
    returned = time.time()
    if run.status != RunStatus.COMPLETED or run.ended_at is None:
        raise RuntimeError(f"unexpected final run {run!r}")
    delay = (returned - run.ended_at / 1000) / scale
    return {
        "polls": handle.polls,
        "delay": delay,
        "duration": duration,
        "ratio": delay / duration,
        "age_ratio": delay / (duration + delay),
    }


# -- scenarios -------------------------------------------------------------------------------


async def steady(
    server: Server,
    client: AilyClient,
    n: int,
    dist: Dist,
    args: argparse.Namespace,
    warm: float,
    warm_runs: int,
) -> dict[str, Any]:
    """N runs kept active. The measured span (``args.span`` unscaled seconds) opens once
    ``warm`` seconds have passed and ``warm_runs`` runs have ended; the runs started in it are
    measured. The runs.get rate is counted from its start until the last measured run returned
    (N runs stay active all that time)."""
    loop = asyncio.get_running_loop()
    scale = args.scale
    t0 = loop.time()
    span = args.span * scale
    lo = hi = math.inf
    records: list[dict[str, float]] = []
    state = {"outstanding": 0, "started": 0, "ended": 0, "errors": 0}
    finished: asyncio.Future[None] = loop.create_future()
    mark: asyncio.Future[int] | None = None
    stagger = min(args.stagger, warm)

    async def gets() -> int:
        stats = await server.acommand("stats")
        return int(stats["routes"].get("runs.get", 0))

    def check() -> None:
        nonlocal lo, hi, mark
        now = loop.time()
        if lo == math.inf and now >= t0 + warm * scale and state["ended"] >= warm_runs:
            lo, hi = now, now + span
            mark = loop.create_task(gets())
            loop.call_at(hi, check)
        if now >= hi and state["outstanding"] == 0 and not finished.done():
            finished.set_result(None)

    async def worker(i: int) -> None:
        rng = random.Random(f"{args.seed}:steady:{n}:{i}")
        await asyncio.sleep(rng.uniform(0.0, stagger) * scale)
        session = await client.sessions.create()
        while True:
            duration = dist(rng)
            measured = lo <= loop.time() < hi
            state["outstanding"] += measured
            state["started"] += measured
            try:
                record = await one_run(client, session.id, duration, scale)
                state["ended"] += 1
                if measured:
                    records.append(record)
            except Exception as exc:  # counted, reported; the worker goes on
                state["errors"] += 1
                print(f"    error: {exc!r}", flush=True)
                await asyncio.sleep(scale)
            finally:
                if measured:
                    state["outstanding"] -= 1
                check()

    tasks = [loop.create_task(worker(i)) for i in range(n)]
    loop.call_at(t0 + warm * scale, check)
    try:
        await asyncio.wait_for(finished, timeout=args.give_up * scale)
    except TimeoutError:
        print("    gave up: some measured runs were never detected", flush=True)
    end = loop.time()
    at_end = await gets()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    rate = math.nan
    if mark is not None:
        rate = (at_end - await mark) / max(end - lo, 1e-9) * scale * 60
    return {
        "records": records,
        "started": state["started"],
        "errors": state["errors"],
        "rate": rate,
        "warm": (lo - t0) / scale,
    }


async def burst(
    client: AilyClient, n: int, dist: Dist, args: argparse.Namespace, batches: int
) -> dict[str, Any]:
    """``batches`` times: N runs created at once and awaited."""
    loop = asyncio.get_running_loop()
    records: list[dict[str, float]] = []
    started = errors = 0
    busy = 0.0
    for b in range(batches):
        rng = random.Random(f"{args.seed}:burst:{n}:{b}")
        durations = [dist(rng) for _ in range(n)]
        sessions = await asyncio.gather(*(client.sessions.create() for _ in range(n)))
        t0 = loop.time()
        runs = zip(sessions, durations, strict=True)
        results = await asyncio.gather(
            *(one_run(client, s.id, d, args.scale) for s, d in runs),
            return_exceptions=True,
        )
        busy += loop.time() - t0
        started += n
        for r in results:
            if isinstance(r, BaseException):
                errors += 1
                print(f"    error: {r!r}", flush=True)
            else:
                records.append(r)
    return {"records": records, "started": started, "errors": errors, "busy": busy / args.scale}


# -- a case ----------------------------------------------------------------------------------


def summarize(result: dict[str, Any], gets: int, limited: int) -> dict[str, Any]:
    rs = result["records"]
    delays = [r["delay"] for r in rs]
    p50 = percentile(delays, 50)
    return {
        "started": result["started"],
        "detected": len(rs),
        "errors": result["errors"],
        "gets": sum(r["polls"] for r in rs) / len(rs) if rs else math.nan,
        "p50": p50,
        "p95": percentile(delays, 95),
        "max": max(delays, default=math.nan),
        "max_p50": max(delays) / p50 if rs and p50 > 0 else math.nan,
        "ratio_p95": percentile([r["ratio"] for r in rs], 95),
        "age_p95": percentile([r["age_ratio"] for r in rs], 95),
        "rate": result["rate"] if "rate" in result else gets / result["busy"] * 60,
        "limited": limited,
    }


async def case(
    server: Server, name: str, label: str, policy: PollPolicy, n: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    shape, dist = distribution(n, args.sigma)
    out = []
    async with AilyClient(
        f"cli_poll_{name}_{n}",
        APP_SECRET,
        base_url=server.url,
        limiter=client_limits(args.scale, args.limiter_margin),
        poll=scaled_policy(policy, args.scale),
    ) as client:
        await client.sessions.create()  # token and connection first
        for scenario in args.scenarios:
            await server.acommand("reset")
            began = time.perf_counter()
            if scenario == "steady":
                warm = args.warm_short if n <= 10 else args.warm
                # An adaptive policy learns from the last 1024 durations it saw end; the first
                # to end are the shortest, so it is measured once they have been replaced.
                warm_runs = args.warm_runs if policy.share is None and policy.adaptive else 0
                result = await steady(server, client, n, dist, args, warm, warm_runs)
            else:
                batches = max(1, round(args.burst_runs / n))
                result = await burst(client, n, dist, args, batches)
            stats = await server.acommand("stats")
            s = summarize(
                result,
                stats["routes"].get("runs.get", 0),
                stats["rate_limited"].get("runs.get", 0),
            )
            warmed = result.get("warm")
            s.update(
                kind=name,
                policy=label,
                scenario=scenario,
                n=n,
                durations=shape,
                warm_note="" if warmed is None else f", warm-up {warmed:.0f} s",
            )
            out.append(s)
            print(
                f"  {label:<6} {scenario:<6} N={n:<3} {s['detected']}/{s['started']} detected, "
                f"{s['gets']:.2f} GETs/run, delay p50 {s['p50']:.2f} p95 {s['p95']:.2f} max "
                f"{s['max']:.2f} s, p95 delay/duration {s['ratio_p95']:.2f}, p95 delay/age "
                f"{s['age_p95']:.2f}, "
                f"{s['rate']:.0f} GETs/min, {s['limited']} 429s{s['warm_note']} "
                f"({time.perf_counter() - began:.1f} s real)",
                flush=True,
            )
    return out


async def round_trip(server: Server, scale: float) -> float:
    """Median real seconds of a runs.get on an idle client (what 1/scale magnifies)."""
    async with AilyClient("cli_poll_rtt", APP_SECRET, base_url=server.url, limiter=None) as c:
        session = await c.sessions.create()
        handle = await c.runs.create(session.id, app_id=AILY_APP, metadata={"duration": 0.001})
        await handle
        times = []
        for _ in range(40):
            began = time.perf_counter()
            await c.runs.get(session.id, handle.id)
            times.append(time.perf_counter() - began)
    return median(times)


# -- output ----------------------------------------------------------------------------------


def fmt(x: float, digits: int = 2) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def results_table(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            "policy",
            "scenario",
            "active runs",
            "durations",
            "detected",
            "GETs per run",
            "delay p50, s",
            "p95, s",
            "max, s",
            "max ÷ p50",
            "p95 delay ÷ duration",
            "p95 delay ÷ age",
            "runs.get per min",
            "429s",
        ],
        [
            [
                r["policy"],
                r["scenario"],
                r["n"],
                r["durations"],
                f"{r['detected']}/{r['started']}",
                fmt(r["gets"]),
                fmt(r["p50"]),
                fmt(r["p95"]),
                fmt(r["max"]),
                fmt(r["max_p50"], 1) + "×",
                fmt(r["ratio_p95"]),
                fmt(r["age_p95"]),
                fmt(r["rate"], 0),
                r["limited"],
            ]
            for r in rows
        ],
    )


def targets(rows: list[dict[str, Any]]) -> list[str]:
    lines = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    for r in rows:
        where = f"{r['scenario']}, {r['detected']}/{r['started']} runs"
        if r["kind"] == "shared" and r["n"] == 10:
            ok = r["p95"] <= 1.0 and r["detected"] == r["started"]
            lines.append(
                f"shared, 10 runs of 2–8 s detected within 1 s (p95) [{where}]: p95 "
                f"{r['p95']:.2f} s -> {verdict(ok)}"
            )
        elif r["kind"] == "shared" and r["n"] == 300:
            ok = (
                r["detected"] == r["started"]
                and r["errors"] == 0
                and r["limited"] == 0
                and r["max_p50"] <= 3.0
            )
            lines.append(
                f"shared, 300 runs all detected, zero 429s, max delay ≤ 3× median [{where}]: "
                f"{r['errors']} errors, {r['limited']} 429s, max/median {r['max_p50']:.2f} -> "
                f"{verdict(ok)}"
            )
        elif r["kind"] == "frugal" and r["n"] > 10:
            ok = r["gets"] <= 3.0 and r["age_p95"] <= 0.5
            lines.append(
                f"{r['policy']}, N={r['n']}, ≤ 3 GETs per run and p95 delay ÷ age when noticed "
                f"≤ 0.5 [{where}]: {r['gets']:.2f} GETs, {r['age_p95']:.2f} (delay ÷ duration "
                f"{r['ratio_p95']:.2f}) -> {verdict(ok)}"
                + (
                    f" (runs.get at {r['rate']:.0f}/min: the quota binds, polls queue)"
                    if r["rate"] >= 950
                    else ""
                )
            )
    return lines


async def run(args: argparse.Namespace) -> None:
    policies = {"shared": PollPolicy.shared(), "frugal": frugal_policy(args)}
    labels = {"shared": "shared", "frugal": frugal_label(args)}
    rows: list[dict[str, Any]] = []
    quota = GET_QUOTA[:1] if args.minute_window_only else GET_QUOTA
    windows = [[rate, per * args.scale] for rate, per in quota]
    with Server(rate_limits={"runs.get": windows}) as server:
        rtt = await round_trip(server, args.scale)
        print(
            f"time: real time scaled ×{args.scale:g} (a 10 s run lasts {10 * args.scale:g} s); "
            f"all figures in unscaled seconds.\nclient latency: median runs.get round trip "
            f"{rtt * 1000:.1f} ms real, i.e. {rtt / args.scale:.3f} s unscaled added to every "
            f"delay.\nfake: strict runs.get windows {windows} (the documented "
            f"{'1000/min' if args.minute_window_only else '1000/min and 50/s'}, scaled); client: "
            f"default per-call limits scaled (1000/min and 50/s), runs.create unthrottled."
        )
        for name in args.policies:
            print(f"{labels[name]}: {describe(policies[name])} (unscaled)")
        print(flush=True)
        for n in args.sizes:
            for name in args.policies:
                rows.extend(await case(server, name, labels[name], policies[name], n, args))
    print(
        f"\nSteady: N runs kept active, runs started within {args.span:g} s after a warm-up "
        f"(≥ {args.warm:g} s, {args.warm_short:g} s for N=10; frugal: until {args.warm_runs} "
        f"runs have ended) measured; burst: N runs "
        f"at once, batches up to about {args.burst_runs} runs. Seconds unscaled, time scale "
        f"{args.scale:g}; runs.get per min from the span's start to the last measured run's "
        f"return (steady) or over the batches "
        f"(burst), quota 1000, shared budget "
        f"{(PollPolicy.shared().share or 0) * 60:.0f}); 429s from the fake's strict runs.get "
        "window.\n"
    )
    print(results_table(rows))
    print()
    for line in targets(rows):
        print(line)


def parse_list(kind: Callable[[str], Any], allowed: tuple[Any, ...] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        values = [kind(v) for v in text.split(",") if v]
        if allowed is not None and not set(values) <= set(allowed):
            raise argparse.ArgumentTypeError(f"choose from {allowed}")
        return values

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--scale", type=float, default=0.1, help="time scale (real ÷ unscaled)")
    parser.add_argument("--sizes", type=parse_list(int), default=list(SIZES))
    parser.add_argument("--policies", type=parse_list(str, POLICIES), default=list(POLICIES))
    parser.add_argument("--scenarios", type=parse_list(str, SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--warm", type=float, default=30.0, help="steady warm-up, s (unscaled)")
    parser.add_argument("--warm-short", type=float, default=10.0, help="warm-up for N=10, s")
    parser.add_argument("--span", type=float, default=40.0, help="steady: starts measured, s")
    parser.add_argument("--stagger", type=float, default=10.0, help="steady: workers' start, s")
    parser.add_argument(
        "--warm-runs", type=int, default=1024, help="steady, adaptive policy: runs ended first"
    )
    parser.add_argument("--give-up", type=float, default=1200.0, help="steady: time limit, s")
    parser.add_argument("--burst-runs", type=int, default=60, help="burst: runs measured")
    parser.add_argument("--sigma", type=float, default=0.8, help="log-normal sigma")
    parser.add_argument("--frugal-quantile", type=float, default=None)
    parser.add_argument("--frugal-backoff", type=float, default=None)
    parser.add_argument("--frugal-interval", type=float, default=None, help="s (unscaled)")
    parser.add_argument(
        "--limiter-margin", type=float, default=None, help="real s (default: 2%% of each window)"
    )
    parser.add_argument(
        "--minute-window-only", action="store_true", help="the fake drops its 50/s window"
    )
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.scale, args.warm, args.warm_short, args.span, args.burst_runs = 0.03, 10, 5, 10, 20
        args.warm_runs = 64
        args.sizes = [n for n in args.sizes if n <= 50]
    placement = pin_client()
    header("Polling: shared budget vs frugal schedule", args)
    print(placement)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
