"""``client.app_stats``: usage statistics of the tenant's Aily apps.

The SDK calls it with a tenant token only (a client holding a user token gets the service's
refusal). ``start_at``, ``end_at`` and ``filter_type`` are passed on as given: their formats and
values are not in the SDK. The averages and totals are read from numbers or numeric strings.
No quota is documented for the call: it gets the client's default bucket for "every other call"
(1000 per minute).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs

from . import _validation as v
from ._models import nullable
from ._resources import Resource, pages

__all__ = ["AppOwner", "AppStat", "AppStats"]


@attrs.frozen
class AppOwner:
    """Who owns an app (the SDK's ``LookupWithAvatar``)."""

    id: str | None = None
    name: str | None = None
    tenant_id: str | None = None
    lark_user_id: str | None = None
    open_user_id: str | None = None
    open_id: str | None = None


@attrs.frozen
class AppStat:
    """One app's usage over the period asked for (``id`` is the app's)."""

    id: str
    name: str | None = None
    avg_daily_active_user_num: float | None = None
    avg_daily_run_num: float | None = None
    avg_daily_credit_usage: float | None = None
    total_credit_usage: float | None = None
    owner: AppOwner | None = None
    app_created_at: str | None = None


class AppStats(Resource):
    """Usage statistics of the tenant's apps."""

    __slots__ = ()

    def list(
        self,
        *,
        start_at: str,
        end_at: str,
        filter_type: str | None = None,
        page_size: int | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[AppStat]:
        """Iterate over every app's statistics from ``start_at`` to ``end_at`` (all pages)."""
        call = "app_stats.list"
        params = {
            "start_at": v.text(call, "start_at", start_at),
            "end_at": v.text(call, "end_at", end_at),
        }
        if filter_type is not None:
            params["filter_type"] = v.text(call, "filter_type", filter_type)
        if page_size is not None:
            params["page_size"] = str(v.positive_int(call, "page_size", page_size))
        return pages(
            self._transport, call, "/app_stats", "items", AppStat, params, timeout=timeout
        )


nullable(AppOwner)
