"""TokenBucket and Limits: the window guarantee, the burst, FIFO, cancellation, timeouts, pause.

Everything runs on an I/O-free virtual-time loop (``run_pure``): the clock jumps to the next
timer whenever the loop is idle, so minutes of limiter time take milliseconds, and the grant
times recorded are exactly the ones the loop's clock (the bucket's clock) saw. What the bucket
learns from a server (429s, a foreign consumer, a restart) is in ``tests/test_quota.py``.
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
    LimiterState,
    LimiterTimeout,
    Limits,
    QuotaFeedback,
    RateLimiter,
    TokenBucket,
)

T = TypeVar("T")

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_pure(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh I/O-free virtual-time loop starting at t=0."""
    return run_virtual(coro, start=0.0, grace=0.0)


# -- scenarios: who arrives when, who gives up, who answers, who pauses the bucket -------------

EPS = 1e-6


@dataclass(frozen=True)
class Req:
    at: float
    cancel_after: float | None = None
    timeout: float | None = None
    answer_after: float | None = None  # confirm() this long after the grant (None: never)


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
        if req.answer_after is not None:
            loop.call_later(req.answer_after, bucket.confirm)

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


def margin_of(per: float, margin: float | None) -> float:
    return min(1.0, max(0.02 * per, min(0.1, 0.1 * per))) if margin is None else margin


@st.composite
def buckets(draw: st.DrawFn, *, max_rate: int = 30) -> dict[str, Any]:
    """Constructor arguments of a window bucket (ramp or not, maybe two windows) or a paced one."""
    rate = draw(st.integers(1, max_rate))
    per = draw(st.floats(0.05, 90.0))
    margin = draw(st.none() | st.floats(0.0, per / 2))
    params: dict[str, Any] = {"rate": rate, "per": per, "margin": margin}
    kind = draw(st.sampled_from(["window", "ramp", "two windows", "paced"]))
    if kind == "paced":
        params["burst"] = draw(st.none() | st.integers(1, rate))
        params["paced"] = True
    else:
        params["ramp"] = kind != "window"
        params["confirm_after"] = draw(st.floats(0.01, 2 * per))
        if kind == "two windows":
            params["also"] = [(draw(st.integers(1, rate)), draw(st.floats(0.02, per)))]
    return params


def windows_of(params: dict[str, Any]) -> list[tuple[int, float]]:
    """Every ``(rate, per + margin)`` a bucket made from ``params`` must keep."""
    return [
        (rate, per + margin_of(per, params["margin"]))
        for rate, per in [(params["rate"], params["per"]), *params.get("also", [])]
    ]


@st.composite
def arrivals(draw: st.DrawFn, per: float, rate: int) -> list[Req]:
    """Groups of requests: bursts at one instant, spread ones, sparse ones; some give up, some
    are answered (confirmed) after a while."""
    reqs: list[Req] = []
    t = 0.0
    for _ in range(draw(st.integers(1, 6))):
        t += draw(st.sampled_from([0.0, per / 3, per, 2.5 * per]) | st.floats(0.0, 3 * per))
        size = draw(st.integers(1, min(40, 2 * rate + 3)))
        spread = draw(st.sampled_from([0.0, per]) | st.floats(0.0, 2 * per))
        for k in range(size):
            kind = draw(st.sampled_from(["plain", "plain", "answered", "cancel", "timeout"]))
            req = Req(at=t + spread * k / size)
            if kind == "answered":
                req = replace(req, answer_after=draw(st.floats(0.0, per / 4)))
            elif kind == "cancel":
                req = replace(req, cancel_after=draw(st.floats(0.0, 2 * per)))
            elif kind == "timeout":
                req = replace(req, timeout=draw(st.floats(0.0, 2 * per)))
            reqs.append(req)
    return reqs


Scenario = tuple[dict[str, Any], list[Req], list[Pause]]


