"""Secrets and transport safety: no secret or token in logs, reprs or errors; TLS verified by
default; redirects never followed (so the token never reaches another host); answers over the
size cap refused, whatever Content-Length says."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import shutil
import ssl
import subprocess
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from _vloop import virtual_time
from aiohttp import web

from aily_async import (
    AilyAuthError,
    AilyClient,
    AilyClosedError,
    AilyConnectionError,
    AilyError,
    AilyResponseError,
    AilyServerError,
    RetryPolicy,
    RunWaitTimeout,
)
from aily_async.testing import FakeAily, RunPlan

APP = "spring_449d72db2f__c"
APP_ID = "cli_secretive_app"
SECRET = "s3cr3t-APP-SECRET-value-0123456789"
WRONG_SECRET = "wr0ng-APP-SECRET-value-9876543210"
TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _texts_of_error(exc: BaseException) -> list[str]:
    """Everything an error shows: str, repr, args, its chain and its formatted traceback."""
    out: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out += [str(current), repr(current), repr(current.args), repr(vars(current))]
        current = current.__cause__ or current.__context__
    out.append("".join(traceback.format_exception(exc)))
    return out


@virtual_time
async def test_no_secret_or_token_in_logs_reprs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    """A full session with 5xx, 429, drops, expired and rejected tokens, a wrong secret, a user
    token and a closed client, logged at DEBUG: neither the app secret nor any token issued
    appears in any log record, any repr, any error message or any hook event."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aily_async")
    events: list[Any] = []
    errors: list[BaseException] = []
    hooks = {"request": [events.append], "response": [events.append], "retry": [events.append]}
    reprs: list[str] = []

    async def expect_error(coro: Any) -> None:
        try:
            await coro
        except AilyError as exc:
            errors.append(exc)
        else:
            raise AssertionError("expected an AilyError")

    async with FakeAily(
        credentials={APP_ID: SECRET},
        token_ttl=5.0,
        run_script=RunPlan(queued=0.1, duration=1.0),
    ) as fake:
        client = AilyClient(
            APP_ID,
            SECRET,
            base_url=fake.url,
            retry=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05),
            poll_interval=0.1,
            event_hooks=hooks,
        )
        async with client:
            session = await client.sessions.create()
            fake.inject("messages.create", status=500)
            fake.inject("messages.create", drop="after")
            await client.messages.create(session.id, "hello")
            fake.inject("runs.create", status=429, headers={"x-ogw-ratelimit-reset": "1"})
            fake.inject("runs.get", drop="before", times=2)
            handle = await client.runs.create(session.id, app_id=APP)
            reprs.append(repr(handle))
            result = await handle.result(timeout=60)
            assert result.ok
            reprs += [repr(handle), repr(result), repr(result.run)]

            fake.expire_tokens()  # the next call is answered "token invalid" and refreshes
            await client.skills.start(APP, "skill_echo", query="q")
            await asyncio.sleep(10)  # the token runs out of time: refreshed ahead of expiry
            await client.skills.get(APP, "skill_echo")
            fake.inject("skills.start", status=502, body="<html><body>Bad Gateway</body></html>")
            await expect_error(client.skills.start(APP, "skill_echo"))
            fake.inject("auth", status=500, times=3)  # every attempt of the next call
            fake.expire_tokens()
            await expect_error(client.sessions.get(session.id))
            slow = await client.runs.create((await client.sessions.create()).id, app_id=APP)
            await expect_error(slow.wait(timeout=0.01))
            assert isinstance(errors[-1], RunWaitTimeout)
            reprs += [repr(client), repr(client._credentials), repr(client.stats), repr(slow)]
            reprs.append(repr(client.limiter_for("runs.create")))
        await expect_error(client.sessions.get(session.id))
        assert isinstance(errors[-1], AilyClosedError)
        reprs.append(repr(client))

        async with AilyClient(APP_ID, WRONG_SECRET, base_url=fake.url) as wrong:
            await expect_error(wrong.sessions.create())
            assert isinstance(errors[-1], AilyAuthError)
            reprs += [repr(wrong), repr(wrong._credentials)]

        user_expired = fake.issue_user_token(ttl=0.5)
        user_bogus = "u-" + "b0gus" * 6
        tenant_bogus = "t-" + "f1xed" * 6
        await asyncio.sleep(1)
        fixed_tokens: list[dict[str, Any]] = [
            {"user_access_token": user_expired},
            {"user_access_token": user_bogus},
            {"tenant_access_token": tenant_bogus},
        ]
        for kwargs in fixed_tokens:
            async with AilyClient(base_url=fake.url, **kwargs) as fixed:
                await expect_error(fixed.sessions.create())
                assert isinstance(errors[-1], AilyAuthError)
                reprs += [repr(fixed), repr(fixed._credentials)]

        tokens = [*fake._tenant_tokens, *fake._user_tokens, user_bogus, tenant_bogus]

    assert len(fake._tenant_tokens) >= 3, "the session should have used several tenant tokens"
    assert any(isinstance(e, AilyServerError) for e in errors)
    assert any(e.__class__.__name__ == "RetryEvent" for e in events)
    needles = [SECRET, WRONG_SECRET]
    for token in tokens:
        needles += [token, token[2:]]  # the token with and without its "t-"/"u-" prefix
    haystacks = {
        "log text": caplog.text,
        "log records": "\n".join(
            f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
        ),
        "reprs": "\n".join(reprs),
        "errors": "\n".join(text for exc in errors for text in _texts_of_error(exc)),
        "events": "\n".join(repr(e) for e in events),
    }
    assert caplog.records, "DEBUG logging captured nothing"
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    for where, text in haystacks.items():
        for needle in needles:
            assert needle not in text, f"a secret or token leaked into {where}"


