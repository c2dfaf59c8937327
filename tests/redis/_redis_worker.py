"""One worker process of tests/redis/test_redis_processes.py: calls on a shared quota.

Run as ``python tests/redis/_redis_worker.py --fake URL --redis URL ...``. It warms up (token,
connections), prints ``ready``, waits for a line on stdin so that all workers start together,
makes ``--requests`` calls with ``--concurrency`` tasks through a Redis-backed limiter, and
prints one JSON line: ``{"name", "ok", "errors", "rate_limited"}``. ``--skew S`` shifts this
process's clocks (``time.time`` and ``time.monotonic``, so the event loop's too) by ``S``
seconds, as a machine whose clock is off would be.
"""

from __future__ import annotations

import argparse
import sys
import time


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fake", required=True, help="FakeAily base URL")
    parser.add_argument("--redis", required=True, help="redis:// URL")
    parser.add_argument("--name", required=True, help="sent as X-Aily-BizUserID")
    parser.add_argument("--app-id", default="cli_shared")
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--per", type=float, required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--mode", choices=["limits", "bucket"], default="limits")
    parser.add_argument("--skew", type=float, default=0.0)
    return parser.parse_args(argv)


def _skew_clocks(seconds: float) -> None:
    real_time, real_monotonic = time.time, time.monotonic
    time.time = lambda: real_time() + seconds
    time.monotonic = lambda: real_monotonic() + seconds


ARGS = _parse(sys.argv[1:])
if ARGS.skew:
    _skew_clocks(ARGS.skew)  # before anything reads a clock

import asyncio  # noqa: E402
import json  # noqa: E402
from typing import Any  # noqa: E402

from aily_async import AilyClient, AilyError, AilyRateLimitError  # noqa: E402
from aily_async.redis import RedisLimits, RedisTokenBucket  # noqa: E402

AILY_APP = "spring_449d72db2f__c"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    limiter: Any
    if args.mode == "limits":
        limiter = RedisLimits(
            args.redis, app_id=args.app_id, quotas={"skills.start": (args.rate, args.per)}
        )
    else:
        limiter = RedisTokenBucket(
            args.redis, f"test:{args.app_id}:skills.start", args.rate, args.per
        )
    ok = rate_limited = 0
    errors: list[str] = []
    try:
        async with AilyClient(
            args.app_id,
            "secret",
            base_url=args.fake,
            limiter=limiter if args.mode == "limits" else None,
            biz_user_id=args.name,
        ) as client:
            await client.skills.get(AILY_APP, "skill_echo")  # token and a warm connection
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            left = args.requests

            async def one_task() -> None:
                nonlocal left, ok, rate_limited
                while left > 0:
                    left -= 1
                    if args.mode == "bucket":
                        await limiter.acquire()
                    try:
                        await client.skills.start(AILY_APP, "skill_echo", input="{}")
                        ok += 1
                    except AilyRateLimitError as exc:
                        rate_limited += 1
                        errors.append(str(exc))
                    except AilyError as exc:
                        errors.append(str(exc))

            await asyncio.gather(*(one_task() for _ in range(args.concurrency)))
    finally:
        await limiter.aclose()
    return {"name": args.name, "ok": ok, "errors": errors, "rate_limited": rate_limited}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(ARGS))), flush=True)