@st.composite
def scenarios(draw: st.DrawFn, *, max_pauses: int = 2) -> Scenario:
    params = draw(buckets())
    per, rate = params["per"], params["rate"]
    reqs = draw(arrivals(per, rate))
    horizon = max(r.at for r in reqs) + per
    pauses = draw(
        st.lists(
            st.builds(Pause, st.floats(0.0, horizon), st.floats(0.0, per)), max_size=max_pauses
        )
    )
    return params, reqs, pauses


# -- the window guarantee, FIFO, cancellation and timeouts, as properties ---------------------


@PROPERTY
@given(scenarios(max_pauses=0))
def test_never_more_than_rate_in_any_window(scenario: Scenario) -> None:
    """Under any arrival pattern (bursts, spread, cancellations, timeouts, answers, a ramp, two
    windows, the paced rule) no half-open window of ``per + margin`` seconds (so none of
    ``per``) holds more than ``rate`` grants, from the first grant on."""
    params, reqs, _ = scenario
    times = run_pure(drive(TokenBucket(**params), reqs)).times()
    for rate, span in windows_of(params):
        assert max_in_window(times, span) <= rate


@PROPERTY
@given(scenarios())
def test_a_429_takes_back_one_grant_and_pauses_everyone(scenario: Scenario) -> None:
    """With 429s (``pause``) mixed in, each one gives back at most the one grant it refused:
    no window holds more than ``rate`` plus the number of pauses, and nothing is granted while
    the bucket is paused."""
    params, reqs, pauses = scenario
    times = run_pure(drive(TokenBucket(**params), reqs, pauses)).times()
    for rate, span in windows_of(params):
        assert max_in_window(times, span) <= rate + len(pauses)
    for pause in pauses:
        assert not [t for t in times if pause.at + EPS < t < pause.at + pause.seconds - EPS]


@PROPERTY
@given(scenarios())
def test_grants_follow_arrival_order(scenario: Scenario) -> None:
    """Waiters are served first come, first served: grant times never decrease in the order
    the requests called ``acquire``."""
    params, reqs, pauses = scenario
    out = run_pure(drive(TokenBucket(**params), reqs, pauses))
    in_order = [out.granted[i] for i in out.arrival_order if i in out.granted]
    assert all(a <= b + EPS for a, b in itertools.pairwise(in_order))


@PROPERTY
@given(scenarios())
def test_cancelled_and_timed_out_waiters_consume_nothing(scenario: Scenario) -> None:
    """Waiters that are cancelled or time out neither consume a grant nor delay anyone: the
    others get exactly the grant times they get when those never came."""
    params, reqs, pauses = scenario
    out = run_pure(drive(TokenBucket(**params), reqs, pauses))
    gave_up = out.cancelled | set(out.timed_out)
    assert gave_up.isdisjoint(out.granted)
    assert len(gave_up) + len(out.granted) == len(reqs)
    kept = [i for i in range(len(reqs)) if i not in gave_up]
    # The survivors were granted before any cancel/timeout of theirs: replay them plainly.
    plain = [Req(at=reqs[i].at, answer_after=reqs[i].answer_after) for i in kept]
    alone = run_pure(drive(TokenBucket(**params), plain, pauses))
    for j, i in enumerate(kept):
        assert alone.granted[j] == pytest.approx(out.granted[i], abs=EPS)


@PROPERTY
@given(scenarios())
def test_timeouts_raise_limiter_timeout_on_time(scenario: Scenario) -> None:
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


