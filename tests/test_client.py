"""The client: lifecycle, the request seam's retries, error mapping, hooks and logging."""

from __future__ import annotations

import asyncio
import gc
import logging
import pickle
import re
import socket
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _vloop import run_virtual, virtual_time

from aily_async import (
    AilyAPIError,
    AilyAuthError,
    AilyClient,
    AilyClosedError,
    AilyConnectionError,
    AilyError,
    AilyInvalidParamsError,
    AilyNotFoundError,
    AilyPermissionError,
    AilyRateLimitError,
    AilyResponseError,
    AilyServerError,
    AilyTimeoutError,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
    RetryPolicy,
)
from aily_async.testing import FakeAily

APP = "spring_449d72db2f__c"
SKILL = "skill_echo"
SECRET = "test-secret"
TOKEN_RE = re.compile(r"[tu]-[0-9a-f]{32}")


def make_client(fake: FakeAily, **kwargs: Any) -> AilyClient:
    """A client for ``fake`` with retries that do not wait and no client-side limiter."""
    kwargs.setdefault("retry", RetryPolicy.no_wait())
    kwargs.setdefault("limiter", None)
    return AilyClient("cli_test", SECRET, base_url=fake.url, **kwargs)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def once(fake: FakeAily) -> AsyncIterator[AilyClient]:
    """A client for ``fake`` that never retries and never waits for quota."""
    policy = RetryPolicy(max_attempts=1, base_delay=0, max_delay=0, max_quota_wait=0)
    async with make_client(fake, retry=policy) as client:
        yield client


def counts(fake: FakeAily, route: str) -> int:
    return fake.route_counts()[route]


# -- lifecycle ----------------------------------------------------------------------------


async def test_async_with_opens_and_closes(fake: FakeAily) -> None:
    """``async with`` opens the client for calls and closes it on exit."""
    client = make_client(fake)
    assert "unopened" in repr(client)
    async with client as entered:
        assert entered is client
        assert not client.closed
        await client.sessions.create()
        assert " open " in repr(client)
    assert client.closed
    assert "closed" in repr(client)
    with pytest.raises(AilyClosedError):
        await client.sessions.create()


async def test_close_is_idempotent(fake: FakeAily) -> None:
    """close() may be called any number of times, before or after use."""
    unused = make_client(fake)
    await unused.close()
    await unused.close()
    assert unused.closed
    client = make_client(fake)
    await client.sessions.create()
    await client.close()
    await client.close()
    assert client.closed


async def test_use_after_close_raises(fake: FakeAily) -> None:
    """A closed client refuses every call and re-entry with AilyClosedError naming the call,
    and sends nothing."""
    client = make_client(fake)
    await client.close()
    with pytest.raises(AilyClosedError) as info:
        await client.sessions.get("session_abc")
    assert isinstance(info.value, RuntimeError)
    assert str(info.value).startswith("sessions.get: ")
    with pytest.raises(AilyClosedError):
        async for _ in client.skills.list(APP):
            pass
    with pytest.raises(AilyClosedError):
        async with client:
            pass
    assert fake.requests == []


async def test_unclosed_client_warns_when_collected(fake: FakeAily) -> None:
    """An opened client that is garbage-collected without close() warns ResourceWarning."""
    client = make_client(fake)
    await client.__aenter__()
    with pytest.warns(ResourceWarning) as record:  # noqa: PT031 - the collection must be inside
        del client
        gc.collect()
    assert any("unclosed <AilyClient" in str(w.message) for w in record)


def test_never_opened_client_does_not_warn() -> None:
    """A client that was never opened holds no resources and is collected silently."""
    client = AilyClient("cli_test", SECRET)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        del client
        gc.collect()
    assert [w for w in record if issubclass(w.category, ResourceWarning)] == []


