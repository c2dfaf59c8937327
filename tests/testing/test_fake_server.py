"""Tests of ``aily_async.testing.FakeAily`` over raw HTTP (no aily_async client involved)."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

import aiohttp
import pytest
from _vloop import virtual_time
from multidict import CIMultiDictProxy

import aily_async.testing as testing
from aily_async.testing import (
    FakeAily,
    FakeApiError,
    FakeSkill,
    Faults,
    RunPlan,
    RunRequest,
    SkillRequest,
)
from aily_async.testing.__main__ import main, serve
from aily_async.testing._serve import build_parser

API = "/open-apis/aily/v1"
TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
APP = "spring_449d72db2f__c"


class Reply(NamedTuple):
    status: int
    body: Any
    headers: CIMultiDictProxy[str]


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Api:
    """Raw HTTP helper bound to one fake and one token."""

    def __init__(self, http: aiohttp.ClientSession, fake: FakeAily) -> None:
        self.http = http
        self.fake = fake
        self.token: str | None = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        sent.update(headers or {})
        async with self.http.request(
            method, self.fake.url + path, json=body, params=params, headers=sent
        ) as resp:
            raw = await resp.read()
            try:
                decoded: Any = json.loads(raw)
            except ValueError:
                decoded = raw
            return Reply(resp.status, decoded, resp.headers)

    async def login(self, app_id: str = "cli_test", secret: str = "s3cret") -> Reply:
        reply = await self.call("POST", TOKEN_PATH, body={"app_id": app_id, "app_secret": secret})
        if reply.body["code"] == 0:
            self.token = reply.body["tenant_access_token"]
        return reply

    async def session(self) -> str:
        reply = await self.call("POST", f"{API}/sessions", body={})
        assert reply.body["code"] == 0, reply.body
        return str(reply.body["data"]["session"]["id"])

    async def send(self, sid: str, content: str, idem: str | None = None) -> Reply:
        body = {"idempotent_id": idem or content, "content_type": "MDX", "content": content}
        return await self.call("POST", f"{API}/sessions/{sid}/messages", body=body)

    async def create_run(self, sid: str, **body: Any) -> Reply:
        return await self.call("POST", f"{API}/sessions/{sid}/runs", body={"app_id": APP, **body})

    async def run(self, sid: str, run_id: str) -> dict[str, Any]:
        reply = await self.call("GET", f"{API}/sessions/{sid}/runs/{run_id}")
        assert reply.body["code"] == 0, reply.body
        return dict(reply.body["data"]["run"])

    async def messages(self, sid: str, **params: str) -> dict[str, Any]:
        reply = await self.call("GET", f"{API}/sessions/{sid}/messages", params=params)
        assert reply.body["code"] == 0, reply.body
        return dict(reply.body["data"])


Start = Callable[..., Awaitable[Api]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def start(http: aiohttp.ClientSession) -> AsyncIterator[Start]:
    async with contextlib.AsyncExitStack() as stack:

        async def _start(login: bool = True, **options: Any) -> Api:
            fake = await stack.enter_async_context(FakeAily(**options))
            api = Api(http, fake)
            if login:
                await api.login()
            return api

        yield _start


@pytest.fixture
async def api(start: Start) -> Api:
    return await start()


def assert_error(reply: Reply, status: int, code: int) -> None:
    assert (reply.status, reply.body["code"]) == (status, code), reply.body
    assert reply.body["error"]["log_id"] == reply.headers["X-Tt-Logid"]


# --------------------------------------------------------------------------- lifecycle, tokens


async def test_lifecycle_is_idempotent_and_url_has_no_trailing_slash() -> None:
    """start() and close() may be repeated, and url is http://127.0.0.1:PORT."""
    fake = FakeAily()
    with pytest.raises(RuntimeError):
        _ = fake.url
    await fake.start()
    await fake.start()
    assert fake.url.startswith("http://127.0.0.1:")
    assert not fake.url.endswith("/")
    assert int(fake.url.rsplit(":", 1)[1]) > 0
    await fake.close()
    await fake.close()
    with pytest.raises(RuntimeError):
        await fake.start()


async def test_token_endpoint_answers_top_level_token(start: Start) -> None:
    """The token endpoint answers code 0 with tenant_access_token and expire at top level."""
    api = await start(login=False, token_ttl=0.25)
    reply = await api.login()
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    assert reply.headers["X-Tt-Logid"]
    assert reply.body["code"] == 0
    assert reply.body["msg"] == "ok"
    assert reply.body["tenant_access_token"].startswith("t-")
    assert reply.body["expire"] == 1  # ceiling of 0.25 s
    assert "data" not in reply.body
    assert api.fake.token_fetches == 1


async def test_token_expires_after_ttl(start: Start) -> None:
    """A tenant token is refused with 99991663 once token_ttl has passed."""
    clock = ManualClock()
    api = await start(token_ttl=60, clock=clock)
    assert (await api.call("POST", f"{API}/sessions")).body["code"] == 0
    clock.advance(59.9)
    assert (await api.call("POST", f"{API}/sessions")).body["code"] == 0
    clock.advance(0.1)
    assert_error(await api.call("POST", f"{API}/sessions"), 400, 99991663)


async def test_invalid_token_status_can_be_200(start: Start) -> None:
    """invalid_token_status sets the HTTP status of invalid-token answers (200 here)."""
    api = await start(invalid_token_status=200)
    api.token = "t-unknown"
    assert_error(await api.call("GET", f"{API}/apps/{APP}/skills"), 200, 99991663)


async def test_expire_tokens_invalidates_issued_tokens(api: Api) -> None:
    """expire_tokens() makes earlier tenant tokens invalid, and a new fetch works again."""
    api.fake.expire_tokens()
    assert_error(await api.call("POST", f"{API}/sessions"), 400, 99991663)
    await api.login()
    assert (await api.call("POST", f"{API}/sessions")).body["code"] == 0
    assert api.fake.token_fetches == 2


