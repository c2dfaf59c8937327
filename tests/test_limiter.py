"""TokenBucket and Limits: the window guarantee, utilisation, FIFO, cancellation, timeouts, pause.

Everything runs on an I/O-free virtual-time loop (``run_pure``): the clock jumps to the next
timer whenever the loop is idle, so minutes of limiter time take milliseconds, and the grant
times recorded are exactly the ones the loop's clock (the bucket's clock) saw.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import pytest
from _vloop import run_virtual
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aily_async import (
    DOCUMENTED_QUOTAS,
    AilyTimeoutError,
    LimiterTimeout,
    Limits,
    RateLimiter,
    TokenBucket,
)

T = TypeVar("T")

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_pure(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh I/O-free virtual-time loop starting at t=0."""
    return run_virtual(coro, start=0.0, grace=0.0)


# -- scenarios: who arrives when, who gives up, who pauses the bucket --------------------------

EPS = 1e-6


@dataclass(frozen=True)
class Req:
    at: float
    cancel_after: float | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class Pause:
    at: float
    seconds: float


@dataclass
class Outcome:
    granted: dict[int, float] = field(default_factory=dict)
    arrival_order: list[int] = field(default_factory=list)
    cancelled: set[int] = field(default_factory=set)
    timed_out: dict[int, BaseException] = field(default_factory=dict)
    timed_out_at: dict[int, float] = field(default_factory=dict)

    def times(self) -> list[float]:
        return sorted(self.granted.values())


async def drive(bucket: TokenBucket, reqs: Sequence[Req], pauses: Sequence[Pause] = ()) -> Outcome:
    """Replay ``reqs`` and ``pauses`` against ``bucket`` and record what each request got."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    out = Outcome()

    async def one(i: int, req: Req) -> None:
        out.arrival_order.append(i)
        try:
            await bucket.acquire(req.timeout)
        except LimiterTimeout as exc:
            out.timed_out[i] = exc
            out.timed_out_at[i] = loop.time() - start
            return
        except asyncio.CancelledError:
            out.cancelled.add(i)
            raise
        out.granted[i] = loop.time() - start

    events: list[tuple[float, int, int]] = [(r.at, 0, i) for i, r in enumerate(reqs)]
    events += [(p.at, 1, i) for i, p in enumerate(pauses)]
    events.sort()
    tasks: list[tuple[int, asyncio.Task[None]]] = []
    for at, kind, i in events:
        wait = at - (loop.time() - start)
        if wait > 0:
            await asyncio.sleep(wait)
        if kind == 1:
            await bucket.pause(pauses[i].seconds)
            continue
        req = reqs[i]
        task = loop.create_task(one(i, req))
        tasks.append((i, task))
        if req.cancel_after is not None:
            loop.call_later(req.cancel_after, task.cancel)
    await asyncio.gather(*(task for _, task in tasks), return_exceptions=True)
    out.cancelled.update(i for i, task in tasks if task.cancelled())  # even before it ran
    return out


def max_in_window(times: Sequence[float], length: float) -> int:
    """The most grants in any half-open window ``[a, a + length)``."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + length) - i for i, t in enumerate(times)), default=0)


def effective_margin(per: float, margin: float | None) -> float:
    return min(1.0, 0.02 * per) if margin is None else margin


@st.composite
def buckets(draw: st.DrawFn, *, max_rate: int = 30) -> dict[str, Any]:
    rate = draw(st.integers(1, max_rate))
    per = draw(st.floats(0.05, 90.0))
    burst = draw(st.none() | st.integers(1, rate))
    margin = draw(st.none() | st.floats(0.0, per / 2))
    return {"rate": rate, "per": per, "burst": burst, "margin": margin}