def test_session_is_created_lazily_inside_the_loop() -> None:
    """A client built where no loop runs opens its session on first use, inside the loop."""
    port = free_port()
    client = AilyClient(
        "cli_test",
        SECRET,
        base_url=f"http://127.0.0.1:{port}",
        retry=RetryPolicy.no_wait(),
        limiter=None,
    )
    assert "unopened" in repr(client)

    async def use() -> int:
        async with FakeAily(port=port) as fake:
            async with client:
                assert " open " in repr(client)
                await client.sessions.create()
            return fake.created_sessions

    assert run_virtual(use()) == 1
    assert client.closed


@pytest.mark.parametrize("base_url", ["open.feishu.cn", "ftp://open.feishu.cn", "", "//x"])
def test_base_url_must_be_http(base_url: str) -> None:
    """A base_url that is not an http(s) URL is refused at construction."""
    with pytest.raises(ValueError, match="base_url"):
        AilyClient("cli_test", SECRET, base_url=base_url)


def test_feishu_is_the_default_host_and_lark_works() -> None:
    """The default host is open.feishu.cn; the Lark host is accepted too."""
    assert "https://open.feishu.cn " in repr(AilyClient("cli_test", SECRET))
    lark = AilyClient("cli_test", SECRET, base_url="https://open.larksuite.com/")
    assert "https://open.larksuite.com " in repr(lark)


async def test_trailing_slash_in_base_url(fake: FakeAily) -> None:
    """A trailing slash in base_url does not double the slash in request paths."""
    async with AilyClient("cli_test", SECRET, base_url=fake.url + "/", limiter=None) as client:
        await client.sessions.create()
    assert [r.path for r in fake.requests] == [
        "/open-apis/auth/v3/tenant_access_token/internal",
        "/open-apis/aily/v1/sessions",
    ]


async def test_credentials_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without app_id/app_secret the client reads FEISHU_APP_ID and FEISHU_APP_SECRET."""
    monkeypatch.setenv("FEISHU_APP_ID", "cli_from_env")
    monkeypatch.setenv("FEISHU_APP_SECRET", "env-secret")
    async with (
        FakeAily(credentials={"cli_from_env": "env-secret"}) as fake,
        AilyClient(base_url=fake.url, limiter=None) as client,
    ):
        await client.sessions.create()
    assert fake.token_fetches == 1
    assert fake.requests[0].json["app_id"] == "cli_from_env"
    assert fake.created_sessions == 1


@pytest.mark.parametrize(
    ("args", "env"),
    [
        ((), {}),
        (("cli_test",), {}),
        ((), {"FEISHU_APP_ID": "cli_from_env"}),
        ((None, SECRET), {}),
    ],
)
def test_missing_credentials(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str | None, ...], env: dict[str, str]
) -> None:
    """Without an app id and secret (arguments or environment) or a fixed token, the client
    refuses to be built and says what to pass."""
    monkeypatch.delenv("FEISHU_APP_ID", raising=False)
    monkeypatch.delenv("FEISHU_APP_SECRET", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="FEISHU_APP_ID"):
        AilyClient(*args)


def test_two_fixed_tokens_are_refused() -> None:
    """A tenant token and a user token at once is ambiguous and refused."""
    with pytest.raises(ValueError, match="not both"):
        AilyClient(tenant_access_token="t-1", user_access_token="u-1")


@pytest.mark.parametrize("kind", ["tenant", "user"])
async def test_fixed_token_is_sent_as_bearer(
    fake: FakeAily, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A fixed tenant or user token is sent as ``Bearer`` on every call; no token is fetched."""
    monkeypatch.delenv("FEISHU_APP_ID", raising=False)
    monkeypatch.delenv("FEISHU_APP_SECRET", raising=False)
    if kind == "tenant":
        token = fake.issue_tenant_token()
        client = AilyClient(tenant_access_token=token, base_url=fake.url, limiter=None)
    else:
        token = fake.issue_user_token()
        client = AilyClient(user_access_token=token, base_url=fake.url, limiter=None)
    async with client:
        session = await client.sessions.create()
        await client.sessions.get(session.id)
    assert fake.token_fetches == 0
    assert [r.headers["Authorization"] for r in fake.requests] == [
        f"Bearer {token[:2]}<redacted>"
    ] * 2
    assert token not in repr(client)