async def test_missing_token_is_99991661(api: Api) -> None:
    """A call without Authorization is refused with HTTP 400 and code 99991661."""
    api.token = None
    reply = await api.call("POST", f"{API}/sessions")
    assert_error(reply, 400, 99991661)
    assert reply.body["msg"] == "Missing access token for authorization"


async def test_credentials_are_checked(start: Start) -> None:
    """With credentials set, a wrong secret gets 10014 and an unknown app 10003."""
    api = await start(login=False, credentials={"cli_x": "good"})
    assert_error(await api.login("cli_x", "bad"), 400, 10014)
    assert_error(await api.login("cli_other", "good"), 400, 10003)
    assert (await api.login("cli_x", "good")).body["code"] == 0
    assert api.fake.token_fetches == 3


async def test_user_tokens_invalid_and_expired(start: Start) -> None:
    """User tokens work until their ttl; unknown ones get 99991668, expired ones 99991677."""
    clock = ManualClock()
    api = await start(login=False, clock=clock)
    api.token = api.fake.issue_user_token(ttl=10)
    assert api.token.startswith("u-")
    assert (await api.call("POST", f"{API}/sessions")).body["code"] == 0
    clock.advance(10)
    assert_error(await api.call("POST", f"{API}/sessions"), 400, 99991677)
    api.token = "u-nonsense"
    assert_error(await api.call("POST", f"{API}/sessions"), 400, 99991668)


# --------------------------------------------------------------------------- envelope, sessions


async def test_every_answer_has_envelope_and_unique_logid(api: Api) -> None:
    """Successes and errors alike carry {code, msg, data} and a fresh X-Tt-Logid."""
    replies = [
        await api.call("POST", f"{API}/sessions"),
        await api.call("GET", f"{API}/sessions/session_0000000000000"),
        await api.call("GET", "/open-apis/unknown"),
    ]
    for reply in replies:
        assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
        assert {"code", "msg", "data"} <= set(reply.body)
    log_ids = {reply.headers["X-Tt-Logid"] for reply in replies}
    assert len(log_ids) == 3
    assert [reply.status for reply in replies] == [200, 404, 404]


async def test_session_crud(api: Api) -> None:
    """Sessions can be created, read, updated (modified_at moves) and deleted."""
    reply = await api.call(
        "POST", f"{API}/sessions", body={"channel_context": "{}", "metadata": '{"a":1}'}
    )
    session = reply.body["data"]["session"]
    sid = session["id"]
    assert sid.startswith("session_")
    assert len(sid) == len("session_") + 13
    assert set("ilo").isdisjoint(sid[len("session_") :])
    assert session["metadata"] == '{"a":1}'
    assert isinstance(session["created_at"], str)
    assert session["created_at"].isdigit()
    got = (await api.call("GET", f"{API}/sessions/{sid}")).body["data"]["session"]
    assert got == session
    await asyncio.sleep(0.002)
    updated = await api.call("PUT", f"{API}/sessions/{sid}", body={"metadata": "{}"})
    new = updated.body["data"]["session"]
    assert new["metadata"] == "{}"
    assert int(new["modified_at"]) > int(new["created_at"])
    deleted = await api.call("DELETE", f"{API}/sessions/{sid}")
    assert (deleted.status, deleted.body["data"]) == (200, {})
    assert_error(await api.call("GET", f"{API}/sessions/{sid}"), 404, 2700001)
    assert api.fake.session_ids() == []


# --------------------------------------------------------------------------- messages


async def test_message_dedup_by_idempotent_id(api: Api) -> None:
    """The same idempotent_id in one session returns the same message and creates nothing."""
    sid = await api.session()
    first = (await api.send(sid, "hello", idem="k1")).body["data"]["message"]
    again = (await api.send(sid, "hello again", idem="k1")).body["data"]["message"]
    assert again == first
    assert first["content"] == "hello"
    assert first["run_id"] == ""
    assert first["sender"]["sender_type"] == "USER"
    assert first["status"] == "COMPLETED"
    other = await api.session()
    elsewhere = (await api.send(other, "hello", idem="k1")).body["data"]["message"]
    assert elsewhere["id"] != first["id"]
    assert api.fake.created_messages == 2
    assert len(api.fake.messages_in(sid)) == 1
    got = await api.call("GET", f"{API}/sessions/{sid}/messages/{first['id']}")
    assert got.body["data"]["message"] == first


async def test_message_pagination_walks_all_pages(api: Api) -> None:
    """Listing 45 messages by 20 gives 3 pages, oldest first, page_token only with has_more."""
    sid = await api.session()
    sent = [(await api.send(sid, f"m{i}")).body["data"]["message"]["id"] for i in range(45)]
    seen: list[str] = []
    pages = 0
    params: dict[str, str] = {"page_size": "20"}
    while True:
        data = await api.messages(sid, **params)
        pages += 1
        seen.extend(message["id"] for message in data["messages"])
        if not data["has_more"]:
            assert "page_token" not in data
            break
        params["page_token"] = data["page_token"]
    assert pages == 3
    assert seen == sent
    default = await api.messages(sid)
    assert len(default["messages"]) == 20


# --------------------------------------------------------------------------- runs


async def test_run_completes_with_assistant_answer(start: Start) -> None:
    """A run goes QUEUED -> COMPLETED in real time and leaves an ASSISTANT answer."""
    api = await start(run_script=RunPlan(queued=0.02, duration=0.05))
    sid = await api.session()
    await api.send(sid, "hello")
    created = (await api.create_run(sid, metadata='{"k":"v"}')).body["data"]["run"]
    assert created["status"] == "QUEUED"
    assert created["id"].startswith("run_")
    assert created["metadata"] == '{"k":"v"}'
    assert created["started_at"] in ("", "0")
    assert "error" not in created
    run = created
    for _ in range(100):
        run = await api.run(sid, created["id"])
        if run["status"] == "COMPLETED":
            break
        await asyncio.sleep(0.01)
    assert run["status"] == "COMPLETED"
    assert int(run["created_at"]) <= int(run["started_at"]) < int(run["ended_at"])
    answers = (await api.messages(sid, run_id=run["id"]))["messages"]
    assert len(answers) == 1
    answer = answers[0]
    assert answer["sender"]["sender_type"] == "ASSISTANT"
    assert (answer["content"], answer["content_type"], answer["status"]) == (
        "Echo: hello",
        "MDX",
        "COMPLETED",
    )
    assert answer["run_id"] == run["id"]
    again = await api.call("GET", f"{API}/sessions/{sid}/messages/{answer['id']}")
    assert again.body["data"]["message"] == answer
    assert api.fake.get_run(run["id"])["status"] == "COMPLETED"


