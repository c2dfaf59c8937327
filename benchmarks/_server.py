"""A benchmark server: :class:`FakeAily` in its own process, steered over stdin.

Started by :class:`_common.Server` (not meant to be run by hand)::

    python benchmarks/_server.py '{"rate_limits": {"runs.get": [[60, 3.0]]}}'

It prints ``READY <url>`` once listening, then answers one JSON line on stdout for each JSON
command line read on stdin:

* ``{"cmd": "stats"}``: requests per route, 429s per route, token fetches;
* ``{"cmd": "reset"}``: clear the request log (it grows with every request);
* ``{"cmd": "advance", "seconds": S}``: move the server's clock forward, which ends every run
  that has less than ``S`` seconds left ("runs that never end until told");
* ``{"cmd": "quit"}``.

Options (a JSON object as the only argument), all optional:

* ``rate_limits``: FakeAily's ``rate_limits`` mapping, ``{route: [[limit, window_s], ...]}``;
* ``reset_precision``: ``"int"`` or ``"float"`` (how ``x-ogw-ratelimit-reset`` is written);
* ``duration``: seconds a run works when its create call does not say (default 0.05);
* ``queued``: seconds a run stays QUEUED first (default 0).

A run's duration can be chosen per run by the client: create it with ``metadata`` holding
``{"duration": seconds}``. The server's clock is ``time.time()`` (plus any advance), so a run's
``ended_at`` can be compared with the client's ``time.time()`` directly.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from aily_async.testing import FakeAily, RunPlan, RunRequest


class _Clock:
    """Wall-clock seconds plus an offset that the ``advance`` command grows."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _run_script(default: float, queued: float) -> Any:
    plans: dict[float, RunPlan] = {}

    def plan(request: RunRequest) -> RunPlan:
        duration = default
        if request.metadata:
            try:
                meta = json.loads(request.metadata)
            except ValueError:
                meta = None
            if isinstance(meta, dict) and isinstance(meta.get("duration"), int | float):
                duration = float(meta["duration"])
        found = plans.get(duration)
        if found is None:
            found = RunPlan(queued=queued, duration=duration, answer="ok")
            if len(plans) < 1000:
                plans[duration] = found
        return found

    return plan


async def _serve(options: dict[str, Any]) -> None:
    clock = _Clock()
    limits = options.get("rate_limits") or False
    if limits:
        limits = {route: [tuple(w) for w in windows] for route, windows in limits.items()}
    script = _run_script(float(options.get("duration", 0.05)), float(options.get("queued", 0)))
    fake = FakeAily(
        rate_limits=limits,
        run_script=script,
        clock=clock,
        reset_header_precision=options.get("reset_precision", "float"),
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with fake:
        print(f"READY {fake.url}", flush=True)
        while True:
            line = await reader.readline()
            if not line:
                return
            command = json.loads(line)
            cmd = command.get("cmd")
            answer: dict[str, Any] = {"ok": True}
            if cmd == "stats":
                answer.update(
                    routes=dict(fake.route_counts()),
                    rate_limited=dict(fake.rate_limited),
                    token_fetches=fake.token_fetches,
                )
            elif cmd == "reset":
                fake.reset_log()
            elif cmd == "advance":
                clock.offset += float(command["seconds"])
            elif cmd == "quit":
                print(json.dumps(answer), flush=True)
                return
            else:
                answer = {"ok": False, "error": f"unknown command {cmd!r}"}
            print(json.dumps(answer), flush=True)


def main() -> None:
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    asyncio.run(_serve(options))


if __name__ == "__main__":
    main()
