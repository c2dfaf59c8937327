"""Strict sliding-window quotas, as the Aily gateway enforces them."""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Mapping, Sequence

from ._models import ROUTES

__all__ = ["DOCUMENTED_LIMITS", "RateLimitConfig", "SlidingWindowLimiter", "resolve_limits"]

Windows = tuple[tuple[int, float], ...]
RateLimitConfig = Mapping[str, Sequence[tuple[int, float]]]

#: The documented quotas: ``(max calls, window seconds)`` pairs, all of which must hold.
DOCUMENTED_LIMITS: dict[str, Windows] = {
    "runs.create": ((100, 60.0),),
    "skills.start": ((100, 60.0),),
    "default": ((1000, 60.0), (50, 1.0)),
}


def resolve_limits(
    config: bool | RateLimitConfig | None, *, time_scale: float = 1.0
) -> dict[str, Windows]:
    """Turn the ``rate_limits`` option into per-route windows (routes left out are unlimited).

    ``True`` means the documented quotas. A mapping gives windows per route key; its
    ``"default"`` entry applies to every route it does not name. Windows are multiplied by
    ``time_scale``.
    """
    if time_scale <= 0:
        raise ValueError(f"time_scale must be > 0, got {time_scale!r}")
    if config is None or config is False:
        return {}
    source: RateLimitConfig = DOCUMENTED_LIMITS if config is True else config
    unknown = set(source) - {*ROUTES, "default"}
    if unknown:
        raise ValueError(f"unknown route keys in rate_limits: {sorted(unknown)}")
    resolved: dict[str, Windows] = {}
    for route in ROUTES:
        windows = source.get(route, source.get("default"))
        if windows is None:
            continue
        checked: list[tuple[int, float]] = []
        for limit, window in windows:
            if int(limit) < 1 or window <= 0:
                raise ValueError(f"bad rate limit for {route}: {(limit, window)!r}")
            checked.append((int(limit), float(window) * time_scale))
        if checked:
            resolved[route] = tuple(checked)
    return resolved


class SlidingWindowLimiter:
    """Count accepted calls per (app, route) and refuse any call that would break a window.

    A call is refused when, for one of its route's ``(limit, window)`` pairs, the calls
    accepted in ``(now - window, now]`` already number ``limit`` or more. Load added by
    :meth:`consume` without an app counts against every app's quota for that route.
    """

    __slots__ = ("_accepted", "_foreign", "_limits", "_span")

    def __init__(self, limits: Mapping[str, Windows]) -> None:
        self._limits = dict(limits)
        self._span = {route: max(w for _, w in windows) for route, windows in limits.items()}
        self._accepted: dict[tuple[str, str], list[float]] = {}
        self._foreign: dict[str, list[float]] = {}

    @property
    def enabled(self) -> bool:
        """Tell whether any route is limited."""
        return bool(self._limits)

    def _prune(self, times: list[float], route: str, now: float) -> None:
        cut = bisect.bisect_right(times, now - self._span[route])
        if cut:
            del times[:cut]

    def acquire(self, app: str, route: str, now: float) -> tuple[int, float] | None:
        """Take a slot for a call now; return ``(limit, seconds until a slot frees)`` if full."""
        windows = self._limits.get(route)
        if windows is None:
            return None
        own = self._accepted.setdefault((app, route), [])
        foreign = self._foreign.setdefault(route, [])
        self._prune(own, route, now)
        self._prune(foreign, route, now)
        refusal: tuple[int, float] | None = None
        for limit, window in windows:
            cutoff = now - window
            lo_own = bisect.bisect_right(own, cutoff)
            lo_foreign = bisect.bisect_right(foreign, cutoff)
            count = len(own) - lo_own + len(foreign) - lo_foreign
            if count < limit:
                continue
            # The (count - limit)-th oldest call in the window must leave it first.
            in_window = list(heapq.merge(own[lo_own:], foreign[lo_foreign:]))
            wait = in_window[count - limit] + window - now
            if refusal is None or wait > refusal[1]:
                refusal = (limit, wait)
        if refusal is None:
            bisect.insort(own, now)
        return refusal

    def consume(self, route: str, n: int, now: float, app: str | None = None) -> None:
        """Count ``n`` calls now as accepted: for ``app``, or for every app when ``None``."""
        if route not in self._limits or n <= 0:
            return
        times = (
            self._foreign.setdefault(route, [])
            if app is None
            else (self._accepted.setdefault((app, route), []))
        )
        self._prune(times, route, now)
        times.extend([now] * n)
        times.sort()

    def __repr__(self) -> str:
        busy = sum(len(t) for t in self._accepted.values()) + sum(
            len(t) for t in self._foreign.values()
        )
        return f"<SlidingWindowLimiter routes={len(self._limits)} tracked_calls={busy}>"