@PROPERTY
@given(data=st.data(), kind=st.sampled_from(["window", "two windows", "paced"]))
def test_queue_wait_tells_when_a_caller_queued_now_is_served(
    data: st.DataObject, kind: str
) -> None:
    """``queue_wait()`` (what a call with a deadline is told before it queues) is the moment a
    caller queued now is granted, behind everyone waiting, if nothing else happens: exactly for
    one window and for the paced rule, never later than the truth for two windows or after a
    429 (whose reset slot and probes can grant sooner than the limit it taught)."""
    rate = data.draw(st.integers(1, 12), label="rate")
    per = data.draw(st.floats(0.5, 60.0), label="per")
    params: dict[str, Any] = {"rate": rate, "per": per}
    if kind == "paced":
        params["paced"] = True
    else:
        params["ramp"] = False
    if kind == "two windows":
        params["also"] = [(data.draw(st.integers(1, rate)), data.draw(st.floats(0.1, per)))]
    moment = data.draw(st.floats(0.0, 3 * per), label="moment")
    arrived = data.draw(st.lists(st.floats(0.0, 1.0), max_size=4 * rate), label="arrivals")
    # A 429 before the moment (its pause and what the bucket learns), or none.
    refused = data.draw(
        st.none() | st.tuples(st.floats(0.0, 1.0), st.floats(0.0, per)), label="429"
    )

    async def main() -> tuple[float, float]:
        bucket = TokenBucket(**params)
        loop = asyncio.get_running_loop()
        for at in sorted(arrived):
            loop.call_at(at * moment, lambda: loop.create_task(bucket.acquire()))
        if refused is not None:
            at, seconds = refused
            loop.call_at(at * moment, lambda: loop.create_task(bucket.pause(seconds)))
        await asyncio.sleep(moment)
        await asyncio.sleep(0)  # the arrivals of this very instant queue first
        told = bucket.queue_wait()
        began = loop.time()
        await bucket.acquire()
        return told, loop.time() - began

    told, waited = run_pure(main())
    if kind == "two windows" or refused is not None:
        assert told <= waited + EPS
    else:
        assert told == pytest.approx(waited, abs=1e-6)


# -- the burst: a full bucket, then the window's pace ----------------------------------------


@settings(max_examples=40, deadline=None)
@given(rate=st.integers(1, 60), per=st.floats(0.1, 120.0), k=st.integers(1, 250))
def test_k_calls_take_the_physical_limit(rate: int, per: float, k: int) -> None:
    """A bucket whose window is known empty (``ramp=False``) grants ``K`` calls made at once in
    rounds of ``rate``, one span apart: the first ``rate`` at t=0 and the last at
    ``ceil(K/rate - 1) * (per + margin)``, the least a strict window allows (plus a
    microsecond per round, against float rounding)."""
    span = per + margin_of(per, None) + 1e-6

    async def main() -> list[float]:
        bucket = TokenBucket(rate, per, ramp=False)
        loop = asyncio.get_running_loop()
        times: list[float] = []

        async def one() -> None:
            await bucket.acquire()
            times.append(loop.time())

        await asyncio.gather(*(one() for _ in range(k)))
        return times

    times = run_pure(main())
    rounds = math.ceil(k / rate)
    assert times[: min(k, rate)] == [0.0] * min(k, rate)
    for n in range(rounds):
        assert times[n * rate : (n + 1) * rate] == pytest.approx(
            [n * span] * len(times[n * rate : (n + 1) * rate]), abs=1e-7
        )
    assert times[-1] == pytest.approx(math.ceil(k / rate - 1) * span, abs=1e-7)


def test_uncontended_acquire_never_suspends() -> None:
    """An uncontended ``acquire`` of a full bucket completes without a single task switch, for
    the whole quota and again once the tokens are back; the first one over the quota suspends."""

    def completes_at_once(coro: Coroutine[Any, Any, None]) -> bool:
        try:
            coro.send(None)
        except StopIteration:
            return True
        coro.close()
        return False

    async def main() -> None:
        bucket = TokenBucket(5, 60.0, ramp=False)
        for _ in range(5):
            assert completes_at_once(bucket.acquire())
        assert not completes_at_once(bucket.acquire())
        await asyncio.sleep(61.5)
        for _ in range(5):
            assert completes_at_once(bucket.acquire(timeout=1.0))
        assert bucket.waiting == 0

    run_pure(main())