@virtual_time
async def test_connection_limit_is_configurable() -> None:
    """``max_connections`` caps how many requests are in flight at once over the pool."""
    async with FakeAily() as fake, make_client(fake, max_connections=2) as client:
        await client.skills.list(APP).__anext__()  # the token, outside the measurement
        fake.inject("skills.get", status=None, delay=1.0, times=6)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(client.skills.get(APP, SKILL) for _ in range(6)))
        elapsed = loop.time() - started
    arrivals = sorted(round(r.time - started, 3) for r in fake.requests if r.route == "skills.get")
    assert arrivals == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    assert 3.0 <= elapsed < 3.5


def test_bad_pool_and_timeout_settings() -> None:
    """Non-positive timeouts and connection limits are refused at construction."""
    for kwargs in ({"max_connections": 0}, {"timeout": 0}, {"connect_timeout": -1.0}):
        with pytest.raises(ValueError, match="must be"):
            AilyClient("cli_test", SECRET, **kwargs)


@virtual_time
async def test_timeout_is_configurable_and_wrapped() -> None:
    """A request slower than ``timeout`` raises AilyTimeoutError (a TimeoutError); a read
    that timed out once is retried."""
    async with FakeAily() as fake:
        fake.issue_tenant_token()
        async with make_client(fake, timeout=2.0) as client:
            session = await client.sessions.create()
            fake.inject("sessions.get", status=None, delay=5.0)
            assert (await client.sessions.get(session.id)).id == session.id
            await asyncio.sleep(5.0)  # let the slow answer finish, so the fake logs it
            assert counts(fake, "sessions.get") == 2
            fake.inject("sessions.update", status=None, delay=5.0)
            with pytest.raises(AilyTimeoutError) as info:
                await client.sessions.update(session.id, metadata={"a": 1})
    assert isinstance(info.value, TimeoutError)
    assert str(info.value).startswith("sessions.update: ")
    assert "2s" in str(info.value)


# -- retries ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, "<html><body>502 Bad Gateway</body></html>"])
async def test_read_retried_after_5xx(client: AilyClient, fake: FakeAily, body: str | None) -> None:
    """A read answered with 5xx (JSON or HTML) is retried and then succeeds."""
    session = await client.sessions.create()
    fake.inject("sessions.get", status=502, body=body, times=2)
    assert (await client.sessions.get(session.id)).id == session.id
    assert [r.status for r in fake.requests if r.route == "sessions.get"] == [502, 502, 200]


@virtual_time
async def test_429_waits_the_reset_header_then_succeeds() -> None:
    """A 429 waits ``x-ogw-ratelimit-reset`` seconds before the retry, which succeeds."""
    async with FakeAily() as fake:
        policy = RetryPolicy(max_attempts=3, base_delay=0.0)
        async with make_client(fake, retry=policy) as client:
            session = await client.sessions.create()
            fake.inject("sessions.get", status=429, headers={"x-ogw-ratelimit-reset": "7"})
            loop = asyncio.get_running_loop()
            started = loop.time()
            await client.sessions.get(session.id)
            waited = loop.time() - started
    assert 7.0 <= waited < 7.5
    gets = [r for r in fake.requests if r.route == "sessions.get"]
    assert [r.status for r in gets] == [429, 200]
    assert gets[1].time - gets[0].time >= 7.0


