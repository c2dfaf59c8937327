"""The grant rule of the window bucket: a record of grant times, and what answers teach.

:class:`Windows` decides, for :class:`~aily_async.TokenBucket`, whether a grant may be made at a
given instant; it keeps no clock and no queue (the bucket passes the time in and serves its
waiters in order). Its state:

* **The record**: the times of this process's grants, newest last. A window ``(rate, per)``
  allows a grant at ``t`` when fewer than ``limit`` grants of the record fall in
  ``(t - span, t]``, where ``span = per + margin`` (a token spent at ``g`` comes back at
  ``g + span``) and ``limit ≤ rate`` is the share of the quota this process may use, learnt
  from the answers (``rate`` until a 429 says otherwise). Nothing else restricts grants, so
  with ``limit = rate`` from the start the record *is* the guarantee: never more than ``rate``
  grants in any ``span``.
* **The ramp** (``ramp=True``): a process that starts knows nothing of the grants made before it
  (a previous run of itself, another worker). Its first window is treated as unknown: the limit
  starts at 0 and grows by one for each grant *confirmed* (answered, and not 429), with at most
  ``1 + confirmed`` grants unconfirmed at a time, so the burst doubles every round trip (1, 2,
  4, …). ``span`` seconds after the first grant the unknown grants are out of the window and the
  limit is ``rate``. A grant counts as confirmed when the client says so (:meth:`confirm`, in
  order of the grants) or, failing that, ``confirm_after`` seconds after it was made with no
  429 in between.
* **Learning from a 429** (:meth:`refused`): the server's window was full, so someone else uses
  the quota too. One grant (the refused one) leaves the record, nothing is granted for the
  announced reset, and the window's ``limit`` becomes the number of this process's grants the
  server may hold (those of the last ``per`` seconds; another refused one brings its own 429
  and lowers it again).
* **Probing**: a limit below ``rate`` is tested again once the window is over (``backoff``
  windows after the last 429): one grant above the limit at a time, each confirmed one raising
  the limit by one, until ``rate`` or the next 429. A probe that fails to raise the limit
  doubles ``backoff`` (at most 8 windows), so a steady foreign consumer costs one 429 per
  probe, at most one per 5 windows once settled. After a 429 that ended the ramp, the next
  round doubles like the ramp (the full window was probably the unknown history).

With several windows (``1000`` per minute *and* ``50`` per second), a grant needs every
window's leave, and a 429 teaches the window it most likely came from (the one named by the
answer's limit, else the fullest that could have announced that reset).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence

__all__: list[str] = []  # the rule behind TokenBucket; nothing here is public

#: Windows between probes of a limit lowered by a 429, at most.
MAX_BACKOFF = 8

# A hair added to each span, so float rounding can never let a grant in early.
_EPS = 1e-6

_Probe = tuple[int, float]  # (grant number, grant time) of a grant above the limit


def below(grants: deque[float], k: int, now: float, span: float) -> bool:
    """Whether fewer than ``k`` of ``grants`` (sorted) fall in ``(now - span, now]``."""
    return k > 0 and (len(grants) < k or grants[-k] + span <= now)


class Window:
    """One ``rate`` per ``per`` constraint, and the share of it learnt to be ours."""

    __slots__ = (
        "backoff",
        "base",
        "confirmed",
        "doubling",
        "history_until",
        "limit",
        "pending",
        "per",
        "probe_at",
        "rate",
        "span",
    )

    def __init__(self, rate: int, per: float, margin: float, *, ramp: bool) -> None:
        self.rate = rate
        self.per = per
        self.span = per + margin + _EPS
        self.limit = 0 if ramp else rate  # grants allowed in a span without probing
        # End of the unknown history (the ramp): inf until the first use sets it; None: known.
        self.history_until: float | None = math.inf if ramp else None
        self.doubling = ramp  # probes grow ×2 per round trip (the ramp) or +1 (after a 429)
        self.probe_at = -math.inf  # when the limit may be probed above
        self.backoff = 1  # windows from a 429 to the next probe
        self.base = rate  # the limit measured at the latest 429
        self.pending: deque[_Probe] = deque()  # probes not confirmed yet
        self.confirmed = 0  # probes confirmed since the latest 429

    @property
    def learning(self) -> bool:
        """Whether anything limits grants beyond the record (so the fast path is off)."""
        return self.limit < self.rate or bool(self.pending) or self.history_until is not None

    def allowance(self) -> int:
        """How many probes may be unconfirmed at once."""
        return 1 + self.confirmed if self.doubling else 1


class Windows:
    """The grant rule of a window bucket over ``windows`` ``(rate, per, margin)``."""

    __slots__ = (
        "_acked",
        "_checks",
        "_confirm_after",
        "_confirming",
        "_fast",
        "_floor",
        "_max_confirm_after",
        "_reset_until",
        "_seq",
        "grants",
        "windows",
    )

    def __init__(
        self, windows: Sequence[tuple[int, float, float]], *, ramp: bool, confirm_after: float
    ) -> None:
        self.windows = tuple(Window(r, p, m, ramp=ramp) for r, p, m in windows)
        self.grants: deque[float] = deque(maxlen=max(w.rate for w in self.windows))
        self._checks = tuple((w.rate, w.span) for w in self.windows)
        self._confirm_after = confirm_after
        # Raised (up to half the shortest window) when 429s take longer than that to come.
        self._max_confirm_after = max(confirm_after, min(w.span for w in self.windows) / 2)
        self._confirming = False  # whether confirm() was ever called (answers are in order)
        self._floor = -math.inf  # nothing is granted before (a pause)
        # The slot a 429's reset announced: one grant at the end of the pause, whatever the
        # limit (within the rate), until then (-inf: none).
        self._reset_until = -math.inf
        self._seq = 0  # grants made (given-back ones excluded)
        self._acked = 0  # grants answered, in the order they were made
        self._fast = not ramp

    # -- deciding -----------------------------------------------------------------------------

    def grant_now(self, now: float) -> bool:
        """Make a grant at ``now`` if the rule allows it; tell whether it did."""
        if self._fast and now >= self._floor:
            grants = self.grants
            for rate, span in self._checks:
                if len(grants) >= rate and grants[-rate] + span > now:
                    return False
            grants.append(now)
            self._seq += 1
            return True
        return self._grant_learning(now)

    def _grant_learning(self, now: float) -> bool:
        if now < self._floor:
            return False
        self._settle(now)
        probes: list[Window] = []
        grants = self.grants
        for w in self.windows:
            if below(grants, w.limit, now, w.span):
                continue
            if self._probe_ready_at(w, now) > now:
                if self._reset_ready_at(now) > now:
                    return False
                self._reset_until = -math.inf  # the announced slot, taken
                probes = []
                break
            probes.append(w)
        grants.append(now)
        self._seq += 1
        for w in probes:
            w.pending.append((self._seq, now))
        return True

    def next_in(self, now: float) -> float:
        """Seconds from ``now`` to the earliest grant, if nothing is granted or answered before
        (0 when one may be made now)."""
        self._settle(now)
        t = max(now, self._floor)
        ready = t
        for w in self.windows:
            ready = max(ready, self._ready_at(w, t))
        return min(ready, self._reset_ready_at(t)) - now

    def queue_in(self, now: float, ahead: int) -> float:
        """Seconds from ``now`` to the grant of a caller with ``ahead`` callers before it, if
        nothing else is granted meanwhile: never later than that grant. The queue's head waits
        :meth:`next_in`; behind it each window is counted at its full rate, since a limit
        learnt from a 429 can rise again (the reset's slot, the probes) and the ramp ends
        within a window. Exact while nothing limits a window below its rate."""
        head = now + self.next_in(now)
        grants = self.grants
        ready = head
        for w in self.windows:
            # Grant j waits for the token of the grant ``rate`` before it: for the old grants
            # the record says when; the queue's own grants are ``span`` apart per ``rate``.
            rounds, j = divmod(ahead, w.rate)
            older = len(grants) + j - w.rate
            start = head if older < 0 else max(head, grants[older] + w.span)
            ready = max(ready, start + rounds * w.span)
        return ready - now

    def _room_at(self, w: Window, t: float) -> float:
        """The earliest instant ``>= t`` at which ``w`` holds fewer than ``rate`` grants."""
        grants = self.grants
        return t if below(grants, w.rate, t, w.span) else max(t, grants[-w.rate] + w.span)

    def _reset_ready_at(self, t: float) -> float:
        """When the slot a 429 announced may be taken (``inf``: none)."""
        if t >= self._reset_until:
            return math.inf
        ready = max(self._room_at(w, t) for w in self.windows)
        return ready if ready < self._reset_until else math.inf

    def _ready_at(self, w: Window, t: float) -> float:
        """The earliest instant ``>= t`` at which ``w`` allows a grant, if nothing is granted
        or answered before (probes in flight confirmed by silence meanwhile)."""
        grants = self.grants
        limit, confirmed, history_until = w.limit, w.confirmed, w.history_until
        pending = [at + self._confirm_after for _, at in w.pending]  # confirmed by silence
        k = 0  # of them confirmed, at time t
        while True:
            if below(grants, limit, t, w.span):
                return t
            # Within the limit once the limit-th newest grant's token is back.
            normal = grants[-limit] + w.span if limit > 0 else math.inf
            room = self._room_at(w, t)
            # During the ramp: at its end the limit is the rate.
            history = math.inf if history_until is None else max(room, history_until)
            allowance = 1 + confirmed if w.doubling else 1
            probe = max(room, w.probe_at) if len(pending) - k < allowance else math.inf
            ready = max(t, min(normal, probe, history))
            if k == len(pending) or ready < pending[k]:
                return ready
            # The next probe in flight is confirmed by silence first: go on from there.
            t = max(t, pending[k])
            k += 1
            confirmed += 1
            limit = min(w.rate, limit + 1)
            if limit >= w.rate:
                history_until = None
                pending = pending[:k]

    def _probe_ready_at(self, w: Window, t: float) -> float:
        """The earliest instant ``>= t`` a grant above ``w``'s limit may be made, with the
        probes in flight as they are (``inf``: not before one is confirmed)."""
        room = self._room_at(w, t)
        # During the ramp: at its end the limit is the rate.
        history = math.inf if w.history_until is None else max(room, w.history_until)
        probe = max(room, w.probe_at) if len(w.pending) < w.allowance() else math.inf
        return max(t, min(probe, history))

    # -- learning ----------------------------------------------------------------------------

    def _settle(self, now: float) -> None:
        """Apply the confirmations so far, and the end of the ramp."""
        acked = self._acked
        after = self._confirm_after
        for w in self.windows:
            pending = w.pending
            # (The same sum as the wake-up time in _ready_at: float rounding must agree.)
            while pending and (pending[0][0] <= acked or pending[0][1] + after <= now):
                pending.popleft()
                w.limit = min(w.rate, w.limit + 1)
                w.confirmed += 1
            if w.history_until is not None:
                if w.history_until == math.inf:  # first use: the unknown grants leave by then
                    w.history_until = now + w.span
                if now >= w.history_until or w.limit >= w.rate:
                    w.history_until = None
                    w.limit = w.rate
            if w.limit >= w.rate:
                pending.clear()
        self._fast = not any(w.learning for w in self.windows)

    def confirm(self) -> bool:
        """Note that the oldest unanswered grant was answered (not 429); tell whether that may
        allow a grant sooner."""
        self._confirming = True
        if self._acked < self._seq:
            self._acked += 1
        if self._fast:
            return False
        return any(w.pending and w.pending[0][0] <= self._acked for w in self.windows)

    def refused(self, now: float, seconds: float, limit: int | None = None) -> None:
        """Learn from a 429 answered at ``now`` that announced ``seconds`` until a slot frees
        (and, if known, the ``limit`` of the quota that was full)."""
        grants = self.grants
        unanswered = self._seq - self._acked
        if self._confirming and 0 < unanswered <= len(grants):
            # Answers come in order: the refused grant is the oldest unanswered one. A 429 must
            # come before the grant is taken as accepted by silence.
            latency = now - grants[len(grants) - unanswered]
            self._confirm_after = min(
                max(self._confirm_after, 1.5 * latency), self._max_confirm_after
            )
        self._settle(now)
        if self._acked < self._seq:
            self._acked += 1
            for other in self.windows:  # the refused grant, if it was a probe, proved nothing
                while other.pending and other.pending[0][0] <= self._acked:
                    other.pending.popleft()
        if seconds > 0:
            self._floor = max(self._floor, now + seconds)
        w = self._attribute(now, seconds, limit)
        if w.history_until is not None or w.limit >= w.rate:
            # The first 429 of an episode: the slot its reset announced may be taken then (by
            # the call refused, first in the queue), whatever is learnt below. Not again until
            # the limit is back to the rate: against a steady foreign consumer each such slot
            # is a race, and losing it a 429.
            self._reset_until = self._floor + min(x.per for x in self.windows)
        # The refused grant never counted at the server: drop one from the record, the oldest
        # the server may still hold (so the record still covers what the server holds).
        first = bisect.bisect_right(grants, now - w.per)
        if first < len(grants):
            del grants[first]
        # The grants the server may still hold: in flight ones included (any of them refused
        # brings its own 429 and lowers it again).
        measured = len(grants) - bisect.bisect_right(grants, now - w.per)
        in_round = w.limit < w.rate and now >= w.probe_at
        if w.history_until is not None:  # the ramp met a full window: probably the history
            w.history_until = None
            w.doubling = True  # gone when the next round starts, most likely
            w.backoff = 1
        elif in_round:
            w.doubling = False
            w.backoff = 1 if measured > w.base else min(MAX_BACKOFF, 2 * w.backoff)
        elif w.limit >= w.rate:  # first 429 after a clean spell
            w.doubling = False
            w.backoff = 1
        w.base = w.limit = measured
        w.probe_at = max(w.probe_at, now + w.backoff * w.span)
        w.confirmed = 0
        w.pending.clear()
        self._fast = False

    def _attribute(self, now: float, seconds: float, limit: int | None) -> Window:
        """The window a 429 most likely came from."""
        windows = self.windows
        if len(windows) == 1:
            return windows[0]
        for w in windows:
            if w.rate == limit:
                return w
        # A window of ``span`` seconds never announces a longer wait (resets are rounded up).
        could = [w for w in windows if seconds <= math.ceil(w.span)] or list(windows)
        grants = self.grants

        def fullness(w: Window) -> float:
            return (len(grants) - bisect.bisect_right(grants, now - w.per)) / w.rate

        fullest = max(could, key=fullness)
        if fullness(fullest) >= 0.5:
            return fullest
        # Our own grants explain little of it (someone else's, or what was spent before we
        # started): blame the longest window, which can hold the most of it. The safe mistake:
        # the 429s stop, at worst this quota is underused until the window is over.
        return max(could, key=lambda w: w.span)

    def record(self, at: float) -> None:
        """Count a grant made at ``at`` elsewhere (by another limiter of this process)."""
        grants = self.grants
        if len(grants) == grants.maxlen:
            if not grants or at <= grants[0]:
                return  # older than every grant kept: it can no longer matter
            grants.popleft()
        bisect.insort(grants, at)
        self._seq += 1
        self._acked += 1  # answered, as far as this rule is concerned

    def untake(self, at: float) -> None:
        """Give back a grant made at ``at`` whose caller never used it."""
        grants = self.grants
        for i in range(len(grants) - 1, -1, -1):
            if grants[i] == at:
                del grants[i]
                break
            if grants[i] < at:
                return
        else:
            return
        for w in self.windows:
            if w.pending and w.pending[-1][0] == self._seq:
                w.pending.pop()
        self._seq -= 1
        self._acked = min(self._acked, self._seq)

    # -- reporting ---------------------------------------------------------------------------

    @property
    def interval(self) -> float:
        """Mean seconds per grant at the full quota of the tightest window."""
        return max(w.span / w.rate for w in self.windows)

    def describe(self) -> str:
        """The learnt state, for a repr: ``""`` while nothing limits beyond the quota."""
        parts = []
        for w in self.windows:
            if w.history_until is not None:
                parts.append(f"ramp {w.limit}/{w.rate}")
            elif w.limit < w.rate:
                parts.append(f"learnt {w.limit}/{w.rate}")
        return ", ".join(parts)
