"""Typing-only checks of the public API, run by ``mypy --strict tests/typing_api.py``.

Nothing here runs (pytest does not collect it). Each function uses the public surface the way
users' code does and pins the types it must see; a changed signature or return type makes mypy
fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Any

import aiohttp
from typing_extensions import assert_type

from aily_async import (
    AgentArtifact,
    AgentChat,
    AgentChatEvent,
    AgentChatHandle,
    AgentChatStream,
    AgentSession,
    AilyAPIError,
    AilyClient,
    AilyConnectionError,
    AilyError,
    AilyRateLimitError,
    AilyValidationError,
    AppStat,
    CallEndEvent,
    CallStartEvent,
    DataAsset,
    DataAssetFile,
    DataAssetTag,
    EventHooks,
    KnowledgeAnswer,
    KnowledgeFaq,
    KnowledgeFile,
    KnowledgeImportSetting,
    Limits,
    Message,
    Millis,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
    RetryPolicy,
    Run,
    RunHandle,
    RunStatus,
    Session,
    Skill,
    SkillResult,
    otel,
)


def construct() -> list[AilyClient]:
    """Every documented way to build a client."""
    policy = RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=2.0, max_reset_wait=30.0)
    assert_type(RetryPolicy.no_wait(), RetryPolicy)
    assert_type(RetryPolicy.no_wait(2).max_attempts, int)

    def on_event(event: RequestEvent | ResponseEvent | RetryEvent) -> None:
        print(event.call, event.attempt)

    async def on_response(event: RequestEvent | ResponseEvent | RetryEvent) -> None:
        if isinstance(event, ResponseEvent):
            assert_type(event.http_status, int | None)
            assert_type(event.log_id, str | None)
            assert_type(event.elapsed, float)

    def on_call(event: CallStartEvent | CallEndEvent) -> None:
        if isinstance(event, CallEndEvent):
            assert_type(event.error, BaseException | None)

    hooks: EventHooks = {
        "call_start": [on_call],
        "request": [on_event],
        "response": [on_response],
        "retry": [on_event],
        "call_end": [on_call],
    }
    return [
        AilyClient(),
        AilyClient("cli_x", "secret"),
        AilyClient(app_id="cli_x", app_secret="secret", base_url="https://open.larksuite.com"),
        AilyClient(tenant_access_token="t-x"),
        AilyClient(user_access_token="u-x"),
        AilyClient(
            "cli_x",
            "secret",
            timeout=10.0,
            connect_timeout=2.0,
            max_connections=20,
            limiter=None,
            retry=policy,
            poll_interval=0.5,
            biz_user_id="user-1",
            event_hooks=hooks,
        ),
        AilyClient("cli_x", "secret", trust_env=False, proxy="http://proxy.internal:3128"),
        AilyClient("cli_x", "secret", session=aiohttp.ClientSession()),
        AilyClient("cli_x", "secret", limiter=Limits.scaled(0.05)),
    ]


def hooks_after_construction(client: AilyClient) -> None:
    """``event_hooks`` reads as a dict of lists and takes a mapping back."""
    hooks = client.event_hooks
    assert_type(hooks, dict[str, list[Callable[[Any], Awaitable[None] | None]]])
    client.event_hooks = {**hooks, "retry": [print]}
    assert_type(otel.instrument(client), otel.Instrumentation)
    otel.uninstrument(client)


async def lifecycle() -> None:
    """``async with`` yields the client; close() is awaitable; closed is a bool."""
    async with AilyClient("cli_x", "secret") as client:
        assert_type(client, AilyClient)
    await client.close()
    assert_type(client.closed, bool)


async def sessions(client: AilyClient) -> None:
    """sessions.create/get/update/delete."""
    session = await client.sessions.create()
    assert_type(session, Session)
    assert_type(await client.sessions.create(metadata={"a": 1}, channel_context="{}"), Session)
    assert_type(await client.sessions.create({"a": 1}, {"c": 2}, biz_user_id="u"), Session)
    assert_type(await client.sessions.get(session.id), Session)
    assert_type(await client.sessions.get(session.id, biz_user_id="u"), Session)
    assert_type(await client.sessions.update(session.id, metadata="{}"), Session)
    assert_type(await client.sessions.update(session.id, channel_context={"x": 1}), Session)
    assert_type(await client.sessions.delete(session.id), None)
    assert_type(session.id, str)
    assert_type(session.created_at, Millis | None)
    assert_type(session.metadata, str | None)
    assert_type(session.metadata_json(), Any)


async def messages(client: AilyClient, session_id: str) -> None:
    """messages.create/get/list."""
    message = await client.messages.create(session_id, "hi")
    assert_type(message, Message)
    assert_type(
        await client.messages.create(
            session_id,
            "hi",
            content_type="TEXT",
            idempotent_id="req-1",
            file_ids=["file_1"],
            quote_message_id="message_1",
            mentions=[{"entity_id": "ou_1"}],
            biz_user_id="u",
        ),
        Message,
    )
    assert_type(await client.messages.get(session_id, message.id), Message)
    listing = client.messages.list(
        session_id, run_id="run_1", with_partial_message=True, page_size=50
    )
    assert_type(listing, AsyncIterator[Message])
    async for item in client.messages.list(session_id):
        assert_type(item, Message)
        assert_type(item.text, str)
        assert_type(item.is_assistant, bool)
        assert_type(item.created_at, Millis | None)


async def runs(client: AilyClient, session_id: str) -> None:
    """runs.create (a RunHandle), get, list, cancel; the handle's surface."""
    handle = await client.runs.create(session_id, app_id="spring_x__c")
    assert_type(handle, RunHandle)
    assert_type(
        await client.runs.create(
            session_id,
            app_id="spring_x__c",
            skill_id="skill_x",
            skill_input={"q": 1},
            metadata="{}",
            biz_user_id="u",
        ),
        RunHandle,
    )
    assert_type(handle.run, Run)
    assert_type(handle.id, str)
    assert_type(handle.session_id, str)
    assert_type(await handle.refresh(), Run)
    assert_type(await handle, Run)
    assert_type(await client.runs.get(session_id, handle.id), Run)
    assert_type(await client.runs.cancel(session_id, handle.id), Run)
    assert_type(client.runs.list(session_id, page_size=10), AsyncIterator[Run])
    async for run in client.runs.list(session_id):
        assert_type(run.status, RunStatus)
        assert_type(run.status.is_terminal, bool)
        assert_type(run.status.is_active, bool)
        assert_type(run.ended_at, Millis | None)
        assert_type(run.duration, float | None)