async def test_one_active_run_per_session(start: Start) -> None:
    """A second run in a session with an active run is refused until the first ends."""
    clock = ManualClock()
    api = await start(clock=clock, run_duration=1.0)
    sid = await api.session()
    first = (await api.create_run(sid)).body["data"]["run"]
    refused = await api.create_run(sid)
    assert_error(refused, 400, 2700001)
    assert first["id"] in refused.body["msg"]
    assert "active run" in refused.body["msg"]
    assert api.fake.created_runs == 1
    clock.advance(2)
    assert (await api.create_run(sid)).body["code"] == 0
    assert api.fake.run_count(sid) == 2


async def test_cancel_active_and_ended_runs(start: Start) -> None:
    """Cancel ends an active run as CANCELLED and leaves an ended run as it was."""
    clock = ManualClock()
    api = await start(clock=clock, run_duration=1.0)
    sid = await api.session()
    run_id = (await api.create_run(sid)).body["data"]["run"]["id"]
    clock.advance(0.5)
    cancel = f"{API}/sessions/{sid}/runs/{run_id}/cancel"
    cancelled = (await api.call("POST", cancel)).body["data"]["run"]
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["ended_at"] not in ("", "0")
    clock.advance(5)
    assert (await api.call("POST", cancel)).body["data"]["run"] == cancelled
    assert (await api.messages(sid))["messages"] == []
    done_id = (await api.create_run(sid)).body["data"]["run"]["id"]
    clock.advance(5)
    path = f"{API}/sessions/{sid}/runs/{done_id}/cancel"
    assert (await api.call("POST", path)).body["data"]["run"]["status"] == "COMPLETED"
    listed = (await api.call("GET", f"{API}/sessions/{sid}/runs")).body["data"]
    assert [run["id"] for run in listed["runs"]] == [done_id, run_id]  # newest first


async def test_requires_message_resumes_after_user_message(start: Start) -> None:
    """A requires_message run waits in REQUIRES_MESSAGE until the user answers, then completes."""
    clock = ManualClock()
    api = await start(
        clock=clock, run_script=RunPlan(queued=0, duration=1.0, requires_message=True)
    )
    sid = await api.session()
    run_id = (await api.create_run(sid)).body["data"]["run"]["id"]
    clock.advance(0.25)
    assert (await api.run(sid, run_id))["status"] == "IN_PROGRESS"
    clock.advance(100)
    assert (await api.run(sid, run_id))["status"] == "REQUIRES_MESSAGE"
    await api.send(sid, "yes, go on")
    clock.advance(0.25)
    assert (await api.run(sid, run_id))["status"] == "IN_PROGRESS"
    clock.advance(0.25)
    assert (await api.run(sid, run_id))["status"] == "COMPLETED"
    answers = (await api.messages(sid, run_id=run_id))["messages"]
    assert [m["content"] for m in answers] == ["Echo: yes, go on"]


async def test_partial_answer_grows_while_in_progress(start: Start) -> None:
    """With with_partial_message=true the answer shows up IN_PROGRESS and grows to COMPLETED."""
    clock = ManualClock()
    answer = "The quick brown fox jumps over the lazy dog."
    api = await start(clock=clock, run_script=RunPlan(queued=0.1, duration=1.0, answer=answer))
    sid = await api.session()
    run_id = (await api.create_run(sid)).body["data"]["run"]["id"]
    contents: list[str] = []
    ids: set[str] = set()
    for _ in range(4):
        clock.advance(0.25)
        assert (await api.messages(sid, run_id=run_id))["messages"] == []
        partial = (await api.messages(sid, with_partial_message="true"))["messages"]
        assert len(partial) == 1
        assert partial[0]["status"] == "IN_PROGRESS"
        ids.add(partial[0]["id"])
        contents.append(partial[0]["content"])
    clock.advance(0.2)
    final = (await api.messages(sid, run_id=run_id, with_partial_message="true"))["messages"]
    assert (final[0]["status"], final[0]["content"]) == ("COMPLETED", answer)
    ids.add(final[0]["id"])
    assert len(ids) == 1
    assert all(answer.startswith(content) for content in contents)
    assert [len(c) for c in contents] == sorted({len(c) for c in contents})


async def test_failed_run_reports_error_and_script_sees_request(start: Start) -> None:
    """A run_script decides per run; FAILED runs carry the plan's error code and message."""
    seen: list[RunRequest] = []

    def script(request: RunRequest) -> RunPlan:
        seen.append(request)
        return RunPlan(queued=0, duration=0, outcome="FAILED", error=("e_1", "boom"))

    api = await start(run_script=script)
    sid = await api.session()
    await api.send(sid, "question")
    run = (await api.create_run(sid, skill_id="skill_echo", skill_input='{"x":1}')).body
    assert run["data"]["run"]["status"] == "FAILED"
    assert run["data"]["run"]["error"] == {"code": "e_1", "message": "boom"}
    assert seen[0].last_user_message == "question"
    assert (seen[0].skill_id, seen[0].skill_input, seen[0].app_id) == (
        "skill_echo",
        '{"x":1}',
        APP,
    )
    assert (await api.messages(sid, run_id=run["data"]["run"]["id"]))["messages"] == []


async def test_run_script_can_refuse_with_fake_api_error(start: Start) -> None:
    """A run_script raising FakeApiError turns into that error answer and creates no run."""

    def script(request: RunRequest) -> RunPlan:
        raise FakeApiError(2700001, "param is invalid: skill_id: unknown", http_status=400)

    api = await start(run_script=script)
    sid = await api.session()
    assert_error(await api.create_run(sid, skill_id="skill_x"), 400, 2700001)
    assert api.fake.created_runs == 0