# --------------------------------------------------------------------------- a bare server


@contextlib.asynccontextmanager
async def _serve(
    routes: list[web.RouteDef], ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[web.Request]]]:
    """Serve ``routes`` plus a token endpoint on 127.0.0.1; yield the URL and the requests seen."""
    seen: list[web.Request] = []

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.append(request)
        return await handler(request)

    async def token(_: web.Request) -> web.Response:
        return web.json_response({"code": 0, "tenant_access_token": "t-bare", "expire": 7200})

    app = web.Application(middlewares=[record])
    app.add_routes([web.post(TOKEN_PATH, token), *routes])
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def _self_signed(tmp: Path) -> ssl.SSLContext:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-nodes", "-days", "1",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(key), "-out", str(cert),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_tls_is_verified_by_default_and_opting_out_warns(tmp_path: Path) -> None:
    """A server with an untrusted certificate is refused by default before any request (the app
    secret never reaches it); ``verify_ssl=False`` must be explicit, warns, and then connects."""

    async def skills(_: web.Request) -> web.Response:
        return web.json_response({"code": 0, "data": {"skill": {"id": "skill_echo"}}})

    route = web.get(f"/open-apis/aily/v1/apps/{APP}/skills/skill_echo", skills)
    async with _serve([route], _self_signed(tmp_path)) as (url, seen):
        async with AilyClient(APP_ID, SECRET, base_url=url, retry=RetryPolicy.no_wait()) as c:
            with pytest.raises(AilyConnectionError, match="certificate") as info:
                await c.skills.get(APP, "skill_echo")
            assert info.value.sent is False
        assert seen == []
        with pytest.warns(UserWarning, match="not verified"):
            insecure = AilyClient(APP_ID, SECRET, base_url=url, verify_ssl=False)
        async with insecure:
            assert (await insecure.skills.get(APP, "skill_echo")).id == "skill_echo"
        assert [r.path for r in seen] == [TOKEN_PATH, route.path]


