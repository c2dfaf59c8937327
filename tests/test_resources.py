"""Every call of the API surface against FakeAily: answers, error answers, pages, headers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from _vloop import virtual_time

from aily_async import (
    AilyClient,
    AilyInvalidParamsError,
    AilyNotFoundError,
    AilyResponseError,
    Message,
    RetryPolicy,
    Run,
    RunHandle,
    RunStatus,
    Session,
    Skill,
    SkillResult,
)
from aily_async.testing import FakeAily, RunPlan

APP = "spring_449d72db2f__c"
SKILL = "skill_echo"
INSTANT = RunPlan(queued=0.0, duration=0.0)


def make_client(fake: FakeAily, **kwargs: Any) -> AilyClient:
    """A client for ``fake`` with retries that do not wait and no client-side limiter."""
    kwargs.setdefault("retry", RetryPolicy.no_wait())
    kwargs.setdefault("limiter", None)
    return AilyClient("cli_test", "test-secret", base_url=fake.url, **kwargs)


@pytest.fixture
async def quick() -> AsyncIterator[tuple[FakeAily, AilyClient]]:
    """A fake whose runs complete the moment they are created, and a client for it."""
    async with FakeAily(run_script=INSTANT) as fake, make_client(fake) as client:
        yield fake, client


async def collect(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


def sent(fake: FakeAily, route: str) -> list[Any]:
    return [r for r in fake.requests if r.route == route]


# -- sessions -----------------------------------------------------------------------------


async def test_sessions_create_get_update_delete(client: AilyClient, fake: FakeAily) -> None:
    """A session is created with dict/str JSON fields, read, updated and deleted."""
    created = await client.sessions.create(metadata={"user": "u1"}, channel_context='{"ch": 1}')
    assert isinstance(created, Session)
    assert created.id.startswith("session_")
    assert created.metadata == '{"user":"u1"}'
    assert created.metadata_json() == {"user": "u1"}
    assert created.channel_context == '{"ch": 1}'
    assert created.created_at is not None
    assert sent(fake, "sessions.create")[0].json == {
        "metadata": '{"user":"u1"}',
        "channel_context": '{"ch": 1}',
    }

    assert await client.sessions.get(created.id) == created

    updated = await client.sessions.update(created.id, metadata='{"user": "u2"}')
    assert updated.metadata_json() == {"user": "u2"}
    assert updated.channel_context == '{"ch": 1}'
    updated = await client.sessions.update(created.id, channel_context={"ch": 2})
    assert updated.channel_context == '{"ch":2}'
    assert updated.metadata_json() == {"user": "u2"}
    assert sent(fake, "sessions.update")[1].method == "PUT"

    await client.sessions.delete(created.id)
    assert sent(fake, "sessions.delete")[0].method == "DELETE"
    assert fake.session_ids() == []
    with pytest.raises(AilyNotFoundError):
        await client.sessions.get(created.id)


async def test_sessions_create_without_fields(client: AilyClient, fake: FakeAily) -> None:
    """A session created with no arguments sends an empty object."""
    session = await client.sessions.create()
    assert sent(fake, "sessions.create")[0].json == {}
    assert fake.session_ids() == [session.id]


# -- messages -----------------------------------------------------------------------------


async def test_messages_create_and_get(client: AilyClient, fake: FakeAily) -> None:
    """A message is sent with every optional field and read back the same."""
    session = await client.sessions.create()
    first = await client.messages.create(session.id, "first")
    message = await client.messages.create(
        session.id,
        "hello **world**",
        content_type="TEXT",
        file_ids=["file_a", "file_b"],
        quote_message_id=first.id,
        mentions=[{"entity_id": "ou_1", "identity_provider": "FEISHU"}],
    )
    assert isinstance(message, Message)
    assert (message.session_id, message.content, message.content_type) == (
        session.id,
        "hello **world**",
        "TEXT",
    )
    assert message.quote_message_id == first.id
    assert len(message.files) == 2
    assert message.sender is not None
    assert message.sender.sender_type == "USER"
    assert not message.is_assistant
    body = sent(fake, "messages.create")[1].json
    assert body["file_ids"] == ["file_a", "file_b"]
    assert body["mentions"] == [{"entity_id": "ou_1", "identity_provider": "FEISHU"}]
    assert body["content_type"] == "TEXT"
    assert len(body["idempotent_id"]) <= 64
    assert sent(fake, "messages.create")[0].json["content_type"] == "MDX"  # the default

    assert await client.messages.get(session.id, message.id) == message


async def test_messages_list_and_run_filter(quick: tuple[FakeAily, AilyClient]) -> None:
    """messages.list returns the session's messages oldest first; run_id keeps one run's."""
    fake, client = quick
    session = await client.sessions.create()
    question = await client.messages.create(session.id, "ping")
    handle = await client.runs.create(session.id, app_id=APP)
    await client.messages.create(session.id, "thanks")

    everything = await collect(client.messages.list(session.id))
    assert [m.text for m in everything] == ["ping", "Echo: ping", "thanks"]
    assert everything[0] == question

    answer = await collect(client.messages.list(session.id, run_id=handle.id))
    assert [m.text for m in answer] == ["Echo: ping"]
    assert answer[0].is_assistant
    assert answer[0].run_id == handle.id
    assert sent(fake, "messages.list")[1].query == {"run_id": handle.id}


@virtual_time
async def test_messages_list_with_partial_message() -> None:
    """with_partial_message=True also lists the answer still being written."""
    plan = RunPlan(queued=0.0, duration=10.0, answer="a long and careful answer")
    async with FakeAily(run_script=plan) as fake, make_client(fake) as client:
        session = await client.sessions.create()
        await client.messages.create(session.id, "question")
        handle = await client.runs.create(session.id, app_id=APP)
        await asyncio.sleep(5.0)
        assert await collect(client.messages.list(session.id, run_id=handle.id)) == []
        (partial,) = await collect(
            client.messages.list(session.id, run_id=handle.id, with_partial_message=True)
        )
        assert partial.status == "IN_PROGRESS"
        assert 0 < len(partial.text) < len("a long and careful answer")
        assert "a long and careful answer".startswith(partial.text)
        assert sent(fake, "messages.list")[-1].query["with_partial_message"] == "true"
        await asyncio.sleep(6.0)
        (done,) = await collect(client.messages.list(session.id, run_id=handle.id))
        assert (done.status, done.text) == ("COMPLETED", "a long and careful answer")


# -- runs ---------------------------------------------------------------------------------


async def test_runs_create_returns_a_handle(client: AilyClient, fake: FakeAily) -> None:
    """runs.create sends app_id/skill_id/skill_input/metadata and returns a RunHandle on the
    created run."""
    session = await client.sessions.create()
    handle = await client.runs.create(
        session.id,
        app_id=APP,
        skill_id=SKILL,
        skill_input={"query": "weather"},
        metadata='{"trace": "t1"}',
    )
    assert isinstance(handle, RunHandle)
    assert isinstance(handle.run, Run)
    assert handle.id == handle.run.id
    assert handle.id.startswith("run_")
    assert handle.session_id == session.id
    assert handle.run.status.is_active
    assert handle.run.app_id == APP
    assert sent(fake, "runs.create")[0].json == {
        "app_id": APP,
        "skill_id": SKILL,
        "skill_input": '{"query":"weather"}',
        "metadata": '{"trace": "t1"}',
    }
    run = await client.runs.get(session.id, handle.id)
    assert run.metadata == '{"trace": "t1"}'
    assert run.metadata_json() == {"trace": "t1"}


async def test_run_handle_refresh(client: AilyClient, fake: FakeAily) -> None:
    """handle.refresh() fetches the run once and updates handle.run."""
    session = await client.sessions.create()
    handle = await client.runs.create(session.id, app_id=APP)
    assert handle.run.status is RunStatus.QUEUED
    await asyncio.sleep(0.1)  # the default plan: queued for 0.05 s
    fake.reset_log()
    run = await handle.refresh()
    assert run.status is RunStatus.IN_PROGRESS
    assert handle.run is run
    assert fake.route_counts() == {"runs.get": 1}


async def test_runs_get_list_cancel(client: AilyClient, fake: FakeAily) -> None:
    """runs.get reads a run, runs.list lists the session's runs, runs.cancel cancels one."""
    session = await client.sessions.create()
    handle = await client.runs.create(session.id, app_id=APP)
    got = await client.runs.get(session.id, handle.id)
    assert (got.id, got.session_id, got.app_id) == (handle.id, session.id, APP)
    assert [r.id for r in await collect(client.runs.list(session.id))] == [handle.id]

    cancelled = await client.runs.cancel(session.id, handle.id)
    assert cancelled.status is RunStatus.CANCELLED
    assert cancelled.status.is_terminal
    assert cancelled.ended_at is not None
    assert sent(fake, "runs.cancel")[0].method == "POST"
    assert (await client.runs.get(session.id, handle.id)).status is RunStatus.CANCELLED


