"""Client-side validation: every documented rule is checked before any request leaves."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from aily_async import AilyClient, AilyValidationError
from aily_async.testing import ROUTES, FakeAily

SID = "session_4b2c9d"
RID = "run_4b2c9d"
MID = "message_4b2c9d"
APP = "spring_449d72db2f__c"
SKILL = "skill_echo"

# The client is typed Any so that the table may pass wrong types on purpose.
Call = Callable[[Any], Any]


async def _invoke(call: Call, client: AilyClient) -> None:
    """Call ``call``; await it, or take one item when it is an async iterator (``.list``)."""
    result = call(client)
    if inspect.isawaitable(result):
        await result
    else:
        async for _ in result:
            break


# (test id, call name, the call, the field the error must name)
CASES: list[tuple[str, str, Call, str]] = [
    # sessions
    ("session-id-dotdot", "sessions.get", lambda c: c.sessions.get("../x"), "session_id"),
    (
        "session-id-bad-alphabet",
        "sessions.get",
        lambda c: c.sessions.get("session_ILO"),
        "session_id",
    ),
    (
        "session-id-too-long",
        "sessions.get",
        lambda c: c.sessions.get("session_" + "a" * 25),
        "session_id",
    ),
    ("session-id-none", "sessions.delete", lambda c: c.sessions.delete(None), "session_id"),
    (
        "session-metadata-not-json",
        "sessions.update",
        lambda c: c.sessions.update(SID, metadata="{not json"),
        "metadata",
    ),
    (
        "session-metadata-wrong-type",
        "sessions.create",
        lambda c: c.sessions.create(metadata=42),
        "metadata",
    ),
    (
        "session-channel-context-not-json",
        "sessions.create",
        lambda c: c.sessions.create(channel_context="nope"),
        "channel_context",
    ),
    (
        "biz-user-id-line-break",
        "sessions.get",
        lambda c: c.sessions.get(SID, biz_user_id="a\r\nX-Evil: 1"),
        "biz_user_id",
    ),
    # messages
    (
        "content-too-long",
        "messages.create",
        lambda c: c.messages.create(SID, "x" * 61441),
        "content",
    ),
    ("content-empty", "messages.create", lambda c: c.messages.create(SID, ""), "content"),
    ("content-none", "messages.create", lambda c: c.messages.create(SID, None), "content"),
    ("content-wrong-type", "messages.create", lambda c: c.messages.create(SID, 42), "content"),
    (
        "content-type-wrong-type",
        "messages.create",
        lambda c: c.messages.create(SID, "hi", content_type=5),
        "content_type",
    ),
    (
        "file-ids-too-many",
        "messages.create",
        lambda c: c.messages.create(SID, "hi", file_ids=[f"file_{n}" for n in range(33)]),
        "file_ids",
    ),
    (
        "file-ids-a-string",
        "messages.create",
        lambda c: c.messages.create(SID, "hi", file_ids="file_1"),
        "file_ids",
    ),
    (
        "idempotent-id-too-long",
        "messages.create",
        lambda c: c.messages.create(SID, "hi", idempotent_id="i" * 65),
        "idempotent_id",
    ),
    (
        "quote-message-id-bad",
        "messages.create",
        lambda c: c.messages.create(SID, "hi", quote_message_id="msg_1"),
        "quote_message_id",
    ),
    (
        "mentions-not-objects",
        "messages.create",
        lambda c: c.messages.create(SID, "hi", mentions=["bob"]),
        "mentions",
    ),
    (
        "mentions-not-a-list",
        "messages.create",
        lambda c: c.messages.create(SID, "hi", mentions=5),
        "mentions",
    ),
    (
        "message-id-dotdot",
        "messages.get",
        lambda c: c.messages.get(SID, "../message_x"),
        "message_id",
    ),
    (
        "list-run-id-bad",
        "messages.list",
        lambda c: c.messages.list(SID, run_id="run_../x"),
        "run_id",
    ),
    (
        "messages-page-size-0",
        "messages.list",
        lambda c: c.messages.list(SID, page_size=0),
        "page_size",
    ),
    (
        "messages-page-size-101",
        "messages.list",
        lambda c: c.messages.list(SID, page_size=101),
        "page_size",
    ),
    (
        "messages-page-size-str",
        "messages.list",
        lambda c: c.messages.list(SID, page_size="10"),
        "page_size",
    ),
    # runs
    (
        "run-app-id-too-long",
        "runs.create",
        lambda c: c.runs.create(SID, app_id="a" * 65),
        "app_id",
    ),
    ("run-app-id-none", "runs.create", lambda c: c.runs.create(SID, app_id=None), "app_id"),
    (
        "run-skill-id-too-long",
        "runs.create",
        lambda c: c.runs.create(SID, app_id=APP, skill_id="s" * 33),
        "skill_id",
    ),
    (
        "skill-input-without-skill-id",
        "runs.create",
        lambda c: c.runs.create(SID, app_id=APP, skill_input={"q": 1}),
        "skill_input",
    ),
    (
        "skill-input-too-long",
        "runs.create",
        lambda c: c.runs.create(SID, app_id=APP, skill_id=SKILL, skill_input={"q": "x" * 250}),
        "skill_input",
    ),
    (
        "skill-input-not-json",
        "runs.create",
        lambda c: c.runs.create(SID, app_id=APP, skill_id=SKILL, skill_input="q=1"),
        "skill_input",
    ),
    (
        "run-metadata-too-long",
        "runs.create",
        lambda c: c.runs.create(SID, app_id=APP, metadata={"k": "x" * 250}),
        "metadata",
    ),
    (
        "run-metadata-not-json",
        "runs.create",
        lambda c: c.runs.create(SID, app_id=APP, metadata="{oops"),
        "metadata",
    ),
    (
        "run-biz-user-id-too-long",
        "runs.create",
        lambda c: c.runs.create(SID, app_id=APP, biz_user_id="u" * 65),
        "biz_user_id",
    ),
    ("run-id-dotdot", "runs.get", lambda c: c.runs.get(SID, "run_/../x"), "run_id"),
    ("cancel-run-id-bad", "runs.cancel", lambda c: c.runs.cancel(SID, "42"), "run_id"),
    (
        "cancel-session-id-path",
        "runs.cancel",
        lambda c: c.runs.cancel("session_x/../y", RID),
        "session_id",
    ),
    ("runs-page-size-101", "runs.list", lambda c: c.runs.list(SID, page_size=101), "page_size"),
    # skills
    ("skill-app-id-dotdot", "skills.start", lambda c: c.skills.start("../x", SKILL), "app_id"),
    (
        "skill-app-id-encoded-dots",
        "skills.get",
        lambda c: c.skills.get("%2e%2e", SKILL),
        "app_id",
    ),
    (
        "skill-app-id-too-long",
        "skills.get",
        lambda c: c.skills.get("a" * 65, SKILL),
        "app_id",
    ),
    (
        "skill-id-path",
        "skills.start",
        lambda c: c.skills.start(APP, "skill/../x"),
        "skill_id",
    ),
    (
        "query-too-long",
        "skills.start",
        lambda c: c.skills.start(APP, SKILL, query="q" * 40961),
        "query",
    ),
    (
        "files-too-many",
        "skills.start",
        lambda c: c.skills.start(APP, SKILL, files=[f"file_{n}" for n in range(33)]),
        "files",
    ),
    (
        "variables-too-long",
        "skills.start",
        lambda c: c.skills.start(APP, SKILL, variables={"v": "x" * 250}),
        "variables",
    ),
    (
        "variables-not-json",
        "skills.start",
        lambda c: c.skills.start(APP, SKILL, variables="v=1"),
        "variables",
    ),
    (
        "input-too-long",
        "skills.start",
        lambda c: c.skills.start(APP, SKILL, input={"k": "x" * 40961}),
        "input",
    ),
    (
        "input-not-serialisable",
        "skills.start",
        lambda c: c.skills.start(APP, SKILL, input={"k": object()}),
        "input",
    ),
    (
        "skill-biz-user-id-too-long",
        "skills.start",
        lambda c: c.skills.start(APP, SKILL, biz_user_id="u" * 256),
        "biz_user_id",
    ),
    ("skills-list-app-id-dotdot", "skills.list", lambda c: c.skills.list("../x"), "app_id"),
    (
        "skills-page-size-0",
        "skills.list",
        lambda c: c.skills.list(APP, page_size=0),
        "page_size",
    ),
    # knowledge, data assets, app stats (no documented rules: types, emptiness, path safety)
    ("ask-empty-question", "knowledge.ask", lambda c: c.knowledge.ask(APP, ""), "question"),
    (
        "ask-ids-not-a-list",
        "knowledge.ask",
        lambda c: c.knowledge.ask(APP, "q", data_asset_ids="asset_1"),
        "data_asset_ids",
    ),
    (
        "asset-create-no-source-type",
        "data_assets.create",
        lambda c: c.data_assets.create(APP, connect_type="direct", source_type=""),
        "source_type",
    ),
    (
        "asset-get-id-slash",
        "data_assets.get",
        lambda c: c.data_assets.get(APP, "a/b"),
        "data_asset_id",
    ),
    (
        "asset-delete-id-dotdot",
        "data_assets.delete",
        lambda c: c.data_assets.delete(APP, ".."),
        "data_asset_id",
    ),
    (
        "asset-list-flag-not-bool",
        "data_assets.list",
        lambda c: c.data_assets.list(APP, with_items="yes"),
        "with_items",
    ),
    (
        "asset-upload-not-a-file",
        "data_assets.upload_file",
        lambda c: c.data_assets.upload_file(APP, 42),
        "file",
    ),
    (
        "asset-tags-page-size-0",
        "data_asset_tags.list",
        lambda c: c.data_asset_tags.list(APP, page_size=0),
        "page_size",
    ),
    (
        "app-stats-empty-start",
        "app_stats.list",
        lambda c: c.app_stats.list(start_at="", end_at="1"),
        "start_at",
    ),
    # agents: ids have no documented format, only path safety; types and presence
    (
        "agent-id-slash",
        "agents.sessions.create",
        lambda c: c.agents.sessions.create("a/b"),
        "agent_id",
    ),
    (
        "agent-session-space",
        "agents.sessions.get",
        lambda c: c.agents.sessions.get("a", "s 1"),
        "session_id",
    ),
    (
        "agent-sessions-page-0",
        "agents.sessions.list",
        lambda c: c.agents.sessions.list("a", page_size=0),
        "page_size",
    ),
    (
        "agent-session-dotdot",
        "agents.sessions.delete",
        lambda c: c.agents.sessions.delete("a", ".."),
        "session_id",
    ),
    (
        "agent-chat-empty-text",
        "agents.chats.create",
        lambda c: c.agents.chats.create("a", ""),
        "text",
    ),
    (
        "agent-chat-id-newline",
        "agents.chats.get",
        lambda c: c.agents.chats.get("a", "c\n1"),
        "chat_id",
    ),
    (
        "agent-artifact-not-str",
        "agents.artifacts.get",
        lambda c: c.agents.artifacts.get("a", 7),
        "artifact_id",
    ),
    (
        "agent-attachment-nothing",
        "agents.attachments.create",
        lambda c: c.agents.attachments.create("a"),
        "file",
    ),
    (
        "agent-visibility-empty",
        "agents.check_visibility",
        lambda c: c.agents.check_visibility("a", ""),
        "channel_type",
    ),
]


@pytest.mark.parametrize(
    ("call_name", "call", "field"),
    [pytest.param(name, call, field, id=case_id) for case_id, name, call, field in CASES],
)
async def test_invalid_input_is_rejected_before_sending(
    client: AilyClient, fake: FakeAily, call_name: str, call: Call, field: str
) -> None:
    """An argument breaking a documented rule raises a ValueError naming the call and the
    field, and nothing reaches the server (not even a token fetch)."""
    with pytest.raises(AilyValidationError) as info:
        await _invoke(call, client)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.field.split("[")[0] == field
    assert str(error).startswith(f"{call_name}: {field}")
    assert error.rule
    assert error.rule in str(error)
    assert fake.requests == []
    assert fake.token_fetches == 0


def test_table_is_broad() -> None:
    """The table covers at least 25 cases and every call that takes user input."""
    assert len(CASES) >= 25
    covered = {name for _, name, _, _ in CASES}
    assert covered >= set(ROUTES)


@pytest.mark.parametrize("value", ["u" * 65, "a\nb", 42])
def test_client_biz_user_id_is_validated(value: object) -> None:
    """A client-wide biz_user_id that breaks the header rules is refused at construction."""
    with pytest.raises(AilyValidationError) as info:
        AilyClient("cli_x", "secret", biz_user_id=value)  # type: ignore[arg-type]
    assert info.value.field == "biz_user_id"


async def test_file_ids_at_the_limit_are_sent(client: AilyClient, fake: FakeAily) -> None:
    """Exactly 32 file ids and a 61440-character content are within the rules and are sent."""
    session = await client.sessions.create()
    files = [f"file_{n}" for n in range(32)]
    message = await client.messages.create(session.id, "x" * 61440, file_ids=files)
    assert len(message.files) == 32
    sent = [r for r in fake.requests if r.route == "messages.create"]
    assert sent[0].json["file_ids"] == files


async def test_json_fields_at_the_limit_are_sent(client: AilyClient, fake: FakeAily) -> None:
    """A 255-character skill_input/metadata/variables is accepted (the limit is inclusive)."""
    at_limit = '{"k":"' + "x" * 247 + '"}'
    assert len(at_limit) == 255
    session = await client.sessions.create()
    handle = await client.runs.create(
        session.id, app_id=APP, skill_id=SKILL, skill_input=at_limit, metadata=at_limit
    )
    assert handle.run.metadata == at_limit
    result = await client.skills.start(APP, SKILL, variables=at_limit)
    assert result.json()["variables"] == {"k": "x" * 247}