@st.composite
def arrivals(draw: st.DrawFn, per: float, rate: int) -> list[Req]:
    """Groups of requests: bursts at one instant, spread ones, sparse ones; some give up."""
    reqs: list[Req] = []
    t = 0.0
    for _ in range(draw(st.integers(1, 6))):
        t += draw(st.sampled_from([0.0, per / 3, per, 2.5 * per]) | st.floats(0.0, 3 * per))
        size = draw(st.integers(1, min(40, 2 * rate + 3)))
        spread = draw(st.sampled_from([0.0, per]) | st.floats(0.0, 2 * per))
        for k in range(size):
            kind = draw(st.sampled_from(["plain", "plain", "plain", "cancel", "timeout"]))
            req = Req(at=t + spread * k / size)
            if kind == "cancel":
                req = replace(req, cancel_after=draw(st.floats(0.0, 2 * per)))
            elif kind == "timeout":
                req = replace(req, timeout=draw(st.floats(0.0, 2 * per)))
            reqs.append(req)
    return reqs


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], list[Req], list[Pause]]:
    params = draw(buckets())
    per, rate = params["per"], params["rate"]
    reqs = draw(arrivals(per, rate))
    horizon = max(r.at for r in reqs) + per
    pauses = draw(
        st.lists(st.builds(Pause, st.floats(0.0, horizon), st.floats(0.0, per)), max_size=2)
    )
    return params, reqs, pauses


# -- the window guarantee, FIFO, cancellation and timeouts, as properties ---------------------


@PROPERTY
@given(scenarios())
def test_never_more_than_rate_in_any_window(
    scenario: tuple[dict[str, Any], list[Req], list[Pause]],
) -> None:
    """Under any arrival pattern (bursts, spread, cancellations, timeouts, pauses) no half-open
    window of ``per`` (or ``per + margin``) seconds holds more than ``rate`` grants, from the
    first grant on."""
    params, reqs, pauses = scenario
    out = run_pure(drive(TokenBucket(**params), reqs, pauses))
    rate, per = params["rate"], params["per"]
    margin = effective_margin(per, params["margin"])
    times = out.times()
    assert max_in_window(times, per) <= rate
    assert max_in_window(times, per + margin) <= rate
    for pause in pauses:  # nothing is granted while the bucket is paused
        assert not [t for t in times if pause.at + EPS < t < pause.at + pause.seconds - EPS]


@PROPERTY
@given(scenarios())
def test_grants_follow_arrival_order(
    scenario: tuple[dict[str, Any], list[Req], list[Pause]],
) -> None:
    """Waiters are served first come, first served: grant times never decrease in the order
    the requests called ``acquire``."""
    params, reqs, pauses = scenario
    out = run_pure(drive(TokenBucket(**params), reqs, pauses))
    in_order = [out.granted[i] for i in out.arrival_order if i in out.granted]
    assert all(a <= b + EPS for a, b in itertools.pairwise(in_order))


@PROPERTY
@given(scenarios())
def test_cancelled_and_timed_out_waiters_consume_nothing(
    scenario: tuple[dict[str, Any], list[Req], list[Pause]],
) -> None:
    """Waiters that are cancelled or time out neither consume a grant nor delay anyone: the
    others get exactly the grant times they get when those never came."""
    params, reqs, pauses = scenario
    out = run_pure(drive(TokenBucket(**params), reqs, pauses))
    gave_up = out.cancelled | set(out.timed_out)
    assert gave_up.isdisjoint(out.granted)
    assert len(gave_up) + len(out.granted) == len(reqs)
    kept = [i for i in range(len(reqs)) if i not in gave_up]
    # The survivors were granted before any cancel/timeout of theirs: replay them plainly.
    alone = run_pure(drive(TokenBucket(**params), [Req(at=reqs[i].at) for i in kept], pauses))
    for j, i in enumerate(kept):
        assert alone.granted[j] == pytest.approx(out.granted[i], abs=EPS)


@PROPERTY
@given(scenarios())
def test_timeouts_raise_limiter_timeout_on_time(
    scenario: tuple[dict[str, Any], list[Req], list[Pause]],
) -> None:
    """``acquire(timeout)`` that is not granted in time raises :class:`LimiterTimeout`, a
    ``TimeoutError``, exactly ``timeout`` seconds after it was called."""
    params, reqs, pauses = scenario
    out = run_pure(drive(TokenBucket(**params), reqs, pauses))
    for i, exc in out.timed_out.items():
        assert isinstance(exc, LimiterTimeout)
        assert isinstance(exc, TimeoutError)
        assert isinstance(exc, AilyTimeoutError)
        timeout = reqs[i].timeout
        assert timeout is not None
        assert out.timed_out_at[i] == pytest.approx(reqs[i].at + timeout, abs=EPS)


