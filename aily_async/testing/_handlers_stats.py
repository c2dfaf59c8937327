"""Endpoint handler of tenant app stats: usage figures of every app the fake has seen.

An app is "seen" once a call named it (a run, a data asset call, a knowledge ask). The figures
are made up from what the fake holds: runs and distinct sessions per day of the period asked
for, a credit per run. Choices where the SDK is silent: ``start_at`` / ``end_at`` are required;
when both are numbers (taken as epoch seconds) the period must not end before it starts;
``filter_type`` is accepted and ignored; a user token is refused (the SDK sends a tenant token
only) with HTTP 400, code 2700001. ``total_credit_usage`` is written as a string and the
averages as numbers (the SDK types all four ``float``, and keeps whatever arrives).
"""

from __future__ import annotations

import functools
from typing import Any

from ._assets_state import AssetStore
from ._clock import Clock
from ._context import Ctx, Handler
from ._paging import Entry, paged
from ._store import Store
from ._wire import invalid

__all__ = ["StatsHandlers"]

_DAY = 86400.0


def _period_days(start: str, end: str) -> float:
    try:
        first, last = float(start), float(end)
    except ValueError:
        return 1.0
    if last < first:
        raise invalid("end_at", "must not be before start_at")
    return max(1.0, (last - first) / _DAY)


class StatsHandlers:
    """Handler of the ``app_stats.list`` route."""

    def __init__(self, store: Store, assets: AssetStore, clock: Clock) -> None:
        self._store = store
        self._assets = assets
        self._clock = clock

    def routes(self) -> dict[str, Handler]:
        """Map each route key this class serves to its handler."""
        return {"app_stats.list": self.list}

    def _apps(self) -> dict[str, int]:
        seen = dict(self._assets.apps_seen)
        for run in self._store.runs.values():
            seen.setdefault(run.app_id, self._clock.wall_ms(run.created))
        return seen

    def _stat(self, app_id: str, created_ms: int, days: float) -> dict[str, Any]:
        runs = [run for run in self._store.runs.values() if run.app_id == app_id]
        sessions = {run.session_id for run in runs}
        return {
            "id": app_id,
            "name": f"Fake app {app_id}",
            "avg_daily_active_user_num": round(len(sessions) / days, 3),
            "avg_daily_run_num": round(len(runs) / days, 3),
            "avg_daily_credit_usage": round(len(runs) / days, 3),
            "total_credit_usage": f"{float(len(runs)):.1f}",
            "owner": {
                "id": "ou_fake_owner",
                "name": "Fake Owner",
                "tenant_id": "fake_tenant",
                "lark_user_id": "fake_owner",
                "open_user_id": "ou_fake_owner",
                "open_id": "ou_fake_owner",
            },
            "app_created_at": str(created_ms),
        }

    async def list(self, ctx: Ctx) -> dict[str, Any]:
        """``GET /app_stats``: one entry per app seen, in the order first seen."""
        if ctx.request.headers.get("Authorization", "").split(" ")[-1].startswith("u-"):
            raise invalid("Authorization", "app stats take a tenant access token")
        query = ctx.request.query
        start, end = query.get("start_at", ""), query.get("end_at", "")
        if not start:
            raise invalid("start_at", "is required")
        if not end:
            raise invalid("end_at", "is required")
        days = _period_days(start, end)
        entries: list[Entry] = [
            ((float(index),), functools.partial(self._stat, app_id, created_ms, days))
            for index, (app_id, created_ms) in enumerate(self._apps().items())
        ]
        return paged(query, "items", entries)
