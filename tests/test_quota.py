"""Quotas end to end: the client's limiter against strict sliding windows.

Two kinds of server, both on virtual time (``_vloop``), so minutes of quota take a fraction of
a second:

* ``FakeAily`` with ``rate_limits`` (its windows, the buckets and the poll timers share the
  loop's clock), driven through ``AilyClient``;
* ``StrictWindow`` below, a server reduced to its quota, driven by ``call``, which does what
  the client's transport does with a :class:`~aily_async.QuotaFeedback` limiter: a grant, a
  round trip, then ``confirm()`` or, on a 429, ``pause(reset)`` and a retry queued with
  ``acquire(first=True)``. That is where the bucket's learning is measured: restarts into a
  spent window, a foreign consumer, and the physical limit.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import random
import statistics
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import pytest
from _fake_client import fake_and_client
from _vloop import run_virtual, virtual_time

from aily_async import (
    AilyClient,
    AilyRateLimitError,
    Limits,
    RetryPolicy,
    RunHandle,
    RunStatus,
    TokenBucket,
)
from aily_async.testing import FakeAily, RunPlan, RunRequest

APP_ID = "spring_449d72db2f__c"
SKILL = "skill_echo"


def aily(
    *, client: dict[str, Any] | None = None, **fake: Any
) -> AbstractAsyncContextManager[tuple[FakeAily, AilyClient]]:
    """A FakeAily and a client for it (the client's default limiter and retries)."""
    return fake_and_client({}, client, **fake)


def max_in_window(times: Sequence[float], length: float) -> int:
    """The most requests in any half-open window of ``length`` seconds."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + length) - i for i, t in enumerate(times)), default=0)


def arrivals(fake: FakeAily, route: str) -> list[float]:
    """When the fake received each accepted request of ``route``."""
    return [r.time for r in fake.requests if r.route == route and r.status == 200]


async def start_skills(client: AilyClient, n: int) -> list[Any]:
    return await asyncio.gather(
        *(client.skills.start(APP_ID, SKILL, input={"i": i}) for i in range(n)),
        return_exceptions=True,
    )


# -- a strict window, three times over (FakeAily) ---------------------------------------------

N, W = 20, 2.0


@pytest.mark.parametrize(
    "limiter",
    [
        pytest.param(lambda: TokenBucket(N, W), id="one-bucket"),
        pytest.param(lambda: Limits({"skills.start": (N, W)}), id="per-call-limits"),
    ],
)
@virtual_time
async def test_three_windows_of_skill_starts_get_no_429(limiter: Any) -> None:
    """3N concurrent skill starts through a client limited to N per W seconds all succeed
    against a server enforcing N per W strictly, without a single 429, in about the time the
    window allows (two windows after the first, the first ramping up)."""
    async with aily(rate_limits={"skills.start": [(N, W)]}, client={"limiter": limiter()}) as (
        fake,
        client,
    ):
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await start_skills(client, 3 * N)
        elapsed = loop.time() - started
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert fake.rate_limited["skills.start"] == 0
        assert client.stats.rate_limited == 0
        times = arrivals(fake, "skills.start")
        assert len(times) == 3 * N
        assert max_in_window(times, W) <= N
        assert elapsed < 3 * W * 1.1


@virtual_time
async def test_without_a_limiter_the_same_burst_gets_429s() -> None:
    """With ``limiter=None`` the same 3N starts are answered 429 beyond the first N: the
    window above is really enforced, so that test can fail."""
    async with aily(
        rate_limits={"skills.start": [(N, W)]},
        client={"limiter": None, "retry": RetryPolicy(max_attempts=1, max_quota_wait=0)},
    ) as (fake, client):
        results = await start_skills(client, 3 * N)
        refused = [r for r in results if isinstance(r, AilyRateLimitError)]
        assert len(refused) == 2 * N
        assert fake.rate_limited["skills.start"] == 2 * N
        assert client.stats.rate_limited == 2 * N


# -- the documented quotas, with another worker of the same app (FakeAily) ---------------------


@virtual_time
async def test_foreign_consumer_causes_a_few_429s_not_a_storm() -> None:
    """When another worker of the app has used up most of the quota, the default per-call
    limits meet it with a few 429s (the last round of the ramp: no more than the 5 calls the
    window had left), then pause everyone and keep to the share the server left; every call
    succeeds."""
    async with aily(rate_limits=True) as (fake, client):
        fake.external_load("skills.start", 95)
        results = await start_skills(client, 40)
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert 1 <= fake.rate_limited["skills.start"] <= 5
        assert client.stats.rate_limited == fake.rate_limited["skills.start"]


@virtual_time
async def test_foreign_consumer_without_the_pause_is_a_storm() -> None:
    """The same foreign load met without a limiter gets dozens of 429s: the pause is what
    keeps the previous test calm."""
    async with aily(rate_limits=True, client={"limiter": None}) as (fake, client):
        fake.external_load("skills.start", 95)
        await start_skills(client, 40)
        assert fake.rate_limited["skills.start"] >= 30


@virtual_time
async def test_steady_foreign_load_on_fake_aily_settles() -> None:
    """A steady foreign load of 40% of the skills.start quota (FakeAily ``external_load``,
    one call every 1.5 s) and a client that always has calls queued: after the first windows,
    at most one 429 per five windows, every call succeeds, and the calls that fit go."""
    async with aily(rate_limits=True, client={"poll_interval": 1.0}) as (fake, client):
        loop = asyncio.get_running_loop()
        start = loop.time()
        windows = 26

        async def foreign() -> None:
            while True:
                fake.external_load("skills.start", 1)
                await asyncio.sleep(1.5)

        load = asyncio.ensure_future(foreign())
        try:
            results = await start_skills(client, 60 * (windows - 1))
        finally:
            load.cancel()
        elapsed = loop.time() - start
    assert not [r for r in results if isinstance(r, BaseException)]
    refused = [r.time - start for r in fake.requests if r.status == 429]
    late = [t for t in refused if t >= 5 * 60.0]
    assert len(late) <= (elapsed - 5 * 60.0) / (5 * 60.0) + 1, refused
    assert elapsed <= windows * 61.0


# -- 200 concurrent runs (FakeAily) -------------------------------------------------------------

SCALED = 0.01  # every quota window x0.01: 100 runs.create per 0.6 s, 50 GETs per 10 ms


def _limits(scale: float) -> Limits:
    per = 60.0 * scale
    return Limits(
        {"runs.create": (100, per), "skills.start": (100, per)},
        default=[(1000, per), (50, scale)],
    )


@pytest.mark.parametrize("scale", [1.0, SCALED], ids=["documented-quotas", "windows-x0.01"])
@virtual_time
async def test_200_concurrent_runs_all_complete_within_quota(scale: float) -> None:
    """200 concurrent runs of random 0.2–2 s, polled from ``poll_interval=0.1`` through the
    per-call limits, all complete with zero 429s; prints GETs per run and detection delay.

    With the documented quotas 100 runs start at once (100 ``runs.create`` per minute) and are
    polled together against 50 GETs per second: half of a round of polls waits a second."""
    rng = random.Random(20240607)
    ends: dict[str, float] = {}  # session id -> planned end of its run, on the fake's clock
    fake_clock: list[asyncio.AbstractEventLoop] = []

    def plan(request: RunRequest) -> RunPlan:
        duration = rng.uniform(0.2, 2.0)
        ends[request.session_id] = fake_clock[0].time() + 0.05 + duration
        return RunPlan(queued=0.05, duration=duration)

    async with aily(
        run_script=plan,
        rate_limits=True,
        time_scale=scale,
        client={"limiter": _limits(scale), "poll_interval": 0.1},
    ) as (fake, client):
        loop = asyncio.get_running_loop()
        fake_clock.append(loop)
        started = loop.time()

        async def one() -> tuple[RunHandle, float]:
            session = await client.sessions.create()
            handle = await client.runs.create(session.id, app_id=APP_ID)
            await handle
            return handle, loop.time()

        done = await asyncio.gather(*(one() for _ in range(200)))
        elapsed = loop.time() - started

        assert all(h.run.status is RunStatus.COMPLETED for h, _ in done)
        assert sum(fake.rate_limited.values()) == 0
        assert client.stats.rate_limited == 0
        get_counts = fake.route_counts()
        assert get_counts["runs.get"] == sum(h.polls for h, _ in done)
        polls = [h.polls for h, _ in done]
        delays = sorted(returned - ends[h.session_id] for h, returned in done)
        assert min(delays) >= 0  # nobody saw a run end before it did
        mean_polls = statistics.fmean(polls)
        p95 = delays[int(0.95 * len(delays))]
        print(
            f"\n200 runs ({'documented quotas' if scale == 1.0 else 'quota windows x0.01'}): "
            f"{elapsed:.1f}s virtual, GETs/run mean {mean_polls:.2f} max {max(polls)}, "
            f"detection delay mean {statistics.fmean(delays):.3f}s "
            f"p50 {statistics.median(delays):.3f}s p95 {p95:.3f}s max {max(delays):.3f}s"
        )
        assert mean_polls <= 6
        assert p95 <= 2.5


# -- a strict window, reduced to its quota, and a client that gives feedback --------------------


@dataclass
class StrictWindow:
    """A server's quota: refuses a call when ``limit`` calls were accepted in the last ``per``
    seconds, for any of its windows, and announces the wait until a slot frees, rounded up to
    whole seconds (``x-ogw-ratelimit-reset``). Foreign calls always count, as FakeAily's
    ``external_load`` does: the worst case for the client."""

    windows: Sequence[tuple[int, float]]
    accepted: list[float] = field(default_factory=list)
    ours: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)

    def offer(self, now: float) -> float | None:
        """Our call at ``now``: ``None`` if accepted, else the announced reset."""
        wait = 0.0
        for limit, per in self.windows:
            held = self.accepted[bisect.bisect_right(self.accepted, now - per) :]
            if len(held) >= limit:
                wait = max(wait, held[len(held) - limit] + per - now)
        if wait > 0:
            self.refused.append(now)
            return float(max(1, math.ceil(round(wait, 6))))
        bisect.insort(self.accepted, now)
        self.ours.append(now)
        return None

    def foreign(self, now: float, n: int = 1) -> None:
        """``n`` calls of someone else at ``now``, counted whatever the window holds."""
        for _ in range(n):
            bisect.insort(self.accepted, now)


async def call(bucket: TokenBucket, server: StrictWindow, rtt: float) -> None:
    """One API call as the client's transport makes it: a grant, half a round trip to the
    server, half back; then ``confirm()``, or ``pause(reset)`` and a retry at the head."""
    loop = asyncio.get_running_loop()
    first = False
    while True:
        await bucket.acquire(first=first)
        await asyncio.sleep(rtt / 2)
        reset = server.offer(loop.time())
        await asyncio.sleep(rtt / 2)
        if reset is None:
            bucket.confirm()
            return
        await bucket.pause(reset)
        first = True


async def batch(bucket: TokenBucket, server: StrictWindow, k: int, rtt: float = 0.1) -> float:
    """``k`` calls at once; the time until the last one was accepted."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.gather(*(call(bucket, server, rtt) for _ in range(k)))
    return loop.time() - start


def physical_limit(k: int, rate: int, per: float) -> float:
    """The least time ``k`` calls take against a strict window of ``rate`` per ``per``."""
    return math.ceil(k / rate - 1) * per


@pytest.mark.parametrize("k", [50, 100, 400])
def test_k_calls_at_the_physical_limit_with_no_429(k: int) -> None:
    """Against a strict 100-per-minute window a bucket that knows the window is empty sends
    ``K`` calls in the physical limit plus round trips (≤ 1.1× for 4N, ≤ one round trip for
    K ≤ N), with no 429; a fresh bucket (ramp) takes a round trip per doubling more."""
    rate, per, rtt = 100, 60.0, 0.1

    async def main(ramp: bool) -> tuple[float, StrictWindow]:
        loop = asyncio.get_running_loop()
        server = StrictWindow([(rate, per)])
        bucket = TokenBucket(rate, per, ramp=ramp)
        elapsed = await batch(bucket, server, k, rtt)
        server.ours = [t - loop.time() + elapsed for t in server.ours]
        return elapsed, server

    for ramp in (False, True):
        elapsed, server = run_virtual(main(ramp), start=0.0, grace=0.0)
        assert server.refused == []
        assert max_in_window(server.ours, per) <= rate
        ramp_trips = math.ceil(math.log2(min(k, rate) + 1)) if ramp else 1
        if k <= rate:
            assert elapsed <= ramp_trips * rtt + 1e-6
        else:
            assert elapsed <= 1.1 * physical_limit(k, rate, per)


@pytest.mark.parametrize("history", ["burst", "spread"])
@pytest.mark.parametrize("k", [50, 100, 400])
def test_restart_right_after_the_quota_was_spent(history: str, k: int) -> None:
    """A fresh bucket whose window was just filled by someone else (a previous run of the
    process: 100 calls at once, or spread over the last minute) costs at most 2 × 429, and
    finishes about a window later than into an empty window."""
    rate, per, rtt = 100, 60.0, 0.1

    async def main() -> tuple[float, StrictWindow]:
        server = StrictWindow([(rate, per)])
        if history == "burst":
            server.foreign(-0.01, rate)
        else:
            for i in range(rate):
                server.foreign(-per + (i + 1) * per / rate - 0.01)
        elapsed = await batch(TokenBucket(rate, per), server, k, rtt)
        return elapsed, server

    elapsed, server = run_virtual(main(), start=0.0, grace=0.0)
    assert 1 <= len(server.refused) <= 2
    assert elapsed <= per + 1.0 + physical_limit(k, rate, per) * 1.1 + 10 * rtt


@pytest.mark.parametrize("rtt", [0.02, 0.1, 0.5, 1.5])
def test_foreign_consumer_at_40_percent_settles(rtt: float) -> None:
    """With a steady foreign consumer taking 40% of a strict 100-per-minute quota (running
    before the client starts), a client with calls always queued settles after the first
    windows to at most one 429 per five windows, and uses the 60% left."""
    rate, per, windows = 100, 60.0, 40

    async def main() -> tuple[float, StrictWindow]:
        loop = asyncio.get_running_loop()
        server = StrictWindow([(rate, per)])
        for i in range(40):
            server.foreign(-per + 1.5 * (i + 1))

        async def foreign() -> None:
            await asyncio.sleep(1.5)
            while True:
                server.foreign(loop.time())
                await asyncio.sleep(1.5)

        load = asyncio.ensure_future(foreign())
        elapsed = await batch(TokenBucket(rate, per), server, 60 * windows, rtt)
        load.cancel()
        return elapsed, server

    elapsed, server = run_virtual(main(), start=0.0, grace=0.0)
    late = [t for t in server.refused if t >= 5 * per]
    assert len(late) <= (elapsed - 5 * per) / (5 * per) + 1, server.refused
    assert elapsed <= (windows + 1.5) * (per + 1.0)  # ≥ 97% of the 60 calls a window left


def test_foreign_consumer_that_stops_gives_the_quota_back() -> None:
    """When the foreign consumer stops, the bucket probes its way back to the whole quota
    within a few windows (one round trip per call it regains)."""
    rate, per = 100, 60.0

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        server = StrictWindow([(rate, per)])

        async def foreign() -> None:
            while loop.time() < 10 * per:
                server.foreign(loop.time())
                await asyncio.sleep(1.5)

        load = asyncio.ensure_future(foreign())
        await batch(TokenBucket(rate, per), server, 2400)
        await load
        return server.ours

    ours = run_virtual(main(), start=0.0, grace=0.0)
    late = [t for t in ours if t >= 20 * per]
    assert late
    assert max_in_window(late, per + 1.0) == rate  # the whole quota again


def test_both_windows_of_other_calls_hold_against_a_strict_server() -> None:
    """The default bucket of an "other" call (1000 per minute and 50 per second) sends 2000
    calls against a server enforcing both, with no 429, in the physical limit: the first 1000
    at 50 per second, the next when the minute is over."""

    async def main() -> tuple[float, StrictWindow]:
        server = StrictWindow([(1000, 60.0), (50, 1.0)])
        bucket = Limits().for_call("runs.get")
        assert isinstance(bucket, TokenBucket)
        elapsed = await batch(bucket, server, 2000, rtt=0.05)
        return elapsed, server

    elapsed, server = run_virtual(main(), start=0.0, grace=0.0)
    assert server.refused == []
    assert elapsed <= 61.0 + 20.0 * 1.1 + 1.0


class _Recording(TokenBucket):
    """A bucket that notes the ``limit`` of each 429 the client tells it of."""

    __slots__ = ("limits",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits: list[int | None] = []

    async def pause(self, seconds: float, *, limit: int | None = None) -> None:
        self.limits.append(limit)
        await super().pause(seconds, limit=limit)


@virtual_time
async def test_the_limit_header_tells_which_window_was_full() -> None:
    """A 429 from the 50-per-second window, at a moment when this process holds 60% of the
    minute window: the answer's ``x-ogw-ratelimit-limit: 50`` reaches the bucket, which holds
    back for the second only (guessing from its own grants, it would blame the fuller minute
    window and stall until that minute is over)."""
    windows = [(1000, 60.0), (50, 1.0)]
    bucket = _Recording(1000, 60.0, also=[(50, 1.0)], ramp=False, name="sessions.create")
    async with aily(
        rate_limits={"sessions.create": windows},
        client={"limiter": Limits(factory=lambda call, w: bucket)},
    ) as (fake, client):
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(client.sessions.create() for _ in range(600)))  # 12 s
        await asyncio.sleep(2.0)
        fake.external_load("sessions.create", 50)  # someone else fills the second
        began = loop.time()
        await asyncio.gather(*(client.sessions.create() for _ in range(100)))
        elapsed = loop.time() - began
    assert fake.rate_limited["sessions.create"] >= 1
    assert bucket.limits
    assert set(bucket.limits) == {50}
    assert elapsed <= 5.0, elapsed


class _Counting(TokenBucket):
    """A bucket that counts the answers the client confirms."""

    __slots__ = ("confirmed",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.confirmed = 0

    def confirm(self) -> None:
        self.confirmed += 1
        super().confirm()


class _Plain:
    """A limiter with only what every limiter has: no confirm(), no acquire(first=)."""

    async def acquire(self, timeout: float | None = None) -> None:
        return None

    async def pause(self, seconds: float) -> None:
        return None


class _Copying:
    """A wrapper that takes on whatever methods its limiter has (so two instances of this one
    class may differ in what they can do)."""

    def __init__(self, inner: object) -> None:
        for name in ("acquire", "pause", "confirm"):
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))


@virtual_time
async def test_what_a_limiter_can_do_is_judged_per_limiter_not_per_class() -> None:
    """Two limiters of one class, one around a plain limiter and one around a learning
    bucket, in either order: the plain one is never sent confirm(), the bucket gets one per
    answer (whether a limiter takes feedback is decided per limiter, once)."""
    for order in ("plain first", "bucket first"):
        bucket = _Counting(100, 60.0, ramp=False)
        limiters = [_Copying(_Plain()), _Copying(bucket)]
        if order == "bucket first":
            limiters.reverse()
        for limiter in limiters:
            async with aily(client={"limiter": limiter}) as (fake, client):
                for _ in range(3):
                    await client.sessions.create()
                assert fake.route_counts()["sessions.create"] == 3
        assert bucket.confirmed == 3, order