# -- utilisation under saturation ---------------------------------------------------------------


async def saturate(bucket: RateLimiter, seconds: float, consumers: int = 3) -> list[float]:
    """Grant times when ``consumers`` tasks acquire back to back for ``seconds``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    times: list[float] = []

    async def consumer() -> None:
        while True:
            await bucket.acquire()
            now = loop.time() - start
            if now >= seconds:
                return
            times.append(now)

    await asyncio.gather(*(consumer() for _ in range(consumers)))
    return times


@settings(max_examples=30, deadline=None)
@given(
    rate=st.integers(1, 250),
    per=st.floats(0.1, 120.0),
    consumers=st.integers(1, 6),
)
def test_saturation_uses_at_least_95_percent(rate: int, per: float, consumers: int) -> None:
    """Saturated with the default burst and margin, the bucket grants at least 95% of ``rate``
    per ``per`` over a long run, and never more than ``rate`` in a window."""
    windows = 10
    times = run_pure(saturate(TokenBucket(rate, per), windows * per, consumers))
    assert len(times) >= 0.95 * rate * windows
    assert max_in_window(times, per) <= rate


def test_documented_quotas_saturated_for_ten_minutes() -> None:
    """The documented 100/min bucket grants >= 95% of its quota over ten saturated minutes, and
    no minute (even the first) holds more than 100 grants."""
    rate, per = DOCUMENTED_QUOTAS["skills.start"]
    times = run_pure(saturate(TokenBucket(rate, per), 600.0, consumers=50))
    assert len(times) >= 0.95 * rate * 10
    assert max_in_window(times, per) <= rate
    assert max_in_window(times, per + 1.0) <= rate
    assert len([t for t in times if t < per]) <= rate


# -- Limits: the client's per-call default ------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_default_limits_keep_both_quotas_of_other_calls(data: st.DataObject) -> None:
    """The default bucket of an "other" call keeps both documented quotas, 1000 per minute and
    50 per second, under random arrival patterns."""
    reqs = data.draw(arrivals(60.0, 1000))
    bucket = Limits().for_call("runs.get")
    assert isinstance(bucket, TokenBucket)
    times = run_pure(drive(bucket, reqs)).times()
    assert max_in_window(times, 60.0) <= 1000
    assert max_in_window(times, 1.0) <= 50


def test_default_limits_saturated_keep_both_quotas_and_use_95_percent() -> None:
    """Saturated for three minutes, the default "other" bucket stays within 1000/60s and 50/1s
    (with room for jitter) while using >= 95% of 1000 per minute."""
    times = run_pure(saturate(Limits().for_call("messages.list"), 180.0, consumers=60))
    assert max_in_window(times, 60.0) <= 1000
    assert max_in_window(times, 60.0 + 1.0) <= 1000
    assert max_in_window(times, 1.0) <= 50
    assert max_in_window(times, 1.5) <= 50  # 0.5 s of network spread is still safe
    assert len(times) >= 0.95 * 1000 * 3


def test_limits_are_per_call_and_sized_to_the_documented_quotas() -> None:
    """``Limits`` gives each call its own bucket: 100/min for runs.create and skills.start,
    1000/min for the others; ``quotas`` overrides one call."""
    limits = Limits()
    create, start, get = (limits.for_call(c) for c in ("runs.create", "skills.start", "runs.get"))
    assert isinstance(create, TokenBucket)
    assert isinstance(start, TokenBucket)
    assert isinstance(get, TokenBucket)
    assert (create.rate, create.per) == (100, 60.0)
    assert (start.rate, start.per) == (100, 60.0)
    assert (get.rate, get.per) == (1000, 60.0)
    assert len({id(create), id(start), id(get), id(limits.for_call("messages.list"))}) == 4
    assert limits.for_call("runs.get") is get
    custom = Limits({"runs.get": (5, 1.0)}).for_call("runs.get")
    assert isinstance(custom, TokenBucket)
    assert (custom.rate, custom.per) == (5, 1.0)


def test_saturating_one_call_does_not_slow_another() -> None:
    """A saturated ``skills.start`` bucket leaves ``runs.get`` grants immediate."""

    async def main() -> float:
        limits = Limits()
        loop = asyncio.get_running_loop()
        hog = loop.create_task(saturate(limits.for_call("skills.start"), 120.0))
        await asyncio.sleep(30.0)
        before = loop.time()
        for _ in range(10):
            await limits.for_call("runs.get").acquire()
        waited = loop.time() - before
        await hog
        return waited

    assert run_pure(main()) == 0.0


# -- deterministic unit behaviour ---------------------------------------------------------------


def test_uncontended_acquire_never_suspends() -> None:
    """An uncontended ``acquire`` completes without a single task switch, for the whole burst
    and again after an idle spell; the first one over the burst does suspend."""

    def completes_at_once(coro: Coroutine[Any, Any, None]) -> bool:
        try:
            coro.send(None)
        except StopIteration:
            return True
        coro.close()
        return False

    async def main() -> None:
        bucket = TokenBucket(100, 60.0, burst=5)
        for _ in range(5):
            assert completes_at_once(bucket.acquire())
        assert not completes_at_once(bucket.acquire())
        await asyncio.sleep(120.0)
        for _ in range(5):
            assert completes_at_once(bucket.acquire(timeout=1.0))
        assert bucket.waiting == 0

    run_pure(main())


def test_fake_clock_drives_the_fast_path() -> None:
    """With ``clock=`` the bucket reads that clock: grants come back once it has advanced."""
    now = [0.0]
    bucket = TokenBucket(2, 1.0, burst=1, margin=0.0, clock=lambda: now[0])

    def completes_at_once() -> bool:
        coro = bucket.acquire()
        try:
            coro.send(None)
        except StopIteration:
            return True
        except RuntimeError:  # it needed the loop to wait: no running loop here
            coro.close()
            return False
        coro.close()
        return False

    assert completes_at_once()
    assert not completes_at_once()
    now[0] = 0.49
    assert not completes_at_once()
    now[0] = 0.51
    assert completes_at_once()
    assert bucket.next_grant_in() == pytest.approx(0.5, abs=1e-6)


def test_bucket_starts_with_a_small_burst_not_a_full_window() -> None:
    """A fresh bucket lets only its burst through at once, then paces at ``interval``."""

    async def main() -> list[float]:
        bucket = TokenBucket(100, 60.0)
        assert bucket.burst == 2
        return await saturate(bucket, 3.0, consumers=10)

    times = run_pure(main())
    assert times[:2] == [0.0, 0.0]
    assert times[2] == pytest.approx(61.0 / 99, rel=1e-6)


def test_timeout_raises_and_the_next_waiter_is_not_delayed() -> None:
    """A waiter that times out raises :class:`LimiterTimeout` at its deadline; the waiter behind
    it is granted when it would have been anyway; ``timeout=0`` fails at once when busy."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(1, 10.0, burst=1, margin=0.0)
        await bucket.acquire()
        behind = loop.create_task(bucket.acquire())
        with pytest.raises(LimiterTimeout):
            await bucket.acquire(timeout=0)
        assert loop.time() == 0.0
        with pytest.raises(TimeoutError):
            await bucket.acquire(timeout=2.0)
        assert loop.time() == pytest.approx(2.0)
        await behind
        assert loop.time() == pytest.approx(10.0, abs=1e-6)
        # Nothing was consumed by the two timeouts: the next grant comes one interval later.
        await bucket.acquire()
        assert loop.time() == pytest.approx(20.0, abs=1e-6)

    run_pure(main())


