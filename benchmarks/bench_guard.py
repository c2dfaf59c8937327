"""Restructure guard: the package before and after, measured in the same run.

    git worktree add ../aily-before ff1bf59                  # the tree to compare against
    python benchmarks/bench_guard.py                         # full run (about 2.5 minutes)
    python benchmarks/bench_guard.py --quick                 # smoke run
    python benchmarks/bench_guard.py --before PATH           # another old tree

Two trees are compared: ``--before`` (a checkout whose ``aily_async`` package is the old code,
by default ``../aily-before`` beside this checkout) and this checkout (the after tree). Every
measurement runs in a child process of this script with ``PYTHONPATH`` set to one tree, so the
child imports that tree's ``aily_async`` (the child checks, and reports the file it imported).
The benchmark code is this checkout's in both cases, so both trees are measured by the same
code.

For each of ``--reps`` repetitions, and for each measurement, the two trees run back to back,
in alternating order (before first in odd repetitions, after first in even ones):

* ``memory``: bytes per pending RunHandle, ``bench_fanout.rep`` with tracemalloc on (a smaller
  fan-out than bench_fanout's 10,000 handles), less the caller's own awaiting task;
* ``cpu``: client CPU per get-run call of ``aily_async+limiter`` (limiter on, never binding) as
  a ratio to raw aiohttp measured in the same child, interleaved (``bench_overhead``);
* ``acquire``: uncontended ``await TokenBucket.acquire()`` against aiolimiter's, in ns, in the
  same child (``bench_limiter.acquire_cost``).

The FakeAily server of each child is, by default, the before tree's for both trees
(``--server-tree``): the server is held fixed so that only the client differs, and the before
tree is a fixed commit while the after tree may be under edit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    HERE,
    SERVER_PATH_VAR,
    header,
    load,
    median,
    pin_client,
    table,
)

AFTER = HERE.parent
MEASURES = ("acquire", "cpu", "memory")
HANDLE_TARGET = 4096  # bytes: pending handle ≤ 4 KiB
CPU_TARGET = 1.3  # × raw aiohttp


# -- children: one measurement each, against whichever aily_async PYTHONPATH names ----------


def _imported() -> str:
    import aily_async

    return str(Path(aily_async.__file__).resolve().parent)


def child_memory(opts: dict[str, Any]) -> dict[str, Any]:
    import bench_fanout
    from _common import Server

    args = argparse.Namespace(
        handles=opts["handles"],
        concurrency=64,
        poll_rate=1000,
        settle=opts["settle"],
        pending=0.5,
        timeout=120.0,
    )

    async def main() -> dict[str, Any]:
        with Server(duration=bench_fanout.HOLD) as server:
            return await bench_fanout.rep(server, args, traced=True)

    r = asyncio.run(main())
    return {
        "own_b": r["pending_b"] - r["floor_b"],
        "pending_b": r["pending_b"],
        "floor_b": r["floor_b"],
        "rest_b": r["rest_b"],
        "handles": r["n"],
        "completed": r["completed"],
        "errors": r["errors"],
        "leftover": r["leftover"],
    }


def child_cpu(opts: dict[str, Any]) -> dict[str, Any]:
    import bench_overhead
    from _common import Server

    ours, base = "aily_async+limiter", "aiohttp"
    args = argparse.Namespace(
        clients=[base, ours],
        reps=opts["inner"],
        requests=opts["requests"],
        lark_requests=0,
        concurrency=32,
    )
    with Server() as server:
        sid, rid = asyncio.run(bench_overhead.setup_run(server.url))
        with contextlib.redirect_stdout(sys.stderr):  # its progress lines
            results = asyncio.run(bench_overhead.measure_all(args, server.url, sid, rid))
    pairs = zip(results[ours]["cpu"], results[base]["cpu"], strict=True)
    return {
        "ratio": median(a / b for a, b in pairs),
        "ours_cpu": median(results[ours]["cpu"]),
        "base_cpu": median(results[base]["cpu"]),
        "base_cpu_all": results[base]["cpu"],
    }


def child_acquire(opts: dict[str, Any]) -> dict[str, Any]:
    import bench_limiter

    costs = asyncio.run(bench_limiter.acquire_cost(opts["acquires"], opts["inner"]))
    pairs = zip(costs["TokenBucket"], costs["aiolimiter.AsyncLimiter"], strict=True)
    return {
        "ratio": median(a / b for a, b in pairs),
        "ours_ns": median(costs["TokenBucket"]),
        "theirs_ns": median(costs["aiolimiter.AsyncLimiter"]),
        "empty_ns": median(costs["(empty coroutine)"]),
    }


CHILDREN = {"memory": child_memory, "cpu": child_cpu, "acquire": child_acquire}


def child(measure: str, opts: dict[str, Any]) -> None:
    pin_client()
    started = load()
    t0 = time.perf_counter()
    result = CHILDREN[measure](opts)
    result.update(
        imported=_imported(), seconds=time.perf_counter() - t0, load=f"{started} -> {load()}"
    )
    print(json.dumps(result))


# -- the parent: alternate the trees, collect, compare ---------------------------------------


def run_child(
    measure: str, tree: Path, server_tree: Path | None, opts: dict[str, Any]
) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    env[SERVER_PATH_VAR] = str(server_tree if server_tree is not None else tree)
    proc = subprocess.run(
        [sys.executable, str(HERE / "bench_guard.py"), "--child", measure, json.dumps(opts)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr)
        raise RuntimeError(f"the {measure} child for {tree} failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(lines[-1])
    if Path(result["imported"]) != (tree / "aily_async").resolve():
        raise RuntimeError(f"the child for {tree} imported {result['imported']}")
    return result


def options(args: argparse.Namespace, measure: str) -> dict[str, Any]:
    if measure == "memory":
        return {"handles": args.handles, "settle": args.settle}
    if measure == "cpu":
        return {"requests": args.requests, "inner": args.inner}
    return {"acquires": args.acquires, "inner": args.inner}


def describe(measure: str, r: dict[str, Any]) -> str:
    if measure == "memory":
        return (
            f"{r['own_b']:.0f} B/pending handle ({r['pending_b']:.0f} B with the awaiting task), "
            f"{r['completed']}/{r['handles']} completed, {r['errors']} errors, "
            f"{r['leftover']} tasks left"
        )
    if measure == "cpu":
        return (
            f"{r['ratio']:.2f}× raw aiohttp ({r['ours_cpu']:.3f} vs {r['base_cpu']:.3f} "
            f"CPU s/1k req)"
        )
    return (
        f"TokenBucket {r['ours_ns']:.0f} ns, aiolimiter {r['theirs_ns']:.0f} ns "
        f"({r['ratio']:.2f}×), empty await {r['empty_ns']:.0f} ns"
    )


def spread(values: list[float], fmt: str) -> str:
    """Median, with the range over the repetitions when there is more than one."""
    mid = fmt.format(median(values))
    if len(values) < 2:
        return mid
    return f"{mid} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def report(args: argparse.Namespace, res: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    def vals(tree: str, measure: str, key: str) -> list[float]:
        return [r[key] for r in res[tree][measure]]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    own_b, own_a = vals("before", "memory", "own_b"), vals("after", "memory", "own_b")
    cpu_b, cpu_a = vals("before", "cpu", "ratio"), vals("after", "cpu", "ratio")
    acq_b, acq_a = vals("before", "acquire", "ratio"), vals("after", "acquire", "ratio")
    rows = [
        [
            f"pending RunHandle, B (handle + its poll task; {args.handles:,} pending)",
            spread(own_b, "{:,.0f}"),
            spread(own_a, "{:,.0f}"),
            "≤ 4 KiB (4,096 B)",
            verdict(median(own_a) <= HANDLE_TARGET),
        ],
        [
            "the same with the caller's awaiting task, B",
            spread(vals("before", "memory", "pending_b"), "{:,.0f}"),
            spread(vals("after", "memory", "pending_b"), "{:,.0f}"),
            "-",
            "reported",
        ],
        [
            "CPU per get-run, aily_async+limiter ÷ raw aiohttp",
            spread(cpu_b, "{:.2f}×"),
            spread(cpu_a, "{:.2f}×"),
            f"≤ {CPU_TARGET:.1f}×",
            verdict(median(cpu_a) <= CPU_TARGET),
        ],
        [
            "raw aiohttp CPU s / 1,000 req (the floor, same children)",
            spread(vals("before", "cpu", "base_cpu"), "{:.3f}"),
            spread(vals("after", "cpu", "base_cpu"), "{:.3f}"),
            "-",
            "reported",
        ],
        [
            "uncontended acquire, TokenBucket ÷ aiolimiter",
            spread(acq_b, "{:.2f}×"),
            spread(acq_a, "{:.2f}×"),
            "≤ 1.00×",
            verdict(median(acq_a) <= 1.0),
        ],
        [
            "uncontended acquire, TokenBucket / aiolimiter / empty await, ns",
            " / ".join(
                f"{median(vals('before', 'acquire', k)):.0f}"
                for k in ("ours_ns", "theirs_ns", "empty_ns")
            ),
            " / ".join(
                f"{median(vals('after', 'acquire', k)):.0f}"
                for k in ("ours_ns", "theirs_ns", "empty_ns")
            ),
            "-",
            "reported",
        ],
    ]
    print(
        f"\nMedian of {args.reps} alternating repetitions, range in brackets; the verdict is the "
        f"after tree's median against the target:\n"
    )
    print(table(["metric", "before (median)", "after (median)", "target", "after"], rows))
    print()
    for name, before, after in (
        ("pending handle", own_b, own_a),
        ("CPU ratio", cpu_b, cpu_a),
        ("acquire ratio", acq_b, acq_a),
    ):
        paired = [a / b for a, b in zip(after, before, strict=True)]
        print(
            f"after ÷ before, {name}, per repetition: "
            + ", ".join(f"{p:.2f}×" for p in paired)
            + f" (median {median(paired):.2f}×)"
        )
    missed_before = [
        name
        for name, ok in (
            ("pending handle", median(own_b) <= HANDLE_TARGET),
            ("CPU", median(cpu_b) <= CPU_TARGET),
            ("acquire", median(acq_b) <= 1.0),
        )
        if not ok
    ]
    if missed_before:
        print(f"before tree missed too: {', '.join(missed_before)}")
    bad = [
        (tree, r)
        for tree in ("before", "after")
        for r in res[tree]["memory"]
        if r["completed"] != r["handles"] or r["errors"] or r["leftover"]
    ]
    print(
        "fan-out check: every handle completed, no errors, no task left behind"
        if not bad
        else f"fan-out check FAILED: {bad}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions")
    parser.add_argument(
        "--before", type=Path, default=AFTER.parent / "aily-before", help="old tree"
    )
    parser.add_argument(
        "--server-tree",
        choices=("before", "after", "own"),
        default="before",
        help="whose FakeAily serves the children (own: each tree its own)",
    )
    parser.add_argument("--handles", type=int, default=3000, help="pending handles (memory)")
    parser.add_argument("--settle", type=float, default=1.5, help="seconds before measuring")
    parser.add_argument("--requests", type=int, default=3000, help="calls per CPU measurement")
    parser.add_argument("--acquires", type=int, default=200_000, help="acquires per timing")
    parser.add_argument("--inner", type=int, default=3, help="paired timings per child")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], json.loads(args.child[1]))
        return
    if args.quick:
        args.reps, args.handles, args.settle = 1, 500, 0.6
        args.requests, args.acquires, args.inner = 500, 20_000, 2
    trees = {"before": args.before.resolve(), "after": AFTER}
    if not (trees["before"] / "aily_async" / "__init__.py").is_file():
        parser.error(f"no aily_async package in {trees['before']}")
    server = None if args.server_tree == "own" else trees[args.server_tree]
    header("Restructure guard: before and after in one run", args)
    print(f"before: {trees['before']}   after: {trees['after']}   server: {args.server_tree}")
    res: dict[str, dict[str, list[dict[str, Any]]]] = {
        tree: {m: [] for m in MEASURES} for tree in trees
    }
    t0 = time.perf_counter()
    for rep in range(args.reps):
        order = ["before", "after"] if rep % 2 == 0 else ["after", "before"]
        for measure in MEASURES:
            for tree in order:
                r = run_child(measure, trees[tree], server, options(args, measure))
                res[tree][measure].append(r)
                print(
                    f"  rep {rep + 1}/{args.reps} {measure:<7} {tree:<6} {describe(measure, r)}"
                    f" [{r['seconds']:.1f} s, load {r['load']}]",
                    flush=True,
                )
    print(f"\n{time.perf_counter() - t0:.0f} s of measurement")
    report(args, res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