async def test_completed_run_and_its_answer(quick: tuple[FakeAily, AilyClient]) -> None:
    """A run of a skill with input answers the input as JSON (metadata given as a dict is read
    back); awaiting an ended run costs no poll."""
    fake, client = quick
    session = await client.sessions.create()
    handle = await client.runs.create(
        session.id,
        app_id=APP,
        skill_id=SKILL,
        skill_input='{"city": "Hangzhou"}',
        metadata={"trace": 7},
    )
    run = await handle
    assert run.status is RunStatus.COMPLETED
    assert run.metadata_json() == {"trace": 7}
    assert "runs.get" not in fake.route_counts()
    (answer,) = await handle.messages()
    assert json.loads(answer.text) == {"city": "Hangzhou"}


# -- skills -------------------------------------------------------------------------------


async def test_skills_start(client: AilyClient, fake: FakeAily) -> None:
    """skills.start sends query/files/variables/input in the documented shape and returns the
    output as sent, parsed by json()."""
    result = await client.skills.start(
        APP,
        SKILL,
        query="what is up",
        files=["file_1"],
        variables={"lang": "en"},
        input='{"n": 3}',
    )
    assert isinstance(result, SkillResult)
    assert result.status == "success"
    assert isinstance(result.output, str)
    assert result.json() == {
        "skill_id": SKILL,
        "query": "what is up",
        "files": ["file_1"],
        "variables": {"lang": "en"},
        "input": {"n": 3},
    }
    request = sent(fake, "skills.start")[0]
    assert request.path == f"/open-apis/aily/v1/apps/{APP}/skills/{SKILL}/start"
    assert request.json == {
        "global_variable": {
            "query": "what is up",
            "files": ["file_1"],
            "channel": {"variables": '{"lang":"en"}'},
        },
        "input": '{"n": 3}',
    }