async def skills(client: AilyClient) -> None:
    """skills.start/get/list."""
    result = await client.skills.start(
        "spring_x__c",
        "skill_x",
        query="q",
        files=["file_1"],
        variables={"v": 1},
        input="{}",
        biz_user_id="u",
    )
    assert_type(result, SkillResult)
    assert_type(result.output, str | None)
    assert_type(result.status, str | None)
    assert_type(result.json(), Any)
    assert_type(await client.skills.get("spring_x__c", "skill_x"), Skill)
    assert_type(client.skills.list("spring_x__c", page_size=5), AsyncIterator[Skill])


def errors(exc: Exception) -> None:
    """The error attributes users read."""
    if isinstance(exc, AilyAPIError):
        assert_type(exc.code, int | None)
        assert_type(exc.msg, str)
        assert_type(exc.http_status, int)
        assert_type(exc.log_id, str | None)
    if isinstance(exc, AilyRateLimitError):
        assert_type(exc.retry_after, float | None)
        assert_type(exc.limit, int | None)
    if isinstance(exc, AilyValidationError):
        assert_type(exc.field, str)
        assert_type(exc.rule, str)
    if isinstance(exc, AilyConnectionError):
        assert_type(exc.sent, bool)
    if isinstance(exc, AilyError):
        assert_type(exc.call, str)