@virtual_time
async def test_429_with_the_default_limiter_waits_the_reset() -> None:
    """With the default per-call limiter, a 429 pauses the limiter for the reset header and the
    retry goes out after it."""
    async with FakeAily() as fake:
        policy = RetryPolicy(max_attempts=3, base_delay=0.0)
        async with AilyClient("cli_test", SECRET, base_url=fake.url, retry=policy) as client:
            session = await client.sessions.create()
            fake.inject("sessions.get", status=429, headers={"x-ogw-ratelimit-reset": "4"})
            await client.sessions.get(session.id)
    gets = [r for r in fake.requests if r.route == "sessions.get"]
    assert [r.status for r in gets] == [429, 200]
    assert 4.0 <= gets[1].time - gets[0].time < 5.0


@virtual_time
async def test_429_reset_wait_is_capped() -> None:
    """A huge reset header is waited for at most ``max_reset_wait``."""
    async with FakeAily() as fake:
        policy = RetryPolicy(max_attempts=2, base_delay=0.0, max_reset_wait=5.0)
        async with make_client(fake, retry=policy) as client:
            session = await client.sessions.create()
            fake.inject("sessions.get", status=429, headers={"x-ogw-ratelimit-reset": "3600"})
            loop = asyncio.get_running_loop()
            started = loop.time()
            await client.sessions.get(session.id)
            assert 5.0 <= loop.time() - started < 5.5


async def test_429_persisting_raises_rate_limit_error(client: AilyClient, fake: FakeAily) -> None:
    """A 429 that persists past the quota-wait cap raises AilyRateLimitError with retry_after
    and limit (the headers); 429s spend no attempts, so the call is tried once per announced
    reset until the cap."""
    headers = {"x-ogw-ratelimit-reset": "2", "x-ogw-ratelimit-limit": "1000"}
    fake.inject("skills.list", status=429, headers=headers, times=200)
    with pytest.raises(AilyRateLimitError) as info:
        async for _ in client.skills.list(APP):
            pass
    error = info.value
    assert (error.code, error.http_status, error.retry_after) == (99991400, 429, 2.0)
    assert error.limit == 1000
    # no_wait() makes each wait nil, counted as 1 s: max_quota_wait=120 allows 120 waits, and
    # the 121st 429 ends the call.
    assert counts(fake, "skills.list") == 121


@pytest.mark.parametrize("drop", ["before", "after"])
async def test_message_retried_after_drop_keeps_idempotent_id(
    client: AilyClient, fake: FakeAily, drop: str
) -> None:
    """messages.create retried after a dropped connection resends the same idempotent_id and
    the session holds one message."""
    session = await client.sessions.create()
    fake.inject("messages.create", drop=drop)  # type: ignore[arg-type]
    message = await client.messages.create(session.id, "hello")
    sends = [r for r in fake.requests if r.route == "messages.create"]
    assert len(sends) == 2
    assert sends[0].fault == f"drop-{drop}"
    ids = {r.json["idempotent_id"] for r in sends}
    assert len(ids) == 1
    assert fake.created_messages == 1
    assert [m.id async for m in client.messages.list(session.id)] == [message.id]


async def test_message_given_idempotent_id_is_sent(client: AilyClient, fake: FakeAily) -> None:
    """A caller's idempotent_id is sent as given; sending again with it stores nothing new."""
    session = await client.sessions.create()
    first = await client.messages.create(session.id, "hello", idempotent_id="req-42")
    again = await client.messages.create(session.id, "hello", idempotent_id="req-42")
    assert first.id == again.id
    assert fake.created_messages == 1
    assert {r.json["idempotent_id"] for r in fake.requests if r.route == "messages.create"} == {
        "req-42"
    }


async def test_fresh_idempotent_id_per_message(client: AilyClient, fake: FakeAily) -> None:
    """Each messages.create without an idempotent_id gets a fresh one."""
    session = await client.sessions.create()
    await client.messages.create(session.id, "same text")
    await client.messages.create(session.id, "same text")
    assert fake.created_messages == 2


