"""``aily demo``: a batch of skill calls and runs against an in-process FakeAily.

The fake enforces the documented quotas as strict sliding windows, with every window scaled by
``scale`` (0.05: 100 calls per minute become 100 per 3 s), and the client gets a
:class:`Limits` scaled the same way, so the demo shows in seconds what a real batch does in
minutes: the limiter keeps the batch just under the quota, and the server never answers 429.
A few items fail on purpose (the skill rejects some rows, one run fails) to show that a failed
item is reported and the batch goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from collections import Counter
from typing import Any, TextIO

from aily_async import DOCUMENTED_QUOTAS, AilyClient, Limits, PollPolicy
from aily_async.batch import ProgressBar

from ._common import UsageError

__all__ = ["demo_command", "run_demo"]

APP_ID = "spring_aily_demo__c"
SKILL_ID = "skill_echo"
_DEMO_APP = ("cli_aily_demo", "demo-secret")
_FAILING_ROWS = (42, 142, 242)
_FAILING_RUN = 50


async def demo_command(args: argparse.Namespace) -> int:
    """``aily demo``: check the options, run the demo."""
    for name in ("skills", "runs"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name} must be >= 0")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if not args.scale > 0:
        raise UsageError("--scale must be > 0")
    return await run_demo(
        skills=args.skills,
        runs=args.runs,
        concurrency=args.concurrency,
        scale=args.scale,
        progress=args.progress,
        as_json=args.json,
    )


def _scaled(per: float, scale: float) -> str:
    seconds = per * scale
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} min"


async def run_demo(
    *,
    skills: int = 300,
    runs: int = 100,
    concurrency: int = 32,
    scale: float = 0.05,
    progress: bool = True,
    out: TextIO | None = None,
    as_json: bool = False,
) -> int:
    """Run the demo and print its summary to ``out`` (standard output); return 0. With
    ``as_json`` the summary is one JSON object (and the opening line goes to stderr)."""
    from aily_async.testing import FakeAily, FakeApiError, RunPlan, RunRequest, SkillRequest

    out = out if out is not None else sys.stdout
    rng = random.Random(7)

    async def skill_handler(request: SkillRequest) -> str:
        await asyncio.sleep(rng.uniform(0.05, 0.25))  # a skill takes a while
        row = json.loads(request.input or "{}").get("row")
        if row in _FAILING_ROWS:
            raise FakeApiError(2700001, f"param is invalid: row {row} is malformed")
        return json.dumps({"row": row, "label": "positive" if row % 3 else "neutral"})

    def run_script(request: RunRequest) -> RunPlan:
        message = request.last_user_message or ""
        if message.startswith(f"Question {_FAILING_RUN}:"):
            return RunPlan(queued=0.05, duration=0.2, outcome="FAILED")
        return RunPlan(queued=0.05, duration=rng.uniform(0.2, 0.5))

    quotas = {call: (rate, per * scale) for call, (rate, per) in DOCUMENTED_QUOTAS.items()}
    limits = Limits.scaled(scale)  # the client's quotas on the fake's time scale
    bar = ProgressBar() if progress else None
    started = time.perf_counter()
    async with FakeAily(
        credentials=dict([_DEMO_APP]),
        rate_limits=True,
        time_scale=scale,
        skill_handler=skill_handler,
        run_script=run_script,
        reset_header_precision="float",
    ) as fake:
        print(
            f"aily demo: a local FakeAily at {fake.url}; quotas scaled x{scale:g}: "
            f"skills.start and runs.create {quotas['skills.start'][0]} per "
            f"{_scaled(60.0, scale)}, other calls 1000 per {_scaled(60.0, scale)}",
            file=sys.stderr if as_json else out,
            flush=True,
        )
        async with AilyClient(
            *_DEMO_APP,
            base_url=fake.url,
            limiter=limits,
            poll=PollPolicy(interval=0.2, max_interval=1.0),
        ) as client:
            rows = [{"input": {"row": n, "text": f"review #{n}"}} for n in range(skills)]
            skill_batch = client.batch.skills(
                APP_ID, SKILL_ID, rows, concurrency=concurrency, progress=bar
            )
            t0 = time.perf_counter()
            skill_results = await skill_batch
            skill_time = time.perf_counter() - t0
            before_runs = client.stats.requests

            questions = [f"Question {n}: what changed in week {n % 52 + 1}?" for n in range(runs)]
            run_batch = client.batch.runs(APP_ID, questions, concurrency=concurrency, progress=bar)
            t1 = time.perf_counter()
            run_results = await run_batch
            run_time = time.perf_counter() - t1
            run_requests = client.stats.requests - before_runs
            stats = client.stats
            by_call = Counter(stats.by_call)
        server_429s = sum(fake.rate_limited.values())
    wall = time.perf_counter() - started

    failures = [r for r in skill_results if not r.ok] + [r for r in run_results if not r.ok]
    failed_rows = [r.index for r in skill_results if not r.ok]
    failed_runs = [r.index for r in run_results if not r.ok]
    expected = [n for n in _FAILING_ROWS if n < skills] + (
        [_FAILING_RUN] if runs > _FAILING_RUN else []
    )
    shares = {
        # Of what the windows allowed in that time: a bucket that starts full may send N at
        # once, then N in each window that began since.
        call: n / (quotas[call][0] * (math.floor(seconds / quotas[call][1]) + 1))
        for call, n, seconds in (
            ("skills.start", by_call["skills.start"], skill_time),
            ("runs.create", by_call["runs.create"], run_time),
        )
        if n and seconds > 0
    }
    # The physical limit of K calls against a strict window of N per W: ceil(K/N - 1) * W
    # (all at once, then N per window), plus round trips.
    physical = {
        call: max(0, math.ceil(k / quotas[call][0] - 1)) * quotas[call][1]
        for call, k in (("skills.start", skills), ("runs.create", runs))
    }
    if as_json:
        summary = {
            "skill_batch_seconds": round(skill_time, 3),
            "skill_batch_physical_limit_seconds": round(physical["skills.start"], 3),
            "run_batch_seconds": round(run_time, 3),
            "run_batch_physical_limit_seconds": round(physical["runs.create"], 3),
            "items": skills + runs,
            "skill_calls": skills,
            "runs": runs,
            "failed_skill_rows": failed_rows,
            "failed_runs": failed_runs,
            "errors": [str(r.error) for r in failures],
            "requests": stats.requests,
            "requests_by_call": dict(by_call.most_common()),
            "requests_per_run": round(run_requests / runs, 2) if runs else None,
            "rate_limited": stats.rate_limited,
            "server_429s": server_429s,
            "quota_utilisation": {call: round(share, 3) for call, share in shares.items()},
            "wall_seconds": round(wall, 3),
        }
        print(json.dumps(summary, ensure_ascii=False), file=out, flush=True)
        return 0
    print(file=out)
    print(f"  items: {skills + runs} ({skills} skill calls, {runs} runs)", file=out)
    why = ""
    if failures:
        parts = []
        if failed_rows:
            parts.append(f"skill rows {', '.join(map(str, failed_rows))}")
        if failed_runs:
            parts.append(f"run {', '.join(map(str, failed_runs))}")
        why = f" ({' and '.join(parts)}: failed on purpose, and the batch went on)"
        if len(failures) != len(expected):
            why = f" ({'; '.join(_first_errors(failures))})"
    print(f"  failures: {len(failures)}{why}", file=out)
    calls = ", ".join(f"{call} {n}" for call, n in by_call.most_common())
    print(f"  requests spent: {stats.requests} ({calls})", file=out)
    if runs:
        print(
            f"  requests per run: {run_requests / runs:.1f} (session, message, run, polls, answer)",
            file=out,
        )
    print(f"  429s received: {stats.rate_limited}", file=out)
    phases = {"skills.start": "skill", "runs.create": "run"}
    utilisation = [
        f"{call} {share:.0%} of what its quota windows allowed during the {phases[call]} batch"
        for call, share in shares.items()
    ]
    if utilisation:
        print(f"  quota utilisation: {'; '.join(utilisation)}", file=out)
    if skills:
        print(
            f"  skill batch: {skill_time:.1f} s; the physical limit of {skills} calls at "
            f"{quotas['skills.start'][0]} per {quotas['skills.start'][1]:g} s is "
            f"{physical['skills.start']:.1f} s plus round trips",
            file=out,
        )
    if runs:
        limit = physical["runs.create"]
        creates = (
            f"its {runs} run creates fit one window of {quotas['runs.create'][0]}, so their quota "
            "adds nothing but round trips"
            if limit == 0
            else f"the physical limit of its {runs} run creates is {limit:.1f} s plus round trips"
        )
        print(
            f"  run batch: {run_time:.1f} s; {creates}, and each run takes its own time",
            file=out,
        )
    print(f"  wall time: {wall:.1f} s", file=out)
    if stats.rate_limited or server_429s:
        print(
            f"  note: the server refused {server_429s} requests with 429; the client waited "
            "and retried them (a slow or busy machine can skew the scaled-down windows)",
            file=out,
        )
    out.flush()
    return 0


def _first_errors(failures: list[Any]) -> list[str]:
    return [f"#{r.index}: {r.error}" for r in failures[:3]]