async def test_skills_start_json_fields_as_str_or_dict(client: AilyClient, fake: FakeAily) -> None:
    """variables and input accept a JSON string as well as a dict; no arguments sends {}."""
    result = await client.skills.start(APP, SKILL, variables='{"a": 1}', input={"b": [1, 2]})
    assert result.json()["variables"] == {"a": 1}
    assert result.json()["input"] == {"b": [1, 2]}
    await client.skills.start(APP, SKILL)
    assert sent(fake, "skills.start")[1].json == {}


async def test_skills_get_and_list(client: AilyClient) -> None:
    """skills.get describes one skill; skills.list walks the app's catalogue."""
    skill = await client.skills.get(APP, SKILL)
    assert isinstance(skill, Skill)
    assert (skill.id, skill.label) == (SKILL, "Echo")
    assert skill.samples == ("hello",)
    assert skill.input_schema_json()["type"] == "object"
    listed = await collect(client.skills.list(APP))
    assert [s.id for s in listed] == [SKILL, "skill_0001", "skill_0002", "skill_0003", "skill_0004"]
    assert listed[0] == skill


# -- pagination ---------------------------------------------------------------------------


async def test_messages_list_walks_all_pages(client: AilyClient, fake: FakeAily) -> None:
    """messages.list follows page tokens until has_more is false, with the page size given."""
    session = await client.sessions.create()
    for n in range(25):
        await client.messages.create(session.id, f"m{n}")
    listed = await collect(client.messages.list(session.id, page_size=10))
    assert [m.text for m in listed] == [f"m{n}" for n in range(25)]
    queries = [r.query for r in sent(fake, "messages.list")]
    assert len(queries) == 3
    assert [q["page_size"] for q in queries] == ["10"] * 3
    assert "page_token" not in queries[0]
    assert queries[1]["page_token"] != queries[2]["page_token"]

    fake.reset_log()
    assert len(await collect(client.messages.list(session.id))) == 25
    assert fake.route_counts()["messages.list"] == 2  # the service's default page of 20