async def test_run_create_whose_first_attempt_landed_is_not_duplicated(
    client: AilyClient, fake: FakeAily
) -> None:
    """runs.create whose request landed before the connection dropped creates one run, and
    the handle points to it."""
    session = await client.sessions.create()
    fake.inject("runs.create", drop="after")
    handle = await client.runs.create(session.id, app_id=APP)
    assert fake.created_runs == 1
    assert counts(fake, "runs.create") == 1
    assert counts(fake, "runs.list") >= 1
    (run,) = fake.runs_in(session.id)
    assert handle.id == run["id"]
    assert handle.session_id == session.id


@pytest.mark.parametrize("fault", ["5xx", "drop-before"])
async def test_run_create_that_did_not_land_is_checked_then_retried(
    client: AilyClient, fake: FakeAily, fault: str
) -> None:
    """runs.create failing with a 5xx or a drop before handling looks for a landed run first,
    then retries once and makes exactly one run."""
    session = await client.sessions.create()
    if fault == "5xx":
        fake.inject("runs.create", status=503)
    else:
        fake.inject("runs.create", drop="before")
    handle = await client.runs.create(session.id, app_id=APP)
    routes = [r.route for r in fake.requests if r.route.startswith("runs.")]
    assert routes == ["runs.create", "runs.list", "runs.create"]
    assert fake.created_runs == 1
    assert handle.id == fake.runs_in(session.id)[0]["id"]


async def test_run_create_not_retried_on_invalid_params(client: AilyClient, fake: FakeAily) -> None:
    """runs.create refused with 2700001 (an active run exists) is raised at once."""
    session = await client.sessions.create()
    await client.runs.create(session.id, app_id=APP)
    fake.reset_log()
    with pytest.raises(AilyInvalidParamsError):
        await client.runs.create(session.id, app_id=APP)
    assert fake.route_counts() == {"runs.create": 1}
    assert fake.created_runs == 1


@pytest.mark.parametrize("drop", ["before", "after"])
async def test_skill_start_not_retried_after_drop(
    client: AilyClient, fake: FakeAily, drop: str
) -> None:
    """skills.start whose connection dropped after sending is not retried: it may have run."""
    fake.inject("skills.start", drop=drop)  # type: ignore[arg-type]
    with pytest.raises(AilyConnectionError) as info:
        await client.skills.start(APP, SKILL, query="hi")
    assert info.value.sent
    assert str(info.value).startswith("skills.start: ")
    assert counts(fake, "skills.start") == 1


async def test_skill_start_retried_after_429(client: AilyClient, fake: FakeAily) -> None:
    """skills.start answered 429 did not run, so it is retried."""
    fake.inject("skills.start", status=429)
    result = await client.skills.start(APP, SKILL, query="hi")
    assert result.json()["query"] == "hi"
    assert [r.status for r in fake.requests if r.route == "skills.start"] == [429, 200]


@pytest.mark.parametrize("route", ["skills.start", "sessions.create"])
async def test_unsafe_write_not_retried_on_5xx(
    client: AilyClient, fake: FakeAily, route: str
) -> None:
    """A write that is not safe to repeat is not retried on a 5xx (it may have taken effect)."""
    fake.inject(route, status=500, times=3)
    call = client.skills.start(APP, SKILL) if route == "skills.start" else client.sessions.create()
    with pytest.raises(AilyServerError):
        await call
    assert counts(fake, route) == 1


async def test_refused_connection_is_retried_for_unsafe_writes() -> None:
    """skills.start retries a refused connection (nothing was sent) and then succeeds."""
    port = free_port()
    fake = FakeAily(port=port)
    token = fake.issue_tenant_token()
    retries: list[RetryEvent] = []

    async def start_server(event: Any) -> None:
        retries.append(event)
        await fake.start()

    try:
        async with AilyClient(
            tenant_access_token=token,
            base_url=f"http://127.0.0.1:{port}",
            retry=RetryPolicy.no_wait(),
            limiter=None,
            event_hooks={"retry": [start_server]},
        ) as client:
            result = await client.skills.start(APP, SKILL, query="knock knock")
    finally:
        await fake.close()
    assert result.json()["query"] == "knock knock"
    assert len(retries) == 1
    assert isinstance(retries[0].error, AilyConnectionError)
    assert not retries[0].error.sent
    assert counts(fake, "skills.start") == 1