def test_cancelled_waiter_frees_its_place_at_once() -> None:
    """Cancelling the head waiter lets the one behind take its slot at the same instant."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(1, 10.0, burst=1, margin=0.0)
        await bucket.acquire()
        first = loop.create_task(bucket.acquire())
        second = loop.create_task(bucket.acquire())
        await asyncio.sleep(5.0)
        first.cancel()
        await second
        got = [loop.time()]
        await bucket.acquire()
        got.append(loop.time())
        return got

    assert run_pure(main()) == pytest.approx([10.0, 20.0], abs=1e-6)


def test_grant_given_back_when_cancelled_before_use() -> None:
    """A waiter cancelled after its grant but before it could run gives the grant back."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(1, 10.0, burst=1, margin=0.0)
        await bucket.acquire()
        coro = bucket.acquire()
        fut = coro.send(None)  # suspended on its waiter future, driven by hand
        await asyncio.wait([fut])
        assert loop.time() == pytest.approx(10.0, abs=1e-6)
        with pytest.raises(asyncio.CancelledError):
            coro.throw(asyncio.CancelledError())
        await bucket.acquire()  # takes the slot given back, at once
        got = [loop.time()]
        await bucket.acquire()
        got.append(loop.time())
        return got

    assert run_pure(main()) == pytest.approx([10.0, 20.0], abs=1e-6)