async def test_runs_list_walks_all_pages(quick: tuple[FakeAily, AilyClient]) -> None:
    """runs.list walks every page, newest run first."""
    fake, client = quick
    session = await client.sessions.create()
    ids = [(await client.runs.create(session.id, app_id=APP)).id for _ in range(5)]
    listed = await collect(client.runs.list(session.id, page_size=2))
    assert [r.id for r in listed] == ids[::-1]
    assert fake.route_counts()["runs.list"] == 3


async def test_skills_list_walks_all_pages(client: AilyClient, fake: FakeAily) -> None:
    """skills.list walks every page."""
    listed = await collect(client.skills.list(APP, page_size=2))
    assert len(listed) == 5
    assert len({s.id for s in listed}) == 5
    assert fake.route_counts()["skills.list"] == 3


async def test_list_is_lazy(client: AilyClient, fake: FakeAily) -> None:
    """A list sends nothing until iterated, and stopping early fetches no more pages."""
    iterator = client.skills.list(APP, page_size=2)
    assert fake.requests == []
    first = await iterator.__anext__()
    assert first.id == SKILL
    assert fake.route_counts()["skills.list"] == 1


async def test_repeated_page_token_is_an_error(client: AilyClient, fake: FakeAily) -> None:
    """A service that hands out the same page token twice raises instead of looping forever."""
    page = {
        "code": 0,
        "msg": "success",
        "data": {"skills": [{"id": "skill_x"}], "has_more": True, "page_token": "same"},
    }
    fake.inject("skills.list", status=200, body=page, times=3)
    with pytest.raises(AilyResponseError, match=r"^skills\.list: .*page token"):
        await collect(client.skills.list(APP))
    assert fake.route_counts()["skills.list"] == 2


# -- X-Aily-BizUserID ---------------------------------------------------------------------

Step = Callable[[AilyClient, dict[str, str], dict[str, Any]], Awaitable[Any]]


async def _all_pages(items: AsyncIterator[Any]) -> list[Any]:
    return await collect(items)


# route -> the call, given the client, ids of existing objects and extra kwargs
CALLS: dict[str, Step] = {
    "sessions.create": lambda c, ids, kw: c.sessions.create(**kw),
    "sessions.get": lambda c, ids, kw: c.sessions.get(ids["session"], **kw),
    "sessions.update": lambda c, ids, kw: c.sessions.update(ids["session"], metadata="{}", **kw),
    "messages.create": lambda c, ids, kw: c.messages.create(ids["session"], "hi", **kw),
    "messages.get": lambda c, ids, kw: c.messages.get(ids["session"], ids["message"], **kw),
    "messages.list": lambda c, ids, kw: _all_pages(c.messages.list(ids["session"], **kw)),
    "runs.create": lambda c, ids, kw: c.runs.create(ids["session2"], app_id=APP, **kw),
    "runs.get": lambda c, ids, kw: c.runs.get(ids["session"], ids["run"], **kw),
    "runs.list": lambda c, ids, kw: _all_pages(c.runs.list(ids["session"], **kw)),
    "runs.cancel": lambda c, ids, kw: c.runs.cancel(ids["session"], ids["run"], **kw),
    "skills.start": lambda c, ids, kw: c.skills.start(APP, SKILL, **kw),
    "skills.get": lambda c, ids, kw: c.skills.get(APP, SKILL, **kw),
    "skills.list": lambda c, ids, kw: _all_pages(c.skills.list(APP, **kw)),
    "sessions.delete": lambda c, ids, kw: c.sessions.delete(ids["session"], **kw),
}


