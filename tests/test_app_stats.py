"""client.app_stats.list against a real FakeAily over HTTP: every app's figures across pages,
numbers sent as strings, the tenant-token rule, errors, retries and validation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from aily_async import (
    AilyAPIError,
    AilyClient,
    AilyInvalidParamsError,
    AilyResponseError,
    AilyValidationError,
    AppOwner,
    AppStat,
    RetryPolicy,
)
from aily_async.testing import FakeAily, RunPlan

APPS = ["spring_a__c", "spring_b__c", "spring_c__c"]
DAY = 86400


@pytest.fixture
async def quick() -> AsyncIterator[tuple[FakeAily, AilyClient]]:
    """A fake with instant runs, and a client with no-wait retries."""
    async with (
        FakeAily(run_script=RunPlan(queued=0, duration=0)) as fake,
        AilyClient(
            "cli_test", "secret", base_url=fake.url, retry=RetryPolicy.no_wait(), limiter=None
        ) as client,
    ):
        yield fake, client


async def test_stats_of_every_app_across_pages(quick: tuple[FakeAily, AilyClient]) -> None:
    """Each app the fake has seen has an entry; pages are walked; the query carries the
    period and filter as given; averages arrive as numbers, the total as a string."""
    fake, client = quick
    for app in APPS:
        await client.runs.run("hi", app_id=app)
    await client.runs.run("again", app_id=APPS[0])
    fake.reset_log()
    stats = [
        stat
        async for stat in client.app_stats.list(
            start_at="0", end_at=str(2 * DAY), filter_type="all", page_size=2
        )
    ]
    assert [stat.id for stat in stats] == APPS
    assert fake.route_counts()["app_stats.list"] == 2
    assert fake.requests[0].query == {
        "start_at": "0",
        "end_at": str(2 * DAY),
        "filter_type": "all",
        "page_size": "2",
    }
    first = stats[0]
    assert isinstance(first, AppStat)
    assert first.avg_daily_run_num == 1.0
    assert first.total_credit_usage == 2.0
    assert isinstance(first.owner, AppOwner)
    assert first.owner.open_id == "ou_fake_owner"
    assert first.app_created_at is not None
    assert first.app_created_at.isdigit()


async def test_numbers_as_strings_and_nulls_decode(quick: tuple[FakeAily, AilyClient]) -> None:
    """Figures sent as numbers or numeric strings, a null owner and unknown fields decode; a
    figure that is not a number is a response error naming it."""
    fake, client = quick
    items = [
        {"id": "spring_x__c", "avg_daily_run_num": "12.5", "total_credit_usage": 3, "new": 1},
        {"id": "spring_y__c", "owner": None, "avg_daily_credit_usage": None},
    ]
    body = {"code": 0, "data": {"items": items, "has_more": False}}
    fake.inject("app_stats.list", status=200, body=body)
    stats = [s async for s in client.app_stats.list(start_at="1", end_at="2")]
    assert stats == [
        AppStat("spring_x__c", avg_daily_run_num=12.5, total_credit_usage=3.0),
        AppStat("spring_y__c"),
    ]
    bad = {"code": 0, "data": {"items": [{"id": "a", "avg_daily_run_num": "lots"}]}}
    fake.inject("app_stats.list", status=200, body=bad)
    with pytest.raises(AilyResponseError, match=r"data\.items\[0\]\.avg_daily_run_num"):
        [s async for s in client.app_stats.list(start_at="1", end_at="2")]


async def test_user_token_and_bad_period_are_refused(quick: tuple[FakeAily, AilyClient]) -> None:
    """The fake refuses a user token (the SDK sends tenant tokens only) and a period that ends
    before it starts, with the API's 400."""
    fake, client = quick
    async with AilyClient(
        user_access_token=fake.issue_user_token(), base_url=fake.url, limiter=None
    ) as as_user:
        with pytest.raises(AilyInvalidParamsError, match="tenant access token"):
            [s async for s in as_user.app_stats.list(start_at="1", end_at="2")]
    with pytest.raises(AilyInvalidParamsError, match="end_at"):
        [s async for s in client.app_stats.list(start_at="10", end_at="2")]


async def test_server_errors_are_retried(quick: tuple[FakeAily, AilyClient]) -> None:
    """A 500 on a page (a read) is retried; a 4xx is raised at once."""
    fake, client = quick
    await client.runs.run("hi", app_id=APPS[0])
    fake.reset_log()
    fake.inject("app_stats.list", status=500)
    assert [s.id async for s in client.app_stats.list(start_at="1", end_at="2")] == [APPS[0]]
    assert fake.route_counts()["app_stats.list"] == 2
    fake.inject("app_stats.list", status=403, code=99991672)
    with pytest.raises(AilyAPIError, match=r"^app_stats\.list: .*99991672"):
        [s async for s in client.app_stats.list(start_at="1", end_at="2")]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"start_at": ""}, "start_at"),
        ({"end_at": 1700000000}, "end_at"),
        ({"filter_type": ""}, "filter_type"),
        ({"page_size": 0}, "page_size"),
    ],
)
async def test_bad_arguments_are_refused_before_sending(
    quick: tuple[FakeAily, AilyClient], kwargs: dict[str, Any], field: str
) -> None:
    """Bad arguments raise AilyValidationError naming the field; nothing is sent."""
    fake, client = quick
    arguments: dict[str, Any] = {"start_at": "1", "end_at": "2", **kwargs}
    with pytest.raises(AilyValidationError) as info:
        await client.app_stats.list(**arguments).__anext__()
    assert info.value.field == field
    assert fake.requests == []


@pytest.mark.parametrize(
    "call",
    [
        "knowledge.ask",
        "data_assets.upload_file",
        "data_assets.create",
        "data_assets.get",
        "data_assets.list",
        "data_assets.delete",
        "data_asset_tags.list",
        "app_stats.list",
    ],
)
def test_undocumented_quotas_get_the_default_bucket(call: str) -> None:
    """No quota is documented for these calls: each gets its own bucket of the "every other
    call" default, 1000 per minute."""
    client = AilyClient("cli_test", "secret")
    limiter = client.limiter_for(call)
    assert limiter is not None
    assert limiter is not client.limiter_for("sessions.get")
    assert (getattr(limiter, "rate", None), getattr(limiter, "per", None)) == (1000, 60.0)