async def test_skill_answer_is_json_of_skill_input(start: Start) -> None:
    """A run naming a skill with skill_input answers with that input as JSON by default."""
    api = await start(run_script=RunPlan(queued=0, duration=0))
    sid = await api.session()
    run_id = (await api.create_run(sid, skill_id="skill_echo", skill_input='{"k": "值"}')).body[
        "data"
    ]["run"]["id"]
    answer = (await api.messages(sid, run_id=run_id))["messages"][0]["content"]
    assert json.loads(answer) == {"k": "值"}


# --------------------------------------------------------------------------- skills


async def test_start_skill_echoes_input(api: Api) -> None:
    """start skill answers status success and an output JSON string echoing the request."""
    body = {
        "global_variable": {
            "query": "你好",
            "files": ["file_1"],
            "channel": {"variables": '{"v": 1}'},
        },
        "input": '{"custom_integer": 22}',
    }
    reply = await api.call("POST", f"{API}/apps/{APP}/skills/skill_echo/start", body=body)
    data = reply.body["data"]
    assert data["status"] == "success"
    assert isinstance(data["output"], str)
    assert json.loads(data["output"]) == {
        "skill_id": "skill_echo",
        "query": "你好",
        "files": ["file_1"],
        "variables": {"v": 1},
        "input": {"custom_integer": 22},
    }
    empty = await api.call("POST", f"{API}/apps/{APP}/skills/skill_0001/start")
    assert json.loads(empty.body["data"]["output"])["input"] is None


async def test_skill_handler_override(start: Start) -> None:
    """An async skill_handler returning (output, status) answers start skill."""

    async def handler(request: SkillRequest) -> tuple[str, str]:
        return json.dumps({"got": request.query}), "failed"

    api = await start(skill_handler=handler)
    reply = await api.call(
        "POST", f"{API}/apps/{APP}/skills/skill_any/start", body={"global_variable": {"query": "q"}}
    )
    assert reply.body["data"] == {"output": '{"got": "q"}', "status": "failed"}


async def test_skills_get_and_list(start: Start) -> None:
    """Skills are listed page by page and each one can be read with string schemas."""
    api = await start()
    ids: list[str] = []
    params = {"page_size": "2"}
    while True:
        reply = await api.call("GET", f"{API}/apps/{APP}/skills", params=params)
        data = reply.body["data"]
        ids.extend(skill["id"] for skill in data["skills"])
        if not data["has_more"]:
            break
        params["page_token"] = data["page_token"]
    assert ids == ["skill_echo", "skill_0001", "skill_0002", "skill_0003", "skill_0004"]
    skill = (await api.call("GET", f"{API}/apps/{APP}/skills/skill_echo")).body["data"]["skill"]
    assert set(skill) == {"id", "label", "description", "samples", "input_schema", "output_schema"}
    assert isinstance(json.loads(skill["input_schema"]), dict)
    custom = await start(skills=[FakeSkill(id="skill_mine", label="Mine"), "skill_two"])
    listed = await custom.call("GET", f"{API}/apps/{APP}/skills")
    assert [s["id"] for s in listed.body["data"]["skills"]] == ["skill_mine", "skill_two"]


# --------------------------------------------------------------------------- validation, 404


@pytest.mark.parametrize(
    ("method", "path", "body", "params", "field"),
    [
        ("GET", "/sessions/session_ILLEGAL", None, None, "aily_session_id"),
        ("GET", "/sessions/{sid}/runs/runx", None, None, "run_id"),
        ("GET", "/sessions/{sid}/messages/message_o", None, None, "aily_message_id"),
        (
            "POST",
            "/sessions/{sid}/messages",
            {"content_type": "MDX", "content": "x"},
            None,
            "idempotent_id",
        ),
        (
            "POST",
            "/sessions/{sid}/messages",
            {"idempotent_id": "x" * 65, "content_type": "MDX", "content": "x"},
            None,
            "idempotent_id",
        ),
        (
            "POST",
            "/sessions/{sid}/messages",
            {"idempotent_id": "1", "content_type": "MDX"},
            None,
            "content",
        ),
        (
            "POST",
            "/sessions/{sid}/messages",
            {"idempotent_id": "1", "content_type": "MDX", "content": "x" * 61441},
            None,
            "content",
        ),
        (
            "POST",
            "/sessions/{sid}/messages",
            {"idempotent_id": "1", "content_type": "MDX", "content": "x", "file_ids": ["f"] * 33},
            None,
            "file_ids",
        ),
        ("POST", "/sessions/{sid}/runs", {}, None, "app_id"),
        (
            "POST",
            "/sessions/{sid}/runs",
            {"app_id": APP, "skill_input": "not json"},
            None,
            "skill_input",
        ),
        (
            "POST",
            "/sessions/{sid}/runs",
            {"app_id": APP, "metadata": '"' + "x" * 300 + '"'},
            None,
            "metadata",
        ),
        (
            "POST",
            "/apps/" + APP + "/skills/skill_echo/start",
            {"global_variable": {"channel": {"variables": "{bad"}}},
            None,
            "global_variable.channel.variables",
        ),
        ("POST", "/apps/" + APP + "/skills/skill_echo/start", {"input": "nope"}, None, "input"),
        ("GET", "/sessions/{sid}/messages", None, {"page_size": "101"}, "page_size"),
        ("GET", "/sessions/{sid}/messages", None, {"page_token": "garbage"}, "page_token"),
        (
            "GET",
            "/sessions/{sid}/messages",
            None,
            {"with_partial_message": "maybe"},
            "with_partial_message",
        ),
        ("GET", "/sessions/{sid}/messages", None, {"run_id": "run_I"}, "run_id"),
    ],
)
async def test_validation_errors_are_400_param_invalid(
    api: Api,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    params: dict[str, str] | None,
    field: str,
) -> None:
    """Bad ids, missing or too long fields and non-JSON strings get 400 2700001 naming the field."""
    sid = await api.session()
    reply = await api.call(method, API + path.format(sid=sid), body=body, params=params)
    assert_error(reply, 400, 2700001)
    assert reply.body["msg"].startswith(f"param is invalid: {field}: ")