def test_fake_clock_drives_the_fast_path() -> None:
    """With ``clock=`` the bucket reads that clock: a token is back ``per + margin`` after it
    was spent."""
    now = [0.0]
    bucket = TokenBucket(2, 1.0, margin=0.0, ramp=False, clock=lambda: now[0])

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
    now[0] = 0.5
    assert completes_at_once()
    assert not completes_at_once()
    assert bucket.next_grant_in() == pytest.approx(0.5, abs=1e-5)
    now[0] = 0.99
    assert not completes_at_once()
    now[0] = 1.01
    assert completes_at_once()
    assert not completes_at_once()


def test_saturated_bucket_uses_the_whole_window() -> None:
    """Saturated for ten minutes, the documented 100/min bucket grants 100 calls per 61 s (a
    98% share of the quota), and no minute, the first included, holds more than 100."""
    rate, per = DOCUMENTED_QUOTAS["skills.start"]
    times = run_pure(saturate(TokenBucket(rate, per, ramp=False), 600.0, consumers=50))
    assert len(times) >= 0.98 * rate * 600 / 61 - 2  # a wider margin would grant fewer
    assert max_in_window(times, per) <= rate
    assert max_in_window(times, per + 1.0) <= rate
    assert len([t for t in times if t < per]) == rate


# -- the ramp: a window whose history is unknown ------------------------------------------------


async def answered_batch(bucket: TokenBucket, k: int, rtt: float) -> list[float]:
    """Grant times of ``k`` calls made at once, each answered (confirmed) ``rtt`` after its
    grant."""
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        times.append(loop.time())
        await asyncio.sleep(rtt)
        bucket.confirm()

    await asyncio.gather(*(one() for _ in range(k)))
    return times


@pytest.mark.parametrize("k", [1, 2, 7, 50, 100])
def test_the_ramp_doubles_every_round_trip(k: int) -> None:
    """A fresh bucket (history unknown) sends 1, then 2, then 4… calls as answers confirm them:
    ``K ≤ rate`` calls take ``floor(log2 K)`` round trips, not a window."""
    rtt = 0.1
    times = run_pure(answered_batch(TokenBucket(100, 60.0), k, rtt))
    rounds = [round(t / rtt) for t in times]
    assert rounds == sorted(rounds)
    assert rounds[-1] == len(set(rounds)) - 1  # no round trip without grants
    sizes = [len(list(g)) for _, g in itertools.groupby(rounds)]
    expected = [2**n for n in range(len(sizes))]
    expected[-1] = k - sum(expected[:-1])
    assert sizes == expected
    assert times[-1] == pytest.approx(math.floor(math.log2(k)) * rtt, abs=1e-6)


def test_the_ramp_goes_on_by_silence_without_answers() -> None:
    """Without ``confirm()`` a grant counts as confirmed ``confirm_after`` seconds after it was
    made; one window after the first grant the history is known and the ramp is over."""

    async def main() -> tuple[list[float], str, str]:
        bucket = TokenBucket(100, 60.0, confirm_after=1.0)
        loop = asyncio.get_running_loop()
        times: list[float] = []

        async def one() -> None:
            await bucket.acquire()
            times.append(loop.time())

        await asyncio.gather(*(one() for _ in range(100)))
        during = repr(bucket)
        await asyncio.sleep(55.1)
        return times, during, repr(bucket)

    times, during, after = run_pure(main())
    assert [len(list(g)) for _, g in itertools.groupby(times)] == [1, 2, 4, 8, 16, 32, 37]
    assert times[-1] == pytest.approx(6.0)
    assert "ramp 63/100" in during
    assert "ramp" not in after


def test_the_ramp_ends_one_window_after_the_first_grant() -> None:
    """Whatever the answers, ``per + margin`` seconds after its first grant a fresh bucket
    grants its whole quota at once."""

    async def main() -> list[float]:
        bucket = TokenBucket(10, 1.0, confirm_after=5.0)
        loop = asyncio.get_running_loop()
        await bucket.acquire()
        await asyncio.sleep(1.5)
        times = []
        for _ in range(9):
            await bucket.acquire()
            times.append(loop.time())
        return times

    assert run_pure(main()) == [1.5] * 9


