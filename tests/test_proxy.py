"""Where requests go: through a real forward proxy (proxy.py, a separate process) as the
environment or ``proxy=`` says, around it when ``NO_PROXY`` says so, over the caller's own
aiohttp session; and the API host from ``AILY_BASE_URL``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from aily_async import (
    AilyClient,
    AilyClosedError,
    AilyConnectionError,
    AilyNotFoundError,
    RetryPolicy,
)
from aily_async.testing import FakeAily

HERE = Path(__file__).parent


class Proxy:
    """A proxy.py process on 127.0.0.1 and what it forwarded (see ``_proxy_plugin``)."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def forwarded(self) -> list[dict[str, object]]:
        """Each request the proxy forwarded so far: method, host (host:port), path, and
        whether it held an Authorization header."""
        lines = self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """A real forward proxy (the proxy.py package) in its own process, on an ephemeral port."""
    where = tmp_path_factory.mktemp("proxy")
    port_file, log = where / "port", where / "requests.jsonl"
    env = {**os.environ, "AILY_TEST_PROXY_LOG": str(log), "PYTHONPATH": str(HERE)}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "proxy",
            "--hostname", "127.0.0.1", "--port", "0", "--port-file", str(port_file),
            "--num-acceptors", "1", "--num-workers", "1", "--log-file", str(where / "log"),
            "--plugins", "_proxy_plugin.RecordRequests",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("proxy.py did not start")
            time.sleep(0.02)
        yield Proxy(process, int(port_file.read_text()), log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment with no proxy variables (whatever the machine running the tests has)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "AILY_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def client_for(fake: FakeAily, **options: object) -> AilyClient:
    return AilyClient(
        "cli_test", "secret", base_url=fake.url, limiter=None, retry=RetryPolicy.no_wait(),
        **options,  # type: ignore[arg-type]
    )  # fmt: skip


async def three_calls(client: AilyClient) -> None:
    async with client:
        session = await client.sessions.create()
        await client.sessions.get(session.id)


def via_proxy(fake: FakeAily) -> list[bool]:
    """For each request the fake received: did it come through the proxy?"""
    return [r.headers.get("X-Test-Proxy") == "1" for r in fake.requests]


async def test_the_environment_proxy_carries_each_request_to_the_api_host_only(
    proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """With HTTP_PROXY set, the token fetch and both calls reach the fake through the proxy,
    and the proxy forwarded exactly those three, all to the API host."""
    no_proxy_env.setenv("HTTP_PROXY", proxy.url)
    before = len(proxy.forwarded())
    async with FakeAily() as fake:
        await three_calls(client_for(fake))
        host = fake.url.removeprefix("http://")
        assert via_proxy(fake) == [True, True, True]
        tokens = [r.headers.get("Authorization") for r in fake.requests[1:]]
        assert all(t and t.startswith("Bearer t-") for t in tokens)
    seen = proxy.forwarded()[before:]
    assert [(r["method"], r["host"], r["authorization"]) for r in seen] == [
        ("POST", host, False),  # the token fetch: app id and secret in the body
        ("POST", host, True),
        ("GET", host, True),
    ]
    assert seen[0]["path"] == "/open-apis/auth/v3/tenant_access_token/internal"


async def test_no_proxy_keeps_the_token_away_from_the_proxy(
    proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY set and NO_PROXY naming the API host: every request goes straight to it,
    and the proxy sees nothing (neither the app secret nor the token)."""
    no_proxy_env.setenv("HTTP_PROXY", proxy.url)
    no_proxy_env.setenv("NO_PROXY", "127.0.0.1,localhost")
    before = len(proxy.forwarded())
    async with FakeAily() as fake:
        await three_calls(client_for(fake))
        assert via_proxy(fake) == [False, False, False]
    assert proxy.forwarded()[before:] == []


async def test_trust_env_false_ignores_the_environment(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    """trust_env=False: a proxy in the environment (here one that refuses connections) is not
    used."""
    no_proxy_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the discard port: nothing there
    async with FakeAily() as fake:
        await three_calls(client_for(fake, trust_env=False))
        assert via_proxy(fake) == [False, False, False]
    with pytest.raises(AilyConnectionError, match="could not connect"):
        async with FakeAily() as fake:
            await three_calls(client_for(fake))  # trust_env on by default: the dead proxy


async def test_the_proxy_argument_beats_the_environment(
    proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """proxy= sends every request through that proxy, whatever HTTP_PROXY says."""
    no_proxy_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    before = len(proxy.forwarded())
    async with FakeAily() as fake:
        await three_calls(client_for(fake, proxy=proxy.url))
        assert via_proxy(fake) == [True, True, True]
    assert len(proxy.forwarded()) - before == 3


def test_a_bad_proxy_argument_is_refused() -> None:
    """proxy= must be an http(s) URL with a host; session= must be an aiohttp session."""
    with pytest.raises(ValueError, match="proxy must be an http"):
        AilyClient("a", "b", proxy="socks5://127.0.0.1:1080")
    with pytest.raises(TypeError, match=r"aiohttp\.ClientSession"):
        AilyClient("a", "b", session=object())  # type: ignore[arg-type]


async def test_a_session_of_your_own_is_used_and_never_closed(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    """session=: the requests go over the caller's session (its trace hooks see them), the
    client does not close it, and a closed one is reported as such."""
    seen: list[str] = []

    async def on_start(
        session: aiohttp.ClientSession, ctx: object, params: aiohttp.TraceRequestStartParams
    ) -> None:
        seen.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    own = aiohttp.ClientSession(trace_configs=[trace], raise_for_status=True, auto_decompress=False)
    async with FakeAily() as fake, own:
        await three_calls(client_for(fake, session=own))
        assert not own.closed
        assert len(seen) == 3
        # A missing session is a 404: the session's raise_for_status does not apply.
        async with client_for(fake, session=own) as client:
            with pytest.raises(AilyNotFoundError):
                await client.sessions.get("session_zzzz")
    assert own.closed
    async with FakeAily() as fake:
        client = client_for(fake, session=own)
        with pytest.raises(AilyClosedError, match="session given to the client is closed"):
            await client.sessions.create()
        await client.close()


async def test_a_session_of_your_own_never_resends(no_proxy_env: pytest.MonkeyPatch) -> None:
    """Over the caller's session too, aiohttp's own resend of a request whose kept-alive
    connection dropped is refused: the server sees the update once, the caller a drop."""
    async with FakeAily() as fake, aiohttp.ClientSession() as own:
        async with client_for(fake, session=own) as client:
            session = await client.sessions.create()
            fake.inject("sessions.update", drop="after")
            with pytest.raises(AilyConnectionError):
                await client.sessions.update(session.id, metadata={"v": 2})
        assert fake.route_counts()["sessions.update"] == 1


async def test_aily_base_url_is_the_default_host(no_proxy_env: pytest.MonkeyPatch) -> None:
    """Without base_url the client talks to $AILY_BASE_URL; an argument beats it."""
    async with FakeAily() as fake:
        no_proxy_env.setenv("AILY_BASE_URL", fake.url)
        client = AilyClient("cli_test", "secret", limiter=None)
        assert fake.url in repr(client)
        async with client:
            await client.sessions.create()
        assert fake.created_sessions == 1
        other = AilyClient("cli_test", "secret", base_url="https://example.invalid")
        assert "example.invalid" in repr(other)
    no_proxy_env.delenv("AILY_BASE_URL")
    assert "open.feishu.cn" in repr(AilyClient("cli_test", "secret"))