async def test_biz_user_id_length_is_checked(api: Api) -> None:
    """X-Aily-BizUserID may hold 64 chars on create run and 255 on start skill."""
    sid = await api.session()
    too_long = {"X-Aily-BizUserID": "u" * 65}
    reply = await api.call(
        "POST", f"{API}/sessions/{sid}/runs", body={"app_id": APP}, headers=too_long
    )
    assert_error(reply, 400, 2700001)
    start = f"{API}/apps/{APP}/skills/skill_echo/start"
    assert (await api.call("POST", start, headers=too_long)).status == 200
    assert_error(
        await api.call("POST", start, headers={"X-Aily-BizUserID": "u" * 256}), 400, 2700001
    )


async def test_unknown_entities_are_404(api: Api) -> None:
    """Well-formed but unknown session, run, message and skill ids get HTTP 404 "not found"."""
    sid = await api.session()
    paths = [
        f"{API}/sessions/session_zzzzzzzzzzzzz",
        f"{API}/sessions/{sid}/runs/run_zzzzzzzzzzzzz",
        f"{API}/sessions/{sid}/messages/message_zzzzzzzzzzzzz",
        f"{API}/apps/{APP}/skills/skill_missing",
    ]
    for path in paths:
        reply = await api.call("GET", path)
        assert_error(reply, 404, 2700001)
        assert reply.body["msg"].endswith("not found")


# --------------------------------------------------------------------------- rate limits


async def test_strict_window_refuses_with_429_and_headers(start: Start) -> None:
    """A full sliding window answers 429/99991400 with limit and reset headers, then frees."""
    clock = ManualClock()
    api = await start(clock=clock, rate_limits={"sessions.create": [(3, 10.0)]})
    for _ in range(3):
        assert (await api.call("POST", f"{API}/sessions")).status == 200
        clock.advance(1)
    refused = await api.call("POST", f"{API}/sessions")
    assert_error(refused, 429, 99991400)
    assert refused.body["msg"] == "request trigger frequency limit"
    assert refused.headers["x-ogw-ratelimit-limit"] == "3"
    assert refused.headers["x-ogw-ratelimit-reset"] == "7"  # first call leaves at t+10
    api.fake.reset_header_precision = "float"
    clock.advance(6.65)
    refused = await api.call("POST", f"{API}/sessions")
    assert refused.headers["x-ogw-ratelimit-reset"] == "0.35"
    clock.advance(0.35)
    assert (await api.call("POST", f"{API}/sessions")).status == 200
    assert (await api.call("POST", f"{API}/sessions")).status == 429
    assert api.fake.rate_limited == {"sessions.create": 3}
    assert api.fake.created_sessions == 4
    assert (await api.call("GET", f"{API}/apps/{APP}/skills")).status == 200  # not limited
    assert api.fake.route_counts()["sessions.create"] == 7


async def test_documented_quotas_and_external_load(start: Start) -> None:
    """rate_limits=True enforces 100/min on runs.create and 50/s on other calls, shared load too."""
    clock = ManualClock()
    api = await start(clock=clock, rate_limits=True)
    sid = await api.session()
    api.fake.external_load("runs.create", 100)
    refused = await api.create_run(sid)
    assert_error(refused, 429, 99991400)
    assert refused.headers["x-ogw-ratelimit-limit"] == "100"
    assert refused.headers["x-ogw-ratelimit-reset"] == "60"
    api.fake.external_load("sessions.get", 49)
    assert (await api.call("GET", f"{API}/sessions/{sid}")).status == 200
    refused = await api.call("GET", f"{API}/sessions/{sid}")
    assert refused.headers["x-ogw-ratelimit-limit"] == "50"
    assert refused.headers["x-ogw-ratelimit-reset"] == "1"
    clock.advance(1)
    assert (await api.call("GET", f"{API}/sessions/{sid}")).status == 200
    api.fake.external_load("runs.get", 5, app_id="cli_someone_else")
    assert api.fake.rate_limited == {"runs.create": 1, "sessions.get": 1}


async def test_default_limit_gives_each_route_its_own_counter(start: Start) -> None:
    """A custom "default" window applies to every route left out, counted per route."""
    clock = ManualClock()
    api = await start(clock=clock, rate_limits={"default": [(2, 5.0)]})
    sid = await api.session()
    await api.session()
    assert (await api.call("POST", f"{API}/sessions")).status == 429
    for _ in range(2):
        assert (await api.call("GET", f"{API}/sessions/{sid}")).status == 200
    assert (await api.call("GET", f"{API}/sessions/{sid}")).status == 429
    assert (await api.create_run(sid)).status == 200
    assert api.fake.rate_limited == {"sessions.create": 1, "sessions.get": 1}
    other = Api(api.http, api.fake)
    await other.login(app_id="cli_other_app")
    assert (await other.call("GET", f"{API}/sessions/{sid}")).status == 200  # per app


async def test_time_scale_shrinks_windows(start: Start) -> None:
    """time_scale=0.01 turns the 60 s window into 0.6 s, with a sub-second float reset."""
    clock = ManualClock()
    api = await start(
        clock=clock, rate_limits=True, time_scale=0.01, reset_header_precision="float"
    )
    sid = await api.session()
    api.fake.external_load("runs.create", 100)
    refused = await api.create_run(sid)
    assert refused.headers["x-ogw-ratelimit-reset"] == "0.6"
    clock.advance(0.6)
    assert (await api.create_run(sid)).status == 200


# --------------------------------------------------------------------------- faults