# -- first=True: a call answered 429 keeps its turn ---------------------------------------------


def test_first_waiters_go_ahead_of_the_queue_in_their_own_order() -> None:
    """``acquire(first=True)`` queues ahead of every plain waiter and behind earlier ``first``
    ones; a cancelled ``first`` waiter frees its place."""

    async def main() -> list[str]:
        bucket = TokenBucket(1, 1.0, margin=0.0, ramp=False)
        await bucket.acquire()
        order: list[str] = []

        async def one(name: str, first: bool) -> None:
            await bucket.acquire(first=first)
            order.append(name)

        tasks = [asyncio.ensure_future(one(f"plain{i}", False)) for i in range(3)]
        await asyncio.sleep(0.1)
        tasks.append(asyncio.ensure_future(one("retry0", True)))
        doomed = asyncio.ensure_future(one("retry1", True))
        tasks.append(asyncio.ensure_future(one("retry2", True)))
        await asyncio.sleep(0.1)
        doomed.cancel()
        await asyncio.gather(*tasks)
        assert bucket.waiting == 0
        return order

    assert run_pure(main()) == ["retry0", "retry2", "plain0", "plain1", "plain2"]


def test_first_acquire_on_an_idle_bucket_is_immediate() -> None:
    """``acquire(first=True)`` with nobody waiting and a token left is granted at once."""

    async def main() -> float:
        bucket = TokenBucket(2, 1.0, ramp=False)
        await bucket.acquire(first=True)
        await bucket.acquire(first=True)
        await bucket.acquire(first=True)
        return asyncio.get_running_loop().time()

    assert run_pure(main()) == pytest.approx(1.1, abs=1e-5)


# -- deterministic unit behaviour ---------------------------------------------------------------


def test_timeout_raises_and_the_next_waiter_is_not_delayed() -> None:
    """A waiter that times out raises :class:`LimiterTimeout` at its deadline; the waiter behind
    it is granted when it would have been anyway; ``timeout=0`` fails at once when busy."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(1, 10.0, margin=0.0, ramp=False)
        await bucket.acquire()
        behind = loop.create_task(bucket.acquire())
        with pytest.raises(LimiterTimeout):
            await bucket.acquire(timeout=0)
        assert loop.time() == 0.0
        with pytest.raises(TimeoutError):
            await bucket.acquire(timeout=2.0)
        assert loop.time() == pytest.approx(2.0)
        await behind
        assert loop.time() == pytest.approx(10.0, abs=1e-5)
        # Nothing was consumed by the two timeouts: the next token is back a window later.
        await bucket.acquire()
        assert loop.time() == pytest.approx(20.0, abs=1e-5)

    run_pure(main())


def test_cancelled_waiter_frees_its_place_at_once() -> None:
    """Cancelling the head waiter lets the one behind take its token at the same instant."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(1, 10.0, margin=0.0, ramp=False)
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

    assert run_pure(main()) == pytest.approx([10.0, 20.0], abs=1e-5)


@pytest.mark.parametrize("kind", ["window", "ramp", "paced"])
def test_grant_given_back_when_cancelled_before_use(kind: str) -> None:
    """A waiter cancelled after its grant but before it could run gives the token back."""
    make: Callable[[], TokenBucket] = {
        "window": lambda: TokenBucket(1, 10.0, margin=0.0, ramp=False),
        "ramp": lambda: TokenBucket(1, 10.0, margin=0.0, confirm_after=100.0),
        "paced": lambda: TokenBucket(1, 10.0, margin=0.0, burst=1),
    }[kind]

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        bucket = make()
        await bucket.acquire()
        coro = bucket.acquire()
        fut = coro.send(None)  # suspended on its waiter future, driven by hand
        await asyncio.wait([fut])
        assert loop.time() == pytest.approx(10.0, abs=1e-5)
        with pytest.raises(asyncio.CancelledError):
            coro.throw(asyncio.CancelledError())
        await bucket.acquire()  # takes the token given back, at once
        got = [loop.time()]
        await bucket.acquire()
        got.append(loop.time())
        return got

    assert run_pure(main()) == pytest.approx([10.0, 20.0], abs=1e-5)