def test_dropped_waiter_coroutine_leaves_the_queue() -> None:
    """A waiting ``acquire`` coroutine that is closed (never resumed) leaves the queue and
    consumes nothing."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(2, 1.0, burst=1, margin=0.0)
        await bucket.acquire()
        coro = bucket.acquire()
        coro.send(None)
        coro.close()
        assert bucket.waiting == 0
        await bucket.acquire()
        return loop.time()

    assert run_pure(main()) == pytest.approx(0.5, abs=1e-6)


def test_pause_delays_everyone_then_resumes_paced() -> None:
    """``pause(s)`` holds queued waiters and newcomers alike for ``s`` seconds; afterwards
    grants resume one ``interval`` apart, without a burst."""

    async def main() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(10, 1.0, burst=5)
        times: list[float] = []

        async def one() -> None:
            await bucket.acquire()
            times.append(loop.time())

        queued = [loop.create_task(one()) for _ in range(8)]
        await asyncio.sleep(0)
        await bucket.pause(3.0)
        later = [loop.create_task(one()) for _ in range(2)]
        await asyncio.gather(*queued, *later)
        return times, bucket.interval

    times, interval = run_pure(main())
    assert times[:5] == [0.0] * 5  # the burst went before the pause
    rest = times[5:]
    assert rest[0] == pytest.approx(3.0, abs=1e-6)
    assert all(b - a == pytest.approx(interval, rel=1e-6) for a, b in itertools.pairwise(rest))


def test_shorter_or_empty_pause_changes_nothing() -> None:
    """A pause shorter than the current wait, or of zero or negative length, changes nothing."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(1, 10.0, burst=1, margin=0.0)
        await bucket.acquire()
        await bucket.pause(3.0)
        await bucket.pause(0.0)
        await bucket.pause(-5.0)
        await bucket.acquire()
        return loop.time()

    assert run_pure(main()) == pytest.approx(10.0, abs=1e-6)


def test_bucket_is_a_rate_limiter_and_validates_its_arguments() -> None:
    """``TokenBucket`` satisfies the :class:`RateLimiter` protocol, rejects nonsense and shows
    its state in ``repr``."""
    bucket = TokenBucket(100, 60.0, name="skills.start")
    assert isinstance(bucket, RateLimiter)
    assert "skills.start" in repr(bucket)
    assert "waiting=0" in repr(bucket)
    bad: list[Callable[[], object]] = [
        lambda: TokenBucket(0),
        lambda: TokenBucket(1.5),  # type: ignore[arg-type]
        lambda: TokenBucket(10, 0.0),
        lambda: TokenBucket(10, math.inf),
        lambda: TokenBucket(10, burst=11),
        lambda: TokenBucket(10, burst=0),
        lambda: TokenBucket(10, margin=-1.0),
    ]
    for make in bad:
        with pytest.raises(ValueError):  # noqa: PT011
            make()