async def test_injected_5xx_takes_no_effect(api: Api) -> None:
    """inject() answers the next calls with the given status and JSON code, creating nothing."""
    api.fake.inject("sessions.create", status=503, times=2)
    for _ in range(2):
        reply = await api.call("POST", f"{API}/sessions")
        assert (reply.status, reply.body["code"]) == (503, 1)
        assert reply.headers["X-Tt-Logid"]
    assert (await api.call("POST", f"{API}/sessions")).status == 200
    assert api.fake.created_sessions == 1
    assert [r.fault for r in api.fake.requests if r.route == "sessions.create"] == [
        "error",
        "error",
        None,
    ]


async def test_injected_bodies_html_huge_and_token_errors(api: Api) -> None:
    """inject() can send raw HTML, a huge body, or a token error with HTTP 200."""
    api.fake.inject("skills.list", status=502, body="<html>bad gateway</html>")
    reply = await api.call("GET", f"{API}/apps/{APP}/skills")
    assert reply.status == 502
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.body == b"<html>bad gateway</html>"
    api.fake.inject("skills.list", status=200, body=b"x" * 3_000_000)
    assert len((await api.call("GET", f"{API}/apps/{APP}/skills")).body) == 3_000_000
    api.fake.inject("skills.list", status=200, code=99991663)
    assert (await api.call("GET", f"{API}/apps/{APP}/skills")).body["code"] == 99991663
    api.fake.inject("skills.list", status=None, headers={"x-extra": "1"})
    reply = await api.call("GET", f"{API}/apps/{APP}/skills")
    assert (reply.status, reply.headers["x-extra"]) == (200, "1")