def test_dropped_waiter_coroutine_leaves_the_queue() -> None:
    """A waiting ``acquire`` coroutine that is closed (never resumed) leaves the queue and
    consumes nothing."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(1, 1.0, margin=0.0, ramp=False)
        await bucket.acquire()
        coro = bucket.acquire()
        coro.send(None)
        coro.close()
        assert bucket.waiting == 0
        await bucket.acquire()
        return loop.time()

    assert run_pure(main()) == pytest.approx(1.0, abs=1e-5)


def test_pause_holds_everyone_and_the_window_learns_the_share_left() -> None:
    """``pause(s)`` (a 429) holds queued waiters and newcomers alike for ``s`` seconds, then the
    head of the queue takes the slot the reset announced; the bucket keeps to the grants the
    server held, and once the window is over it probes for more, one grant at a time."""

    async def main() -> tuple[list[float], str]:
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(10, 10.0, margin=0.0, ramp=False)
        times: list[float] = []

        async def one() -> None:
            await bucket.acquire()
            times.append(loop.time())

        await asyncio.gather(*(one() for _ in range(6)))  # 6 granted at t=0, all answered
        for _ in range(6):
            bucket.confirm()
        await bucket.pause(3.0)  # the server was full: someone else holds the other 4 slots
        text = repr(bucket)
        queued = [loop.create_task(one()) for _ in range(8)]
        await asyncio.sleep(1.0)
        later = [loop.create_task(one()) for _ in range(2)]
        await asyncio.gather(*queued, *later)
        return times, text

    times, text = run_pure(main())
    assert times[:6] == [0.0] * 6
    assert "learnt 5/10" in text
    # The head of the queue takes the slot the reset announced, at t=3. Of ours 5 were held (one
    # refused): their tokens come back at t=10, with one probe; each probe confirmed (here by
    # a second of silence) lets the next one go; at t=13 the token of t=3 is back.
    assert times[6] == pytest.approx(3.0)
    assert times[7:12] == pytest.approx([10.0] * 5, abs=1e-5)
    assert times[12:] == pytest.approx([11.0, 12.0, 13.0, 13.0], abs=1e-5)


def test_paced_bucket_keeps_its_small_burst_and_pace() -> None:
    """``paced=True`` keeps the former rule: a burst of 2% of the rate, then one grant per
    ``(per + margin) / (rate + 1 - burst)``."""

    async def main() -> tuple[list[float], TokenBucket]:
        bucket = TokenBucket(100, 60.0, paced=True)
        assert (bucket.paced, bucket.burst) == (True, 2)
        return await saturate(bucket, 3.0, consumers=10), bucket

    times, bucket = run_pure(main())
    assert times[:2] == [0.0, 0.0]
    assert times[2] == pytest.approx(61.0 / 99, rel=1e-6)
    assert bucket.interval == pytest.approx(61.0 / 99, rel=1e-6)


def test_paced_pause_delays_everyone_then_resumes_paced() -> None:
    """A paced bucket's ``pause(s)`` holds everyone for ``s`` seconds; afterwards grants resume
    one ``interval`` apart, without a burst."""

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


@pytest.mark.parametrize("seconds", [0.0, -5.0, math.nan])
def test_empty_pause_holds_nobody(seconds: float) -> None:
    """A 429 announcing a wait of zero, negative or NaN seconds pauses nobody: a paced bucket
    grants at once, a window bucket learns the same as from ``pause(0)``."""

    async def main(seconds: float) -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        paced = TokenBucket(5, 10.0, margin=0.0, burst=2)
        await paced.acquire()
        await paced.pause(seconds)
        await paced.acquire()
        at_once = loop.time()
        window = TokenBucket(5, 10.0, margin=0.0, ramp=False)
        for _ in range(3):
            await window.acquire()
        await window.pause(seconds)  # 2 of ours held: the other 3 slots are someone else's
        await window.acquire()
        await window.acquire()
        return at_once, loop.time() - at_once

    at_once, waited = run_pure(main(seconds))
    assert (at_once, waited) == run_pure(main(0.0))
    assert at_once == 0.0
    assert waited == pytest.approx(10.0, abs=1e-5)


def test_two_windows_hold_together() -> None:
    """``also=[(5, 1.0)]`` adds a window: 12 calls at once on 10 per 10 s and 5 per 1 s go 5,
    5 a second later, and the last 2 when the first window's tokens are back."""

    async def main() -> list[float]:
        bucket = TokenBucket(10, 10.0, also=[(5, 1.0)], margin=0.0, ramp=False)
        loop = asyncio.get_running_loop()
        times: list[float] = []

        async def one() -> None:
            await bucket.acquire()
            times.append(loop.time())

        await asyncio.gather(*(one() for _ in range(12)))
        return times

    assert run_pure(main()) == pytest.approx([0.0] * 5 + [1.0] * 5 + [10.0] * 2, abs=1e-5)