async def test_refused_connection_exhausts_attempts() -> None:
    """With nothing listening, every attempt is refused and AilyConnectionError names the call."""
    attempts: list[Any] = []
    async with AilyClient(
        tenant_access_token="t-x",
        base_url=f"http://127.0.0.1:{free_port()}",
        retry=RetryPolicy.no_wait(max_attempts=3),
        limiter=None,
        event_hooks={"request": [attempts.append]},
    ) as client:
        with pytest.raises(AilyConnectionError) as info:
            await client.sessions.get("session_abc")
    assert not info.value.sent
    assert str(info.value).startswith("sessions.get: could not connect")
    assert [e.attempt for e in attempts] == [1, 2, 3]


@pytest.mark.parametrize("max_attempts", [1, 2, 5])
async def test_max_attempts_respected(fake: FakeAily, max_attempts: int) -> None:
    """A read failing every time is sent exactly ``max_attempts`` times."""
    fake.inject("skills.get", status=500, times=10)
    policy = RetryPolicy.no_wait(max_attempts=max_attempts)
    async with make_client(fake, retry=policy) as client:
        with pytest.raises(AilyServerError):
            await client.skills.get(APP, SKILL)
    assert counts(fake, "skills.get") == max_attempts


def test_no_wait_policy() -> None:
    """RetryPolicy.no_wait keeps the attempts and makes every wait zero."""
    policy = RetryPolicy.no_wait()
    assert policy.max_attempts == RetryPolicy().max_attempts
    assert RetryPolicy.no_wait(7).max_attempts == 7
    assert [policy.delay(n) for n in range(10)] == [0.0] * 10
    assert policy.max_reset_wait == 0.0
    with pytest.raises(ValueError):  # noqa: PT011 - attrs' validator message
        RetryPolicy(max_attempts=0)


@virtual_time
async def test_no_wait_removes_the_waits_and_default_has_them() -> None:
    """Retries under no_wait take no time; under the default policy they back off."""
    async with FakeAily() as fake:
        loop = asyncio.get_running_loop()
        elapsed = {}
        for name, policy in [("no_wait", RetryPolicy.no_wait()), ("default", RetryPolicy())]:
            async with make_client(fake, retry=policy) as client:
                await client.skills.list(APP).__anext__()  # fetch the token first
                fake.inject("skills.get", status=500, times=3)
                started = loop.time()
                await client.skills.get(APP, SKILL)
                elapsed[name] = loop.time() - started
    assert elapsed["no_wait"] == 0.0
    assert 0.0 < elapsed["default"] <= 0.5 + 1.0 + 2.0


# -- error mapping ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, 2700001, AilyInvalidParamsError),
        (404, 2700001, AilyNotFoundError),
        (500, 1, AilyServerError),
        (503, None, AilyServerError),
        (429, 99991400, AilyRateLimitError),
        (400, 99991400, AilyRateLimitError),
        (403, 99991672, AilyPermissionError),
        (400, 99991679, AilyPermissionError),
        (400, 99991401, AilyPermissionError),
        (400, 99991403, AilyPermissionError),
        (400, 99991661, AilyAuthError),
        (400, 99991668, AilyAuthError),
        (200, 99991677, AilyAuthError),
        (200, 1234567, AilyAPIError),
    ],
)
async def test_error_classes(
    once: AilyClient, fake: FakeAily, status: int, code: int | None, cls: type[AilyAPIError]
) -> None:
    """Each (HTTP status, code) answer maps to its error class with every attribute set; the
    message starts with the call and ends with the log id."""
    if code is None:
        fake.inject("runs.get", status=status, body="<html>503</html>")
    else:
        fake.inject("runs.get", status=status, code=code)
    with pytest.raises(cls) as info:
        await once.runs.get("session_abc", "run_abc")
    error = info.value
    assert type(error) is cls
    log_id = fake.requests[-1].log_id
    assert (error.code, error.http_status, error.log_id) == (code, status, log_id)
    assert str(error).startswith("runs.get: ")
    assert str(error).endswith(f"log_id {log_id}]")
    assert error.call == "runs.get"
    if code is not None:
        assert error.msg
        assert error.msg in str(error)