@pytest.mark.parametrize(
    ("route", "status"),
    [("sessions.get", 302), ("messages.create", 307), ("skills.start", 308), ("auth", 301)],
)
@virtual_time
async def test_redirect_to_another_host_is_never_followed(route: str, status: int) -> None:
    """A redirect to another host (on an API call or on the token call itself) ends the call
    with AilyResponseError; the other host receives nothing, so no Authorization header and no
    app secret ever reach it."""
    async with FakeAily() as fake, FakeAily() as elsewhere:
        async with AilyClient(
            APP_ID, SECRET, base_url=fake.url, retry=RetryPolicy.no_wait(), limiter=None
        ) as client:
            # (for "auth": the client has no token yet, so its first call fetches one)
            session_id = (await client.sessions.create()).id if route != "auth" else ""
            target = f"{elsewhere.url}/open-apis/aily/v1/steal?from={route}"
            fake.inject(route, status=status, headers={"Location": target}, body={"moved": 1})
            calls: dict[str, Callable[[], Awaitable[Any]]] = {
                "sessions.get": lambda: client.sessions.get(session_id),
                "messages.create": lambda: client.messages.create(session_id, "hi"),
                "skills.start": lambda: client.skills.start(APP, "skill_echo"),
                "auth": lambda: client.skills.get(APP, "skill_echo"),
            }
            with pytest.raises(AilyResponseError, match=f"redirect.*http {status}"):
                await calls[route]()
        assert elsewhere.requests == []
        assert fake.requests[-1].status == status


@pytest.mark.parametrize("size", [1999, 2001])
@virtual_time
async def test_answer_over_the_cap_with_content_length_is_refused(size: int) -> None:
    """An answer whose Content-Length is over ``max_response_size`` is refused with an
    AilyResponseError; one just under the cap is read."""
    filler = "x" * (size - len('{"code":0,"data":{"skill":{"id":"skill_echo","label":""}}}'))
    body = json.dumps(
        {"code": 0, "data": {"skill": {"id": "skill_echo", "label": filler}}},
        separators=(",", ":"),
    )
    assert len(body) == size
    async with (
        FakeAily() as fake,
        AilyClient(
            APP_ID, SECRET, base_url=fake.url, max_response_size=2000, limiter=None
        ) as client,
    ):
        fake.inject("skills.get", status=200, body=body)
        if size <= 2000:
            assert (await client.skills.get(APP, "skill_echo")).label == filler
        else:
            with pytest.raises(AilyResponseError, match="2001 bytes exceeds max_response_size"):
                await client.skills.get(APP, "skill_echo")


@pytest.mark.parametrize("encoding", ["chunked", "gzip"])
@virtual_time
async def test_answer_over_the_cap_without_honest_length_is_refused(encoding: str) -> None:
    """An answer over the cap is refused when it has no Content-Length (chunked) and when a
    small compressed Content-Length inflates beyond the cap (a gzip bomb)."""
    big = json.dumps(
        {"code": 0, "data": {"skill": {"id": "skill_echo", "label": "x" * 3_000_000}}}
    ).encode()
    small = json.dumps({"code": 0, "data": {"skill": {"id": "skill_echo"}}}).encode()

    async def answer(request: web.Request) -> web.StreamResponse:
        payload = big if request.query.get("big") == "1" else small
        if encoding == "gzip":
            return web.Response(
                body=gzip.compress(payload),
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):  # the client hangs up once over the cap
            for start in range(0, len(payload), 65536):
                await response.write(payload[start : start + 65536])
            await response.write_eof()
        return response

    path = f"/open-apis/aily/v1/apps/{APP}/skills"
    routes = [web.get(f"{path}/skill_echo", answer), web.get(path, answer)]
    async with (
        _serve(routes) as (url, _),
        AilyClient(APP_ID, SECRET, base_url=url, max_response_size=100_000, limiter=None) as client,
    ):
        assert (await client.skills.get(APP, "skill_echo")).id == "skill_echo"
        with pytest.raises(AilyResponseError, match="exceeds max_response_size=100000"):
            await client.request("skills.list", "GET", f"/apps/{APP}/skills", params={"big": "1"})