# -- Limits: the client's per-call default ------------------------------------------------------


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


def test_default_limits_saturated_keep_both_quotas() -> None:
    """Saturated for three minutes, the default "other" bucket stays within 1000 per 61 s and
    50 per 1.1 s, and uses them: 1000 calls in each minute once its ramp is over."""
    times = run_pure(saturate(Limits().for_call("messages.list"), 183.0, consumers=60))
    assert max_in_window(times, 61.0) <= 1000
    assert max_in_window(times, 1.1) <= 50
    assert len([t for t in times if 61.0 <= t < 122.0]) == 1000


def test_limits_are_per_call_and_sized_to_the_documented_quotas() -> None:
    """``Limits`` gives each call its own bucket: 100/min for runs.create and skills.start,
    1000/min and 50/s for the others; ``quotas`` overrides one call, with one or more windows."""
    limits = Limits()
    create, start, get = (limits.for_call(c) for c in ("runs.create", "skills.start", "runs.get"))
    assert isinstance(create, TokenBucket)
    assert isinstance(start, TokenBucket)
    assert isinstance(get, TokenBucket)
    assert (create.rate, create.per) == (100, 60.0)
    assert (start.rate, start.per) == (100, 60.0)
    assert (get.rate, get.per) == (1000, 60.0)
    assert get.interval == pytest.approx(61.0 / 1000, rel=1e-6)
    assert len({id(create), id(start), id(get), id(limits.for_call("messages.list"))}) == 4
    assert limits.for_call("runs.get") is get
    custom = Limits({"runs.get": (5, 1.0)}).for_call("runs.get")
    assert isinstance(custom, TokenBucket)
    assert (custom.rate, custom.per) == (5, 1.0)
    two = Limits({"runs.get": [(5, 1.0), (2, 0.1)]}, default=(7, 2.0))
    assert isinstance(two.for_call("runs.get"), TokenBucket)
    other = two.for_call("sessions.get")
    assert isinstance(other, TokenBucket)
    assert (other.rate, other.per) == (7, 2.0)


def test_scaled_limits_shrink_every_window() -> None:
    """``Limits.scaled(s)`` multiplies every window of the documented quotas (and of the ones
    given) by ``s``: the match of a ``FakeAily(time_scale=s)``."""
    limits = Limits.scaled(0.05, {"runs.get": [(5, 1.0), (2, 0.1)]}, default=(7, 2.0))
    start, get, other = (limits.for_call(c) for c in ("skills.start", "runs.get", "runs.list"))
    assert isinstance(start, TokenBucket)
    assert isinstance(get, TokenBucket)
    assert isinstance(other, TokenBucket)
    assert [start.rate, get.rate, other.rate] == [100, 5, 7]
    assert [start.per, get.per, other.per] == pytest.approx([3.0, 0.05, 0.1])
    with pytest.raises(ValueError, match="scale"):
        Limits.scaled(0.0)


