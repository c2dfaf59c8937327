"""Auth: the tenant token is fetched once, cached, refreshed ahead of expiry and on rejection."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from _vloop import virtual_time

from aily_async import AilyAuthError, AilyClient, AilyResponseError, RetryPolicy
from aily_async.testing import FakeAily

APP = "spring_449d72db2f__c"
SECRET = "test-secret"


def make_client(fake: FakeAily, *credentials: str, **kwargs: Any) -> AilyClient:
    """A client for ``fake`` with retries that do not wait and no client-side limiter."""
    kwargs.setdefault("retry", RetryPolicy.no_wait())
    kwargs.setdefault("limiter", None)
    return AilyClient(*(credentials or ("cli_test", SECRET)), base_url=fake.url, **kwargs)


def statuses(fake: FakeAily, route: str) -> list[int | None]:
    return [r.status for r in fake.requests if r.route == route]


async def test_one_fetch_for_many_concurrent_first_calls(fake: FakeAily) -> None:
    """Fifty calls made at once on a fresh client share one token fetch."""
    fake.inject("auth", status=None, delay=0.05)  # a slow token endpoint widens the race
    async with make_client(fake) as client:
        sessions = await asyncio.gather(*(client.sessions.create() for _ in range(50)))
    assert len({s.id for s in sessions}) == 50
    assert fake.token_fetches == 1
    assert statuses(fake, "sessions.create") == [200] * 50


async def test_token_is_cached(client: AilyClient, fake: FakeAily) -> None:
    """Later calls reuse the cached token."""
    for _ in range(5):
        await client.sessions.create()
    assert fake.token_fetches == 1
    assert fake.requests[0].route == "auth"
    assert fake.requests[0].json == {"app_id": "cli_test", "app_secret": "<redacted>"}


@virtual_time
async def test_token_refreshed_ahead_of_expiry() -> None:
    """A token is replaced before it expires, so no call is ever rejected for an old token."""
    async with FakeAily(token_ttl=100) as fake, make_client(fake) as client:
        session = await client.sessions.create()
        await asyncio.sleep(60)
        await client.sessions.get(session.id)
        assert fake.token_fetches == 1  # still fresh: reused
        await asyncio.sleep(30)  # 90 s old: 10 s before expiry
        await client.sessions.get(session.id)
        assert fake.token_fetches == 2
        await asyncio.sleep(95)  # the second token is 95 s old
        await client.sessions.get(session.id)
        assert fake.token_fetches == 3
    assert {r.status for r in fake.requests} == {200}


@pytest.mark.parametrize("http_status", [200, 400])
async def test_invalid_token_answer_refreshes_once(http_status: int) -> None:
    """A 99991663 answer (with HTTP 200 or 400) refreshes the token once and the call
    succeeds."""
    async with (
        FakeAily(invalid_token_status=http_status) as fake,
        make_client(fake) as client,
    ):
        session = await client.sessions.create()
        fake.expire_tokens()
        got = await client.sessions.get(session.id)
    assert got.id == session.id
    assert fake.token_fetches == 2
    assert statuses(fake, "sessions.get") == [http_status, 200]
    gets = [r for r in fake.requests if r.route in ("sessions.get", "auth")]
    assert [r.route for r in gets] == ["auth", "sessions.get", "auth", "sessions.get"]


@pytest.mark.parametrize("code", [99991663, 99991665])
async def test_token_invalid_codes_refresh(client: AilyClient, fake: FakeAily, code: int) -> None:
    """Both tenant-token-invalid codes trigger one refresh, even on a write that is not
    otherwise retried."""
    await client.skills.list(APP).__anext__()
    fake.inject("skills.start", status=400, code=code)
    result = await client.skills.start(APP, "skill_echo", query="hi")
    assert result.json()["query"] == "hi"
    assert fake.token_fetches == 2
    assert statuses(fake, "skills.start") == [400, 200]


async def test_second_invalid_token_answer_raises(client: AilyClient, fake: FakeAily) -> None:
    """If the fresh token is rejected too, AilyAuthError is raised after exactly one refresh."""
    session = await client.sessions.create()
    fake.inject("sessions.get", status=400, code=99991663, times=3)
    with pytest.raises(AilyAuthError) as info:
        await client.sessions.get(session.id)
    assert info.value.code == 99991663
    assert str(info.value).startswith("sessions.get: ")
    assert fake.token_fetches == 2
    assert statuses(fake, "sessions.get") == [400, 400]


async def test_concurrent_rejections_share_one_refresh(client: AilyClient, fake: FakeAily) -> None:
    """Many calls rejected for the same expired token cause one refresh between them."""
    session = await client.sessions.create()
    fake.expire_tokens()
    await asyncio.gather(*(client.sessions.get(session.id) for _ in range(10)))
    assert fake.token_fetches == 2
    assert statuses(fake, "sessions.get").count(200) == 10


@pytest.mark.parametrize(
    ("app_id", "code"), [("cli_good", 10014), ("cli_unknown", 10003)], ids=["secret", "app"]
)
async def test_bad_credentials(app_id: str, code: int) -> None:
    """Wrong app credentials raise AilyAuthError with the service's code; the secret never
    shows in the error or the client, and no API call is sent."""
    wrong = "s3cr3t-value-never-shown"
    async with (
        FakeAily(credentials={"cli_good": "the-right-secret"}) as fake,
        make_client(fake, app_id, wrong) as client,
    ):
        with pytest.raises(AilyAuthError) as info:
            await client.sessions.create()
        error = info.value
        assert error.code == code
        assert error.http_status == 400
        assert error.log_id == fake.requests[-1].log_id
        for text in (str(error), repr(error), repr(client), repr(client._credentials)):
            assert wrong not in text
            assert "the-right-secret" not in text
    assert fake.route_counts() == {"auth": 1}


async def test_token_endpoint_5xx_is_retried(client: AilyClient, fake: FakeAily) -> None:
    """A token endpoint failing with 5xx is retried, then the call goes on."""
    fake.inject("auth", status=503)
    await client.sessions.create()
    assert fake.token_fetches == 2
    assert fake.created_sessions == 1


async def test_token_answer_without_token(client: AilyClient, fake: FakeAily) -> None:
    """A token answer with no token raises AilyResponseError naming the call."""
    fake.inject("auth", status=200, body={"code": 0, "msg": "ok", "expire": 7200})
    with pytest.raises(AilyResponseError, match=r"^sessions\.create: token fetch"):
        await client.sessions.create()
    assert fake.created_sessions == 0


async def test_fixed_user_token_rejection_is_raised(fake: FakeAily) -> None:
    """An expired user token is the caller's to refresh: AilyAuthError at once, no fetch."""
    token = fake.issue_user_token()
    fake.expire_tokens(user=True)
    async with AilyClient(
        user_access_token=token, base_url=fake.url, retry=RetryPolicy.no_wait(), limiter=None
    ) as client:
        with pytest.raises(AilyAuthError) as info:
            await client.sessions.get("session_abc")
    assert info.value.code == 99991677
    assert "caller must refresh" in str(info.value)
    assert fake.token_fetches == 0
    assert fake.route_counts() == {"sessions.get": 1}