async def test_invalid_params_is_a_value_error(client: AilyClient, fake: FakeAily) -> None:
    """The service's 2700001 answer is AilyInvalidParamsError, also a ValueError, not retried."""
    session = await client.sessions.create()
    await client.runs.create(session.id, app_id=APP)
    with pytest.raises(ValueError, match=r"^runs\.create: param is invalid") as info:
        await client.runs.create(session.id, app_id=APP)
    assert isinstance(info.value, AilyInvalidParamsError)
    assert info.value.code == 2700001
    assert info.value.http_status == 400


async def test_not_found(client: AilyClient, fake: FakeAily) -> None:
    """A 404 answer raises AilyNotFoundError and is not retried."""
    with pytest.raises(AilyNotFoundError) as info:
        await client.sessions.get("session_abc")
    assert info.value.http_status == 404
    assert info.value.log_id == fake.requests[-1].log_id
    assert counts(fake, "sessions.get") == 1


async def test_5xx_exhaustion_raises_server_error(client: AilyClient, fake: FakeAily) -> None:
    """A read failing with 5xx on every attempt raises AilyServerError with the last log id."""
    fake.inject("messages.list", status=503, times=10)
    with pytest.raises(AilyServerError) as info:
        async for _ in client.messages.list("session_abc"):
            pass
    assert info.value.http_status == 503
    assert info.value.log_id == fake.requests[-1].log_id
    assert str(info.value).startswith("messages.list: ")
    assert counts(fake, "messages.list") == 4


@pytest.mark.parametrize("body", ["this is not json", "[1, 2]", "", '{"msg": "no code"}'])
async def test_unreadable_answer_raises_response_error(
    client: AilyClient, fake: FakeAily, body: str
) -> None:
    """A 200 answer that is not a JSON object with a code raises AilyResponseError with the
    call, status and log id, and is not retried."""
    fake.inject("sessions.get", status=200, body=body)
    with pytest.raises(AilyResponseError) as info:
        await client.sessions.get("session_abc")
    error = info.value
    log_id = fake.requests[-1].log_id
    assert (error.http_status, error.log_id) == (200, log_id)
    assert str(error).startswith("sessions.get: ")
    assert log_id in str(error)
    assert counts(fake, "sessions.get") == 1


def test_api_errors_pickle() -> None:
    """API errors survive pickling (e.g. across process pools) with their attributes."""
    error = AilyRateLimitError("slow down", code=99991400, http_status=429, log_id="L1", call="x")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is AilyRateLimitError
    assert (copy.code, copy.http_status, copy.log_id, copy.call, copy.msg) == (
        99991400,
        429,
        "L1",
        "x",
        "slow down",
    )
    assert str(copy) == str(error)


def test_error_hierarchy() -> None:
    """Every error derives from AilyError; validation and invalid params are ValueErrors,
    timeouts are TimeoutErrors."""
    assert issubclass(AilyInvalidParamsError, AilyAPIError)
    assert issubclass(AilyInvalidParamsError, ValueError)
    assert issubclass(AilyTimeoutError, TimeoutError)
    for cls in (AilyAPIError, AilyConnectionError, AilyResponseError, AilyClosedError):
        assert issubclass(cls, AilyError)


# -- hooks and logging --------------------------------------------------------------------