async def test_drop_before_and_after(
    api: Api, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A drop closes the connection with no answer, quietly; "after" lets the write land first."""
    caplog.set_level(logging.DEBUG, logger="aily_async")
    sid = await api.session()
    api.fake.inject("runs.create", drop="before")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.create_run(sid)
    assert api.fake.created_runs == 0
    api.fake.inject("runs.create", drop="after")
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.create_run(sid)
    assert api.fake.created_runs == 1
    assert_error(await api.create_run(sid), 400, 2700001)  # the landed run is still active
    statuses = [(r.status, r.fault) for r in api.fake.requests if r.route == "runs.create"]
    assert statuses == [(None, "drop-before"), (None, "drop-after"), (400, None)]
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def _outcomes(reply: Reply | None) -> str:
    return "drop" if reply is None else f"{reply.status}:{type(reply.body).__name__}"


async def test_random_faults_are_deterministic_with_seed(start: Start) -> None:
    """Two fakes with the same Faults seed fail the same calls the same way; auth is spared."""
    faults = Faults(error_rate=0.3, drop_rate=0.2, seed=42)
    runs: list[list[str]] = []
    for _ in range(2):
        api = await start(faults=faults)
        assert api.token is not None  # the token endpoint is not faulted
        seen: list[str] = []
        for _ in range(30):
            try:
                reply: Reply | None = await api.call("POST", f"{API}/sessions")
            except aiohttp.ClientConnectionError:
                reply = None
            seen.append(_outcomes(reply))
        runs.append(seen)
        assert api.fake.created_sessions == sum(
            r.fault in (None, "drop-after") for r in api.fake.requests if r.route != "auth"
        )
    assert runs[0] == runs[1]
    kinds = set(runs[0])
    assert "drop" in kinds
    assert "200:dict" in kinds
    assert {"500:bytes", "502:bytes", "503:bytes", "500:dict", "502:dict", "503:dict"} & kinds


async def test_fault_delay_and_set_faults(api: Api) -> None:
    """Faults(delay=...) slows calls down, and set_faults(None) turns faults off."""
    api.fake.set_faults(Faults(delay=(0.05, 0.05), routes=["sessions.create"]))
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert (await api.call("POST", f"{API}/sessions")).status == 200
    assert loop.time() - began >= 0.05
    assert api.fake.requests[-1].fault == "delay"
    api.fake.set_faults(None)
    assert (await api.call("POST", f"{API}/sessions")).status == 200
    assert api.fake.requests[-1].fault is None
    with pytest.raises(ValueError, match="unknown route"):
        Faults(routes=["nope"])


# --------------------------------------------------------------------------- off the happy path


def _date(reply: Reply) -> float:
    """The ``Date`` header of ``reply`` as a POSIX time, checking it is a single IMF-fixdate."""
    [raw] = reply.headers.getall("Date")
    moment = email.utils.parsedate_to_datetime(raw)
    assert email.utils.format_datetime(moment, usegmt=True) == raw
    return moment.timestamp()


async def test_clock_offset_shifts_timestamps_and_every_date_header(start: Start) -> None:
    """clock_offset moves timestamps and Date alike, on every answer, errors and 429s too."""
    api = await start(login=False, clock_offset=600, rate_limits={"sessions.get": [(1, 60.0)]})
    login = await api.login()
    sid = await api.session()
    created = await api.create_run(sid)
    real = time.time()
    run = created.body["data"]["run"]
    created_at = int(run["created_at"]) / 1000
    assert abs(_date(created) - (real + 600)) < 2
    assert abs(created_at - (real + 600)) < 2
    assert abs(_date(created) - created_at) <= 1  # Date has whole seconds only
    session = await api.call("GET", f"{API}/sessions/{sid}")
    assert abs(int(session.body["data"]["session"]["created_at"]) / 1000 - created_at) < 1
    limited = await api.call("GET", f"{API}/sessions/{sid}")
    missing = await api.call("GET", f"{API}/sessions/session_zzzz/messages")
    api.fake.inject("runs.list", status=503)
    failed = await api.call("GET", f"{API}/sessions/{sid}/runs")
    api.fake.inject("auth", status=500, body="<html>down</html>")
    html = await api.call("POST", TOKEN_PATH, body={"app_id": "a", "app_secret": "b"})
    replies = [login, session, limited, missing, failed, html]
    assert [reply.status for reply in replies] == [200, 200, 429, 404, 503, 500]
    for reply in replies:
        assert abs(_date(reply) - (real + 600)) < 2, reply


def test_date_header_follows_the_fake_clock_on_a_virtual_loop() -> None:
    """Date comes from the fake's clock: a virtual hour later it is an hour later, as created_at."""

    @virtual_time
    async def scenario() -> None:
        async with aiohttp.ClientSession() as http, FakeAily(clock_offset=-30.0) as fake:
            api = Api(http, fake)
            first = await api.login()
            real = time.time()
            await asyncio.sleep(3600)
            reply = await api.call("POST", f"{API}/sessions", body={})
            created_at = int(reply.body["data"]["session"]["created_at"]) / 1000
            assert abs(_date(first) - (real - 30)) < 2
            assert abs(_date(reply) - (real - 30 + 3600)) < 2
            assert abs(_date(reply) - created_at) <= 1

    scenario()


def test_held_answer_lands_although_the_client_gave_up(caplog: pytest.LogCaptureFixture) -> None:
    """hold handles the call (it takes effect), then keeps the answer back past the timeout."""
    caplog.set_level(logging.DEBUG)

    @virtual_time
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as http, FakeAily(run_duration=1.0) as fake:
            api = Api(http, fake)
            await api.login()
            sid = await api.session()
            fake.inject("runs.create", hold=30)
            began = loop.time()
            with pytest.raises(asyncio.TimeoutError):
                async with http.post(
                    f"{fake.url}{API}/sessions/{sid}/runs",
                    json={"app_id": APP},
                    headers={"Authorization": f"Bearer {api.token}"},
                    timeout=aiohttp.ClientTimeout(total=1.0),
                ):
                    pass
            assert loop.time() - began < 2
            assert fake.created_runs == 1
            listed = (await api.call("GET", f"{API}/sessions/{sid}/runs")).body["data"]["runs"]
            assert [run["id"] for run in listed] == [run["id"] for run in fake.runs_in(sid)]
            assert len(listed) == 1
            await asyncio.sleep(30)  # the held answer falls due; its client is gone
            held = [(r.status, r.fault) for r in fake.requests if r.route == "runs.create"]
            assert held == [(None, "hold")]
            # A patient client gets the answer, late; an error status is held back too.
            fake.inject("sessions.create", status=None, hold=2)
            fake.inject("sessions.create", status=503, hold=2)
            for expected in (200, 503):
                began = loop.time()
                sent = _date(await api.call("GET", f"{API}/sessions/{sid}"))
                reply = await api.call("POST", f"{API}/sessions", body={})
                assert reply.status == expected
                assert loop.time() - began >= 2
                assert _date(reply) - sent >= 2  # Date tells when the answer was sent
            assert fake.created_sessions == 2
            creates = [(r.status, r.fault) for r in fake.requests if r.route == "sessions.create"]
            assert creates[-2:] == [(200, "hold"), (503, "error")]

    scenario()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_close_ends_held_answers_at_once(http: aiohttp.ClientSession) -> None:
    """close() does not wait out a hold: the held call ends without an answer."""
    fake = FakeAily()
    await fake.start()
    api = Api(http, fake)
    await api.login()
    fake.inject("sessions.create", hold=60)
    call = asyncio.create_task(api.call("POST", f"{API}/sessions", body={}))
    for _ in range(200):
        if fake.created_sessions:
            break
        await asyncio.sleep(0.01)
    assert fake.created_sessions == 1
    loop = asyncio.get_running_loop()
    began = loop.time()
    await fake.close()
    assert loop.time() - began < 0.5
    with pytest.raises(aiohttp.ClientConnectionError):
        await call
    assert [(r.status, r.fault) for r in fake.requests][-1] == (None, "hold")


def test_outage_window_on_the_token_endpoint() -> None:
    """outage() answers every call within the window with the error and no effect, then ends."""

    @virtual_time
    async def scenario() -> None:
        async with aiohttp.ClientSession() as http, FakeAily() as fake:
            api = Api(http, fake)
            fake.outage("auth", 1.0)
            fake.inject("auth", status=500)  # waits for the first call after the outage
            for _ in range(3):
                reply = await api.login()
                assert_error(reply, 503, 1)
                assert "tenant_access_token" not in reply.body
                await asyncio.sleep(0.3)
            assert api.token is None
            await asyncio.sleep(0.2)
            assert (await api.login()).status == 500
            assert (await api.login()).status == 200
            assert fake.token_fetches == 5
            assert [r.fault for r in fake.requests] == ["outage"] * 3 + ["error", None]

            sid = await api.session()
            fake.outage("sessions.delete", 10.0, status=429)
            fake.reset_header_precision = "float"
            limited = await api.call("DELETE", f"{API}/sessions/{sid}")
            assert_error(limited, 429, 99991400)
            assert limited.headers["x-ogw-ratelimit-reset"] == "10"
            assert fake.session_ids() == [sid]
            await asyncio.sleep(10)
            assert (await api.call("DELETE", f"{API}/sessions/{sid}")).status == 200
            with pytest.raises(ValueError, match="unknown route"):
                fake.outage("nope", 1.0)
            with pytest.raises(ValueError, match="status"):
                fake.outage("auth", 1.0, status=200)

    scenario()


async def test_placeholder_is_replaced_by_the_growing_answer(start: Start) -> None:
    """A partial answer shows the placeholder first, then a growing prefix of the real answer."""
    clock = ManualClock()
    answer = "The quick brown fox jumps over the lazy dog."
    placeholder = "…thinking…"
    plan = RunPlan(queued=0.5, duration=3.0, answer=answer, placeholder=placeholder)
    api = await start(clock=clock, run_script=plan)
    sid = await api.session()
    await api.send(sid, "hi")
    run_id = (await api.create_run(sid)).body["data"]["run"]["id"]

    async def partial() -> dict[str, Any]:
        listed = await api.messages(sid, run_id=run_id, with_partial_message="true")
        [message] = listed["messages"]
        return dict(message)

    assert (await api.messages(sid, run_id=run_id, with_partial_message="true"))["messages"] == []
    seen: list[tuple[float, str, str]] = []
    elapsed = 0.0
    for moment in (0.6, 0.9, 1.4, 1.6, 2.0, 2.5, 3.0, 3.45):
        clock.advance(moment - elapsed)
        elapsed = moment
        message = await partial()
        seen.append((moment, message["status"], message["content"]))
        assert (await api.messages(sid, run_id=run_id))["messages"] == []  # not without partial
        path = f"{API}/sessions/{sid}/messages/{message['id']}"
        assert (await api.call("GET", path)).body["data"]["message"] == message
    assert {status for _, status, _ in seen} == {"IN_PROGRESS"}
    early = [content for moment, _, content in seen if moment < 0.5 + 1.0]
    later = [content for moment, _, content in seen if moment > 0.5 + 1.0]
    assert early == [placeholder] * 3
    assert all(content and answer.startswith(content) for content in later)
    assert [len(content) for content in later] == sorted({len(content) for content in later})
    assert later[-1] != answer
    clock.advance(0.1)
    final = await partial()
    assert (final["status"], final["content"]) == ("COMPLETED", answer)
    assert [m["content"] for m in api.fake.messages_in(sid)] == ["hi", answer]
    assert RunPlan().placeholder is None


async def test_dropped_answer_of_put_and_delete_lands_and_resends_are_logged(api: Api) -> None:
    """drop="after" on PUT/DELETE: the change lands, and a re-send shows in requests."""
    sid = await api.session()

    async def send_raw(method: str, body: Any = None) -> int | None:
        try:
            return (await api.call(method, f"{API}/sessions/{sid}", body=body)).status
        except aiohttp.ClientConnectionError:
            return None

    api.fake.inject("sessions.update", drop="after")
    status = await send_raw("PUT", {"metadata": '{"v":1}'})
    assert api.fake.get_session(sid)["metadata"] == '{"v":1}'
    if status is None:  # this aiohttp did not send it again by itself: do it by hand
        status = await send_raw("PUT", {"metadata": '{"v":1}'})
    assert status == 200
    updates = [(r.status, r.fault) for r in api.fake.requests if r.route == "sessions.update"]
    assert updates == [(None, "drop-after"), (200, None)]

    api.fake.inject("sessions.update", drop="after", times=2)
    assert await send_raw("PUT", {"metadata": '{"v":2}'}) is None
    assert api.fake.get_session(sid)["metadata"] == '{"v":2}'

    api.fake.inject("sessions.delete", drop="after")
    status = await send_raw("DELETE")
    assert api.fake.session_ids() == []
    if status is None:
        status = await send_raw("DELETE")
    assert status == 404  # the re-sent DELETE finds nothing left to delete
    deletes = [(r.status, r.fault) for r in api.fake.requests if r.route == "sessions.delete"]
    assert deletes == [(None, "drop-after"), (404, None)]


# --------------------------------------------------------------------------- log, clock, CLI


async def test_request_log_redacts_token_and_keeps_biz_user(api: Api) -> None:
    """The request log keeps method, route, status, body and BizUserID but not the token."""
    sid = await api.session()
    await api.call(
        "POST",
        f"{API}/sessions/{sid}/runs",
        body={"app_id": APP},
        headers={"X-Aily-BizUserID": "ou_123"},
    )
    auth, _, run = api.fake.requests
    assert auth.route == "auth"
    assert auth.json["app_secret"] == "<redacted>"
    assert (run.method, run.route, run.status, run.json) == (
        "POST",
        "runs.create",
        200,
        {"app_id": APP},
    )
    assert run.biz_user_id == "ou_123"
    assert run.headers["Authorization"] == "Bearer t-<redacted>"
    assert api.token is not None
    assert api.token not in str(run.headers)
    assert api.fake.route_counts() == {"auth": 1, "sessions.create": 1, "runs.create": 1}
    api.fake.reset_log()
    assert api.fake.requests == []
    assert api.fake.token_fetches == 0
    assert api.fake.created_runs == 1


async def test_timestamps_follow_the_injected_clock(start: Start) -> None:
    """Wall-clock ms timestamps move exactly with the fake's clock."""
    clock = ManualClock()
    api = await start(clock=clock, run_script=RunPlan(queued=0.5, duration=2.0))
    sid = await api.session()
    run = (await api.create_run(sid)).body["data"]["run"]
    clock.advance(3)
    done = await api.run(sid, run["id"])
    assert int(done["started_at"]) - int(run["created_at"]) == 500
    assert int(done["ended_at"]) - int(run["created_at"]) == 2500


async def test_many_runs_cost_nothing_while_idle(start: Start) -> None:
    """Runs progress lazily: thousands of stored runs need no background work."""
    clock = ManualClock()
    api = await start(clock=clock, run_duration=1.0)
    sid = await api.session()
    for _ in range(20):
        assert (await api.create_run(sid)).status == 200
        clock.advance(2)
    assert len(asyncio.all_tasks()) < 10
    assert {run["status"] for run in api.fake.runs_in(sid)} == {"COMPLETED"}


async def test_serve_prints_url_until_cancelled(capsys: pytest.CaptureFixture[str]) -> None:
    """serve() listens and prints its URL until cancelled; the CLI parser knows its options."""
    task = asyncio.create_task(serve(0, "127.0.0.1", run_duration=0.1))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if "http://" in capsys.readouterr().out:
            break
    else:
        pytest.fail("serve() did not print its URL")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    args = build_parser().parse_args(
        ["--port", "9", "--rate-limits", "--error-rate", "0.1", "--time-scale", "0.5"]
    )
    assert (args.port, args.rate_limits, args.error_rate, args.time_scale) == (9, True, 0.1, 0.5)
    skewed = build_parser().parse_args(["--clock-offset", "-600"])
    assert testing.server_options(skewed)["clock_offset"] == -600.0
    assert "clock_offset" not in testing.server_options(build_parser().parse_args([]))
    assert callable(main)


def test_public_names_are_exported() -> None:
    """Every name in aily_async.testing.__all__ exists, and the main ones are there."""
    for name in testing.__all__:
        assert hasattr(testing, name), name
    assert {"FakeAily", "RunPlan", "RunRequest", "Faults", "RecordedRequest", "serve"} <= set(
        testing.__all__
    )
    assert math.isclose(RunPlan().duration, 0.3)