def millis(stamp: Millis) -> None:
    """Millis is an int with a datetime view."""
    total: int = stamp + 1
    print(total, stamp.datetime.isoformat())


async def knowledge_and_assets(client: AilyClient, file: IO[bytes]) -> None:
    """Knowledge asks, data assets (uploads from a path, bytes or a file), tags, app stats."""
    app = "spring_x__c"
    answer = await client.knowledge.ask(app, "q", data_asset_ids=["a"], data_asset_tag_ids=("t",))
    assert_type(answer, KnowledgeAnswer)
    assert_type(answer.text, str)
    assert_type(answer.has_answer, bool | None)
    assert_type(answer.faq, KnowledgeFaq | None)
    assert_type(answer.process.chunks, tuple[str, ...])
    assert_type(await client.data_assets.upload_file(app, file), DataAssetFile)
    info = await client.data_assets.upload_file(app, b"x", filename="a.txt", content_type="t/p")
    assert_type(info.token, str)
    assert_type(await client.data_assets.upload_file(app, "f.pdf"), DataAssetFile)
    setting = KnowledgeImportSetting(file=KnowledgeFile(token=info.token))
    asset = await client.data_assets.create(
        app, connect_type="c", source_type="s", import_knowledge_setting=setting
    )
    assert_type(asset, DataAsset)
    assert_type(asset.connect_status, str | None)
    assert_type(asset.created_time, int | None)
    assert_type(asset.label, dict[str, str])
    got = await client.data_assets.get(app, asset.data_asset_id, with_connect_status=True)
    assert_type(got, DataAsset)
    assert_type(client.data_assets.list(app, keyword="k"), AsyncIterator[DataAsset])
    assert_type(await client.data_assets.delete(app, asset.data_asset_id), DataAsset)
    assert_type(client.data_asset_tags.list(app), AsyncIterator[DataAssetTag])
    stats = client.app_stats.list(start_at="1", end_at="2", filter_type="all")
    assert_type(stats, AsyncIterator[AppStat])
    async for stat in stats:
        assert_type(stat.avg_daily_run_num, float | None)


async def agents(client: AilyClient, file: IO[bytes]) -> None:
    """Agent sessions, chats (awaited, watched, streamed), artifacts, attachments."""
    agent = "agent_x"
    session = await client.agents.sessions.create(agent, name="n")
    assert_type(session, AgentSession)
    assert_type(session.created_at, float | None)
    assert_type(await client.agents.sessions.get(agent, session.id), AgentSession)
    assert_type(client.agents.sessions.list(agent), AsyncIterator[AgentSession])
    assert_type(await client.agents.sessions.delete(agent, session.id), None)
    attachment = await client.agents.attachments.create(agent, file=file, type="t")
    assert_type(attachment, str)
    handle = await client.agents.chats.create(
        agent, "hi", session_id=session.id, attachment_ids=[attachment], max_wait=60.0
    )
    assert_type(handle, AgentChatHandle)
    chat = await handle
    assert_type(chat, AgentChat)
    assert_type(await handle.wait(5.0), AgentChat)
    assert_type(chat.status, str | None)
    assert_type(chat.finish_reason, str | None)
    assert_type(chat.text, str)
    assert_type(chat.session_id, str | None)
    assert_type(handle.watch(), AsyncIterator[AgentChat])
    assert_type(handle.stream(), AsyncIterator[AgentChatEvent])
    assert_type(await client.agents.chats.get(agent, chat.id), AgentChat)
    stream = client.agents.chats.stream(agent, "hi", read_timeout=10.0)
    assert_type(stream, AgentChatStream)
    async with stream:
        async for event in stream:
            assert_type(event, AgentChatEvent)
            assert_type(event.text, str)
    assert_type(stream.handle(), AgentChatHandle)
    artifact = await client.agents.artifacts.get(agent, chat.artifact_ids[0])
    assert_type(artifact, AgentArtifact)
    assert_type(await client.agents.check_visibility(agent, "feishu"), bool)