async def _objects(client: AilyClient) -> dict[str, str]:
    session = await client.sessions.create()
    message = await client.messages.create(session.id, "hello")
    handle = await client.runs.create(session.id, app_id=APP)
    other = await client.sessions.create()
    return {"session": session.id, "message": message.id, "run": handle.id, "session2": other.id}


@pytest.mark.parametrize("route", list(CALLS))
async def test_biz_user_id_per_client_and_per_call(route: str) -> None:
    """X-Aily-BizUserID carries the client's value, and a per-call value overrides it, on
    every call."""
    async with (
        FakeAily(run_script=INSTANT) as fake,
        make_client(fake, biz_user_id="client-user") as client,
    ):
        ids = await _objects(client)
        assert {r.headers.get("X-Aily-BizUserID") for r in fake.requests[1:]} == {"client-user"}
        fake.reset_log()
        await CALLS[route](client, ids, {"biz_user_id": "call-user"})
        assert fake.requests
        assert {r.route for r in fake.requests} == {route}
        assert {r.headers.get("X-Aily-BizUserID") for r in fake.requests} == {"call-user"}


async def test_no_biz_user_id_header_by_default(client: AilyClient, fake: FakeAily) -> None:
    """Without a biz user id, no X-Aily-BizUserID header is sent."""
    await client.sessions.create()
    assert all("X-Aily-BizUserID" not in r.headers for r in fake.requests)


# -- error answers of every call ----------------------------------------------------------


@pytest.mark.parametrize("route", list(CALLS))
async def test_every_call_raises_the_error_answer(
    quick: tuple[FakeAily, AilyClient], route: str
) -> None:
    """Every call turns the service's 2700001 answer into AilyInvalidParamsError naming it."""
    fake, client = quick
    ids = await _objects(client)
    fake.inject(route, status=400, code=2700001, body=None)
    with pytest.raises(AilyInvalidParamsError) as info:
        await CALLS[route](client, ids, {})
    assert str(info.value).startswith(f"{route}: param is invalid")
    assert info.value.log_id == fake.requests[-1].log_id
    assert fake.requests[-1].route == route


UNKNOWN = {
    "session": "session_zzzzzz",
    "session2": "session_zzzzzz",
    "message": "message_zzzzzz",
    "run": "run_zzzzzz",
}
NOT_FOUND_ROUTES = [
    "sessions.get",
    "sessions.update",
    "sessions.delete",
    "messages.create",
    "messages.get",
    "messages.list",
    "runs.create",
    "runs.get",
    "runs.list",
    "runs.cancel",
]


@pytest.mark.parametrize("route", NOT_FOUND_ROUTES)
async def test_unknown_ids_raise_not_found(client: AilyClient, fake: FakeAily, route: str) -> None:
    """Calls on a session, message or run that does not exist raise AilyNotFoundError."""
    with pytest.raises(AilyNotFoundError) as info:
        await CALLS[route](client, UNKNOWN, {})
    assert str(info.value).startswith(f"{route}: ")
    assert fake.route_counts()[route] == 1


async def test_unknown_skill_raises_not_found(client: AilyClient) -> None:
    """skills.get of a skill the app does not have raises AilyNotFoundError."""
    with pytest.raises(AilyNotFoundError, match=r"^skills\.get: "):
        await client.skills.get(APP, "skill_missing")


async def test_run_create_on_busy_session(client: AilyClient, fake: FakeAily) -> None:
    """A session holds one active run: a second create is refused with 2700001, one run."""
    session = await client.sessions.create()
    await client.runs.create(session.id, app_id=APP)
    with pytest.raises(AilyInvalidParamsError, match="active run"):
        await client.runs.create(session.id, app_id=APP)
    assert fake.run_count(session.id) == 1