def test_saturating_one_call_does_not_slow_another() -> None:
    """A saturated ``skills.start`` bucket leaves ``runs.get`` grants immediate."""

    async def main() -> float:
        limits = Limits()
        loop = asyncio.get_running_loop()
        hog = loop.create_task(saturate(limits.for_call("skills.start"), 120.0))
        await limits.for_call("runs.get").acquire()
        await asyncio.sleep(70.0)  # both ramps are over
        before = loop.time()
        for _ in range(10):
            await limits.for_call("runs.get").acquire()
        waited = loop.time() - before
        await hog
        return waited

    assert run_pure(main()) == 0.0


def test_bucket_meets_the_protocols_and_validates_its_arguments() -> None:
    """``TokenBucket`` is a :class:`RateLimiter`, a :class:`LimiterState` and takes feedback
    (:class:`QuotaFeedback`); it rejects nonsense and shows its state in ``repr``."""
    bucket = TokenBucket(100, 60.0, name="skills.start")
    assert isinstance(bucket, RateLimiter)
    assert isinstance(bucket, LimiterState)
    assert isinstance(bucket, QuotaFeedback)
    assert "skills.start" in repr(bucket)
    assert "waiting=0" in repr(bucket)
    assert "ramp 0/100" in repr(bucket)
    assert bucket.burst == 100
    assert not bucket.paced
    bad: list[Callable[[], object]] = [
        lambda: TokenBucket(0),
        lambda: TokenBucket(1.5),  # type: ignore[arg-type]
        lambda: TokenBucket(True),
        lambda: TokenBucket(10, 0.0),
        lambda: TokenBucket(10, math.inf),
        lambda: TokenBucket(10, also=[(0, 1.0)]),
        lambda: TokenBucket(10, also=[(5, -1.0)]),
        lambda: TokenBucket(10, burst=11),
        lambda: TokenBucket(10, burst=0),
        lambda: TokenBucket(10, paced=True, also=[(5, 1.0)]),
        lambda: TokenBucket(10, margin=-1.0),
        lambda: TokenBucket(10, confirm_after=0.0),
    ]
    for make in bad:
        with pytest.raises(ValueError):  # noqa: PT011
            make()


def test_confirm_outside_a_loop_is_harmless() -> None:
    """``confirm()`` with nothing granted does nothing (it confirms no later grant ahead of
    time), and outside a running loop, with a caller waiting, it does not raise."""
    bucket = TokenBucket(3, 1.0)
    bucket.confirm()  # nothing granted: no effect
    assert bucket.waiting == 0

    async def first_grant_then_wait() -> float:
        await bucket.acquire()  # the ramp's first grant; the stray confirm() must not count
        return bucket.next_grant_in()

    assert run_pure(first_grant_then_wait()) == pytest.approx(1.0)

    async def one_waiting() -> TokenBucket:
        waiting = TokenBucket(1, 1.0, ramp=False)
        await waiting.acquire()
        asyncio.get_running_loop().create_task(waiting.acquire())
        await asyncio.sleep(0)
        return waiting

    waiting = run_pure(one_waiting())
    waiting.confirm()  # no running loop here, and a waiter queued: nothing raises


def test_limits_repr_shows_the_quotas_and_the_calls_in_use() -> None:
    """``repr(Limits...)`` tells the quotas it enforces (scaled ones too) and the calls that
    have a bucket so far."""
    limits = Limits.scaled(0.05)
    assert repr(limits) == (
        "Limits(runs.create=100/3s, skills.start=100/3s, default=1000/3s and 50/0.05s; "
        "in use: none yet)"
    )
    limits.for_call("skills.start")
    limits.for_call("runs.get")
    assert repr(limits).endswith("; in use: runs.get, skills.start)")