async def test_fixed_tenant_token_rejection_is_raised(fake: FakeAily) -> None:
    """A fixed tenant token cannot be refreshed: its rejection is raised after one request."""
    token = fake.issue_tenant_token()
    fake.expire_tokens()
    async with AilyClient(
        tenant_access_token=token, base_url=fake.url, retry=RetryPolicy.no_wait(), limiter=None
    ) as client:
        with pytest.raises(AilyAuthError) as info:
            await client.sessions.get("session_abc")
    assert info.value.code == 99991663
    assert fake.token_fetches == 0
    assert fake.route_counts() == {"sessions.get": 1}


def test_repr_never_shows_the_secret() -> None:
    """The client's repr shows the app id but never the secret or a fixed token."""
    client = AilyClient("cli_visible", "hidden-secret-123")
    assert "cli_visible" in repr(client)
    assert "hidden-secret-123" not in repr(client)
    fixed = AilyClient(tenant_access_token="t-hidden-token-456")
    assert "t-hidden-token-456" not in repr(fixed)


@virtual_time
async def test_failed_fetches_are_spaced_by_a_doubling_gap() -> None:
    """After a failed token fetch (a 5xx, or an answer with no token) the next one waits 0.1 s,
    then 0.2 s, 0.4 s, …, however many calls wait; a fetch that succeeds resets the gap."""
    async with FakeAily() as fake:
        fake.inject("auth", status=200, body={"code": 0, "msg": "ok", "expire": 7200}, times=2)
        fake.inject("auth", status=503, times=1)
        async with make_client(fake) as client:
            for _ in range(2):  # an answer with no token is not retried: each call fails
                with pytest.raises(AilyResponseError):
                    await client.sessions.create()
            await asyncio.gather(*(client.sessions.create() for _ in range(10)))
        times = [r.time for r in fake.requests if r.route == "auth"]
        assert len(times) == 4  # junk, junk, 503, then the token the 10 calls share
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps == pytest.approx([0.1, 0.2, 0.4], abs=0.01)