async def test_hooks_sync_and_async_receive_events(fake: FakeAily) -> None:
    """Request, response and retry hooks (sync and async) see every attempt of a call."""
    seen: list[tuple[str, Any]] = []

    def on_request(event: Any) -> None:
        seen.append(("request", event))

    async def on_response(event: Any) -> None:
        await asyncio.sleep(0)
        seen.append(("response", event))

    def on_retry_sync(event: Any) -> None:
        seen.append(("retry-sync", event))

    async def on_retry_async(event: Any) -> None:
        seen.append(("retry-async", event))

    hooks: Any = {
        "request": [on_request],
        "response": [on_response],
        "retry": [on_retry_sync, on_retry_async],
    }
    async with make_client(fake, event_hooks=hooks) as client:
        session = await client.sessions.create()
        seen.clear()
        fake.inject("sessions.get", status=500)
        await client.sessions.get(session.id)

    kinds = [kind for kind, _ in seen]
    assert kinds == ["request", "response", "retry-sync", "retry-async", "request", "response"]
    path = f"/sessions/{session.id}"
    assert seen[0][1] == RequestEvent("sessions.get", "GET", path, 1)
    failed = seen[1][1]
    assert isinstance(failed, ResponseEvent)
    assert (failed.attempt, failed.http_status, failed.code) == (1, 500, 1)
    assert isinstance(failed.error, AilyServerError)
    retry = seen[2][1]
    assert isinstance(retry, RetryEvent)
    assert (retry.call, retry.attempt, retry.wait) == ("sessions.get", 1, 0.0)
    assert retry.error is failed.error
    assert seen[3][1] is retry
    assert seen[4][1] == RequestEvent("sessions.get", "GET", path, 2)
    done = seen[5][1]
    assert (done.attempt, done.http_status, done.code, done.error) == (2, 200, 0, None)
    assert done.log_id == fake.requests[-1].log_id
    assert done.elapsed >= 0


async def test_token_fetch_is_visible_to_hooks(fake: FakeAily) -> None:
    """The token fetch emits request/response events too (call ``auth.token``)."""
    calls: list[str] = []
    async with make_client(fake, event_hooks={"request": [lambda e: calls.append(e.call)]}) as c:
        await c.sessions.create()
    assert calls == ["auth.token", "sessions.create"]


async def test_failing_hook_does_not_break_the_call(
    fake: FakeAily, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises is logged and the call still succeeds."""

    def broken(event: Any) -> None:
        raise RuntimeError("hook bug")

    async with make_client(fake, event_hooks={"response": [broken]}) as client:
        session = await client.sessions.create()
    assert session.id.startswith("session_")
    assert any("hook" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


@pytest.mark.parametrize(
    "hooks", [{"before": [print]}, {"request": [42]}], ids=["bad-kind", "not-callable"]
)
def test_bad_hooks_are_refused(hooks: Any) -> None:
    """Unknown hook kinds and non-callables are refused at construction."""
    with pytest.raises(ValueError, match="event_hooks"):
        AilyClient("cli_test", SECRET, event_hooks=hooks)


async def test_debug_logs_name_route_status_attempt_and_hide_secrets(
    fake: FakeAily, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG logs name the call, method, path, status, attempt and log id, and never show the
    token or the app secret, including around a token refresh and a retry."""
    caplog.set_level(logging.DEBUG, logger="aily_async")
    async with make_client(fake) as client:
        session = await client.sessions.create()
        fake.expire_tokens()
        fake.inject("sessions.get", status=500)
        await client.sessions.get(session.id)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("aily_async")]
    text = "\n".join(messages)
    path = f"/sessions/{session.id}"
    assert f"sessions.get GET {path} -> 500 code=1 attempt=1" in text
    assert f"sessions.get GET {path} -> 400 code=99991663 attempt=2" in text
    assert f"sessions.get GET {path} -> 200 code=0 attempt=3" in text
    assert f"log_id={fake.requests[-1].log_id}" in text
    assert any("retrying" in m and "sessions.get" in m for m in messages)
    assert any("refreshing" in m for m in messages)
    assert SECRET not in caplog.text
    assert not TOKEN_RE.search(caplog.text)
    assert fake.token_fetches == 2
