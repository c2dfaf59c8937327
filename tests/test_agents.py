"""``client.agents`` against FakeAily over HTTP: every call, its errors, paging, the SDK's
oddities, validation before sending, and the official SDK (lark-oapi) driving the fake."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _vloop import VirtualTimeLoop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aily_async import (
    AgentSession,
    AilyClient,
    AilyError,
    AilyInvalidParamsError,
    AilyNotFoundError,
    AilyResponseError,
    AilyServerError,
    AilyValidationError,
    Answer,
    RetryPolicy,
    TokenBucket,
)
from aily_async.testing import ChatPlan, FakeAily

AGENT = "agent_7a1c"
API = "/open-apis/aily/v1"


def agent_requests(fake: FakeAily) -> list[Any]:
    """The requests of the agent routes the fake received."""
    return [r for r in fake.requests if r.route.startswith("agents.")]


# -- sessions -----------------------------------------------------------------------------------


async def test_session_create_get_delete(fake: FakeAily, client: AilyClient) -> None:
    """A session is created (named), read back with its timestamps as numbers whatever the
    call sent (strings here), and deleted; reading it afterwards is a 404 with the log id."""
    session = await client.agents.sessions.create(AGENT, name="support")
    assert isinstance(session, AgentSession)
    assert session.id == session.session_id
    assert session.name == "support"
    assert isinstance(session.created_at, float)
    created = next(r for r in fake.requests if r.route == "agents.sessions.create")
    assert created.json == {"name": "support"}
    assert created.path == f"{API}/agents/{AGENT}/sessions"
    again = await client.agents.sessions.get(AGENT, session.id)
    assert again.created_at == session.created_at
    assert again.turns == ()
    await client.agents.sessions.delete(AGENT, session.id)
    with pytest.raises(AilyNotFoundError, match=r"agents\.sessions\.get: .*log_id") as caught:
        await client.agents.sessions.get(AGENT, session.id)
    assert caught.value.log_id
    with pytest.raises(AilyNotFoundError):
        await client.agents.sessions.delete(AGENT, session.id)


async def test_turns_arrive_as_one_object_and_are_kept_as_a_tuple(
    fake: FakeAily, client: AilyClient
) -> None:
    """``turns`` (one object, as the SDK declares it) becomes a one-item tuple; the session's
    ``last_chat_at`` (a string in "get") is a number."""
    session = await client.agents.sessions.create(AGENT)
    handle = await client.agents.chats.create(AGENT, "hi", session_id=session.id)
    await handle
    read = await client.agents.sessions.get(AGENT, session.id)
    assert len(read.turns) == 1
    assert read.turns[0].agent_chat_id == handle.id
    assert read.turns[0].status == "COMPLETED"
    assert isinstance(read.last_chat_at, float)


@pytest.mark.parametrize(
    ("turns", "expected"),
    [
        ([{"agent_chat_id": "c1", "status": "A"}, {"agent_chat_id": "c2"}], ["c1", "c2"]),
        (None, []),
        ({}, []),
    ],
)
async def test_turns_as_a_list_or_null_are_accepted(
    fake: FakeAily, client: AilyClient, turns: Any, expected: list[str]
) -> None:
    """A list of turns is kept whole and ``null`` (or ``{}``) is no turn: the client does not
    depend on the SDK's single-object declaration."""
    body = {"code": 0, "msg": "ok", "data": {"session_id": "s1", "turns": turns}}
    fake.inject("agents.sessions.get", status=200, body=body)
    read = await client.agents.sessions.get(AGENT, "s1")
    assert [t.agent_chat_id for t in read.turns] == expected


async def test_list_walks_every_page_by_next_page_token(
    fake: FakeAily, client: AilyClient
) -> None:
    """``list`` follows ``next_page_token`` (sent back as ``page_token``) over every page, and
    reads list entries whose timestamps are numbers."""
    made = [(await client.agents.sessions.create(AGENT, name=f"s{i}")).id for i in range(5)]
    await client.agents.sessions.create("another_agent")
    listed = [s async for s in client.agents.sessions.list(AGENT, page_size=2)]
    assert [s.id for s in listed] == made
    assert all(isinstance(s.created_at, float) for s in listed)
    pages = [r for r in fake.requests if r.route == "agents.sessions.list"]
    assert len(pages) == 3
    assert "page_token" not in pages[0].query
    assert all(r.query["page_token"] for r in pages[1:])
    assert all(r.query["page_size"] == "2" for r in pages)


async def test_list_also_reads_a_plain_page_token(fake: FakeAily, client: AilyClient) -> None:
    """An answer that names its token ``page_token`` (as every other list does) is followed
    too, and a repeated token is refused rather than looped on."""
    first = {"sessions": [{"session_id": "a"}], "has_more": True, "page_token": "p2"}
    again = {"sessions": [{"session_id": "b"}], "has_more": True, "next_page_token": "p2"}
    for data in (first, again):
        fake.inject("agents.sessions.list", status=200, body={"code": 0, "data": data})
    with pytest.raises(AilyResponseError, match="repeated a page token"):
        [s.id async for s in client.agents.sessions.list(AGENT)]


# -- chats, artifacts -----------------------------------------------------------------------------


async def test_chat_create_and_get() -> None:
    """A chat sends the text as one text part (and the session), its handle awaits the reply;
    ``chats.get`` fills in the ids the answer leaves out."""
    plan = ChatPlan(duration=0.1, answer="Hello there", artifacts=(("chart.png", "image"),))
    async with (
        FakeAily(chat_script=plan) as own,
        AilyClient(
            "cli_test", "secret", base_url=own.url, limiter=None, poll_interval=0.02
        ) as aily,
    ):
        session = await aily.agents.sessions.create(AGENT)
        handle = await aily.agents.chats.create(AGENT, "hi", session_id=session.id)
        sent = next(r for r in own.requests if r.route == "agents.chats.create")
        assert sent.json == {
            "user_message": {"content": [{"type": "text", "text": "hi"}]},
            "session_id": session.id,
        }
        chat = await handle
        assert chat.text == "Hello there"
        assert chat.finish_reason == "stop"
        assert chat.session_id == session.id
        assert chat.id == handle.id
        assert len(chat.artifact_ids) == 1
        artifact = await aily.agents.artifacts.get(AGENT, chat.artifact_ids[0])
        assert artifact.name == "chart.png"
        assert artifact.url
        assert artifact.id == chat.artifact_ids[0]
        plain = await aily.agents.chats.get(AGENT, handle.id)
        assert plain.session_id is None  # the answer does not say
        assert plain.text == chat.text
        assert (await aily.agents.chats.get(AGENT, handle.id, session_id="s")).session_id == "s"
        with pytest.raises(AilyNotFoundError):
            await aily.agents.artifacts.get(AGENT, "artifact_missing")
        with pytest.raises(AilyNotFoundError):
            await aily.agents.chats.get(AGENT, "chat_missing")


async def test_a_chat_without_session_gets_the_session_the_service_names(
    fake: FakeAily, client: AilyClient
) -> None:
    """Without ``session_id`` the answer's session is the handle's."""
    handle = await client.agents.chats.create(AGENT, "hello")
    assert handle.session_id in fake.agents.session_ids(AGENT)
    assert (await handle).session_id == handle.session_id


async def test_a_create_answer_without_a_chat_id_is_a_response_error(
    fake: FakeAily, client: AilyClient
) -> None:
    """A create answer that names no chat cannot be followed: AilyResponseError."""
    fake.inject("agents.chats.create", status=200, body={"code": 0, "data": {"session_id": "s"}})
    with pytest.raises(AilyResponseError, match="agent_chat_id"):
        await client.agents.chats.create(AGENT, "hello")


async def test_chat_with_attachments(fake: FakeAily, client: AilyClient) -> None:
    """Attachment ids go in ``user_message.agent_attachment_ids``; an unknown one is the
    fake's 404."""
    attachment = await client.agents.attachments.create(AGENT, file=b"%PDF", filename="a.pdf")
    handle = await client.agents.chats.create(AGENT, "read this", attachment_ids=[attachment])
    sent = [r for r in fake.requests if r.route == "agents.chats.create"][-1]
    assert sent.json["user_message"]["agent_attachment_ids"] == [attachment]
    assert (await handle).text == "Echo: read this"
    with pytest.raises(AilyNotFoundError, match="attachment"):
        await client.agents.chats.create(AGENT, "x", attachment_ids=["attachment_unknown"])


# -- attachments ----------------------------------------------------------------------------------


async def test_attachments_from_bytes_path_file_object_and_doc_url(
    fake: FakeAily, client: AilyClient, tmp_path: Path
) -> None:
    """A file goes as the multipart part ``file`` with a filename and a guessed content type
    (from bytes, a path or a file object); ``type`` and ``doc_url`` go as text parts; a
    document link alone is a form without a file part."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"from a path")
    ids = [
        await client.agents.attachments.create(AGENT, file=b"raw", filename="a.json", type="x"),
        await client.agents.attachments.create(AGENT, file=path),
        await client.agents.attachments.create(AGENT, file=io.BytesIO(b"buffer")),
        await client.agents.attachments.create(AGENT, doc_url="https://example.com/d", type="doc"),
    ]
    got = {a.id: a for a in fake.agents.attachments}
    assert list(got) == ids
    first, second, third, fourth = (got[i] for i in ids)
    assert (first.data, first.filename, first.content_type, first.type) == (
        b"raw",
        "a.json",
        "application/json",
        "x",
    )
    assert (second.data, second.filename, second.content_type) == (
        b"from a path",
        "notes.txt",
        "text/plain",
    )
    assert (third.data, third.filename) == (b"buffer", "file")
    assert (fourth.data, fourth.doc_url, fourth.type) == (None, "https://example.com/d", "doc")
    sent = [r for r in fake.requests if r.route == "agents.attachments.create"]
    assert all(r.headers["Content-Type"].startswith("multipart/form-data") for r in sent)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "file or doc_url must be given"),
        ({"doc_url": "u", "filename": "x.txt"}, "filename only goes with a file"),
        ({"doc_url": 3}, "doc_url must be a string"),
        ({"doc_url": "u", "type": ""}, "type must not be empty"),
        ({"file": 12}, "file must be a path, bytes or a binary file object"),
    ],
)
async def test_attachment_arguments_are_checked_before_sending(
    fake: FakeAily, client: AilyClient, kwargs: dict[str, Any], match: str
) -> None:
    """Missing or mistyped attachment arguments raise AilyValidationError; nothing is sent."""
    with pytest.raises(AilyValidationError, match=match):
        await client.agents.attachments.create(AGENT, **kwargs)
    assert agent_requests(fake) == []


# -- visibility -----------------------------------------------------------------------------------


async def test_visibility_takes_a_user_token(fake: FakeAily, client: AilyClient) -> None:
    """With a user token the check answers the agent's visibility; the fake refuses a tenant
    token (the call is user-token only)."""
    with pytest.raises(AilyInvalidParamsError, match="user access token"):
        await client.agents.check_visibility(AGENT, "feishu")
    async with AilyClient(
        user_access_token=fake.issue_user_token(), base_url=fake.url, limiter=None
    ) as user:
        assert await user.agents.check_visibility(AGENT, "feishu") is True
        fake.agents.invisible.add(AGENT)
        assert await user.agents.check_visibility(AGENT, "feishu") is False
        sent = [r for r in fake.requests if r.route == "agents.check_visibility"][-1]
        assert sent.json == {"channel_type": "feishu"}
        fake.inject(
            "agents.check_visibility", status=200, body={"code": 0, "data": {"visibility": "no"}}
        )
        with pytest.raises(AilyResponseError, match="visibility"):
            await user.agents.check_visibility(AGENT, "feishu")


# -- validation, encoding ------------------------------------------------------------------------


def _calls(bad: Any) -> list[Any]:
    """Each agent call with ``bad`` as one of its path ids."""
    return [
        lambda c: c.agents.sessions.create(bad),
        lambda c: c.agents.sessions.get(AGENT, bad),
        lambda c: c.agents.sessions.get(bad, "s"),
        lambda c: c.agents.sessions.list(bad).__anext__(),
        lambda c: c.agents.sessions.delete(AGENT, bad),
        lambda c: c.agents.chats.create(bad, "hi"),
        lambda c: c.agents.chats.get(AGENT, bad),
        lambda c: c.agents.artifacts.get(AGENT, bad),
        lambda c: c.agents.attachments.create(bad, doc_url="u"),
        lambda c: c.agents.check_visibility(bad, "feishu"),
    ]


@pytest.mark.parametrize(
    "bad", ["", "a/b", "a b", "a\tb", "a\nb", "a\x00b", "a\u200bb", ".", "..", 7, None, b"x"]
)
async def test_path_ids_are_checked_before_sending(
    fake: FakeAily, client: AilyClient, bad: Any
) -> None:
    """An id that is not a non-empty string, or holds ``/``, whitespace or a control character,
    or is a dot segment, raises AilyValidationError in every call; nothing is sent."""
    for call in _calls(bad):
        with pytest.raises(AilyValidationError):
            await call(client)
    with pytest.raises(AilyValidationError):
        client.agents.chats.stream(bad, "hi")
    assert agent_requests(fake) == []


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: c.agents.chats.create(AGENT, ""), "text must not be empty"),
        (lambda c: c.agents.chats.create(AGENT, 3), "text must be a string"),
        (lambda c: c.agents.chats.create(AGENT, "x", session_id=""), "session_id must not"),
        (lambda c: c.agents.chats.create(AGENT, "x", attachment_ids="a"), "list of strings"),
        (lambda c: c.agents.chats.create(AGENT, "x", attachment_ids=[""]), r"\[0\] must not"),
        (lambda c: c.agents.chats.create(AGENT, "x", max_wait=0), "max_wait must be"),
        (lambda c: c.agents.sessions.create(AGENT, name=5), "name must be a string"),
        (lambda c: c.agents.sessions.list(AGENT, page_size=0).__anext__(), "page_size"),
        (lambda c: c.agents.check_visibility(AGENT, ""), "channel_type must not be empty"),
    ],
)
async def test_arguments_are_checked_before_sending(
    fake: FakeAily, client: AilyClient, call: Any, match: str
) -> None:
    """Mistyped or missing arguments raise AilyValidationError naming the field; nothing is
    sent."""
    with pytest.raises(AilyValidationError, match=match):
        await call(client)
    assert agent_requests(fake) == []


async def test_odd_ids_are_percent_encoded(fake: FakeAily, client: AilyClient) -> None:
    """Characters that mean something in a URL (``?``, ``#``, ``%``) and non-ASCII letters are
    percent-encoded: the id reaches the service as one path segment, unchanged."""
    agent = "agënt?x=1#frag%2F"
    session = await client.agents.sessions.create(agent)
    assert await client.agents.sessions.get(agent, session.id) == session
    sent = agent_requests(fake)[0]
    assert sent.path == f"{API}/agents/{agent}/sessions"
    assert sent.query == {}
    assert fake.agents.session_ids(agent) == [session.id]


# -- failures, quotas ------------------------------------------------------------------------------


async def test_reads_are_retried_and_creates_are_not(fake: FakeAily, client: AilyClient) -> None:
    """A 5xx on a read is retried; a 5xx on a chat create is not (it may have landed), and
    the error names the call; a 429 on a create is waited out and sent again (it did not
    land), creating one chat."""
    session = await client.agents.sessions.create(AGENT)
    fake.inject("agents.sessions.get", status=503, times=2)
    assert (await client.agents.sessions.get(AGENT, session.id)).id == session.id
    fake.inject("agents.chats.create", status=500)
    with pytest.raises(AilyServerError, match=r"agents\.chats\.create"):
        await client.agents.chats.create(AGENT, "hello")
    fake.inject("agents.chats.create", status=429, headers={"x-ogw-ratelimit-reset": "1"})
    handle = await client.agents.chats.create(AGENT, "again")
    statuses = [r.status for r in fake.requests if r.route == "agents.chats.create"]
    assert statuses == [500, 429, 200]
    assert fake.agents.created_chats == 1
    assert (await handle).text == "Echo: again"


async def test_agent_calls_get_the_default_quota() -> None:
    """Undocumented quotas: each agent call gets the default bucket of unknown calls
    (1000 per minute)."""
    client = AilyClient("cli_test", "secret")
    for call in ("agents.chats.create", "agents.chats.get", "agents.sessions.list"):
        limiter = client.limiter_for(call)
        assert isinstance(limiter, TokenBucket)
        assert (limiter.rate, limiter.per) == (1000, 60.0)
    await client.close()


async def test_rate_limited_fake_answers_429_and_the_client_rides_it() -> None:
    """With the fake's quotas on, agent routes get the default windows; a burst past them is
    answered 429 and the client waits and succeeds."""
    async with (
        FakeAily(rate_limits={"default": [(3, 1.0)]}) as fake,
        AilyClient(
            "cli_test",
            "secret",
            base_url=fake.url,
            limiter=None,
            retry=RetryPolicy(base_delay=0, max_delay=0),
        ) as aily,
    ):
        sessions = await asyncio.gather(*(aily.agents.sessions.create(AGENT) for _ in range(6)))
        assert len({s.id for s in sessions}) == 6
        assert fake.rate_limited["agents.sessions.create"] >= 1


# -- the official SDK ----------------------------------------------------------------------------


def _lark(url: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lark_oapi as lark
    # The SDK caches tenant tokens per app id for the process: a fresh id per fake.
    return (
        lark.Client.builder()
        .app_id(f"cli_sdk_{uuid.uuid4().hex[:8]}")
        .app_secret("sdk-secret")
        .domain(url)
        .enable_set_token(True)  # lets a call carry a user token (the visibility check)
        .log_level(lark.LogLevel.ERROR)
        .build()
    )


async def test_the_official_sdk_drives_every_agent_call(tmp_path: Path) -> None:
    """lark-oapi's blocking client calls every agent endpoint of the fake and decodes every
    answer into its own models (timestamps, ``turns`` as one object, ``next_page_token``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lark_oapi.api.aily.v1 import (
            AgentUserMessage,
            AgentUserMessageContent,
            CheckAgentAgentVisibilityRequest,
            CheckAgentAgentVisibilityRequestBody,
            CreateAgentAgentAttachmentRequest,
            CreateAgentAgentAttachmentRequestBody,
            CreateAgentAgentChatRequest,
            CreateAgentAgentChatRequestBody,
            CreateAgentAgentChatSessionRequest,
            CreateAgentAgentChatSessionRequestBody,
            DeleteAgentAgentChatSessionRequest,
            GetAgentAgentArtifactRequest,
            GetAgentAgentChatRequest,
            GetAgentAgentChatSessionRequest,
            ListAgentAgentChatSessionRequest,
        )
        from lark_oapi.core.model import RequestOption

    plan = ChatPlan(duration=0.05, queued=0.0, artifacts=(("out.csv", "file"),))
    async with FakeAily(chat_script=plan) as fake:
        sdk = _lark(fake.url)
        v1 = sdk.aily.v1

        async def call(resource: Any, method: str, request: Any, option: Any = None) -> Any:
            args = (request,) if option is None else (request, option)
            response = await asyncio.to_thread(getattr(resource, method), *args)
            assert response.success(), (method, response.code, response.msg)
            return response.data

        sessions = v1.agent_agent_chat_session
        made = await call(
            sessions,
            "create",
            CreateAgentAgentChatSessionRequest.builder()
            .agent_id(AGENT)
            .request_body(CreateAgentAgentChatSessionRequestBody.builder().name("sdk").build())
            .build(),
        )
        assert made.session_id
        assert made.name == "sdk"
        assert made.created_at
        for _ in range(2):
            await call(
                sessions,
                "create",
                CreateAgentAgentChatSessionRequest.builder()
                .agent_id(AGENT)
                .request_body(CreateAgentAgentChatSessionRequestBody.builder().build())
                .build(),
            )
        chat = await call(
            v1.agent_agent_chat,
            "create",
            CreateAgentAgentChatRequest.builder()
            .agent_id(AGENT)
            .request_body(
                CreateAgentAgentChatRequestBody.builder()
                .session_id(made.session_id)
                .user_message(
                    AgentUserMessage.builder()
                    .content([AgentUserMessageContent.builder().type("text").text("hi").build()])
                    .build()
                )
                .build()
            )
            .build(),
        )
        assert chat.agent_chat_id
        assert chat.session_id == made.session_id
        await asyncio.sleep(0.2)
        got = await call(
            v1.agent_agent_chat,
            "get",
            GetAgentAgentChatRequest.builder()
            .agent_id(AGENT)
            .agent_chat_id(chat.agent_chat_id)
            .build(),
        )
        assert got.status == "COMPLETED"
        assert got.finish_reason == "stop"
        assert [part.type for part in got.content] == ["text", "artifact"]
        assert got.content[0].text == "Echo: hi"
        artifact = await call(
            v1.agent_agent_artifact,
            "get",
            GetAgentAgentArtifactRequest.builder()
            .agent_id(AGENT)
            .agent_artifact_id(got.content[1].agent_artifact_id)
            .build(),
        )
        assert artifact.agent_artifact.name == "out.csv"
        session = await call(
            sessions,
            "get",
            GetAgentAgentChatSessionRequest.builder()
            .agent_id(AGENT)
            .agent_chat_session_id(made.session_id)
            .build(),
        )
        assert session.turns.agent_chat_id == chat.agent_chat_id  # one object
        assert session.last_chat_at
        listed, token = [], None
        while True:
            builder = ListAgentAgentChatSessionRequest.builder().agent_id(AGENT).page_size(2)
            if token:
                builder = builder.page_token(token)
            page = await call(sessions, "list", builder.build())
            listed += [s.session_id for s in page.sessions]
            assert all(isinstance(s.created_at, float) for s in page.sessions)
            token = page.next_page_token
            if not page.has_more:
                break
        assert listed == fake.agents.session_ids(AGENT)
        path = tmp_path / "brief.md"
        path.write_bytes(b"# brief")
        with path.open("rb") as handle:
            attached = await call(
                v1.agent_agent_attachment,
                "create",
                CreateAgentAgentAttachmentRequest.builder()
                .agent_id(AGENT)
                .request_body(
                    CreateAgentAgentAttachmentRequestBody.builder().file(handle).type("file").build()
                )
                .build(),
            )
        assert attached.agent_attachment_id
        received = fake.agents.attachments[-1]
        assert (received.data, received.type, received.doc_url) == (b"# brief", "file", None)
        visible = await call(
            v1.agent_agent_visibility,
            "check",
            CheckAgentAgentVisibilityRequest.builder()
            .agent_id(AGENT)
            .request_body(
                CheckAgentAgentVisibilityRequestBody.builder().channel_type("feishu").build()
            )
            .build(),
            RequestOption.builder().user_access_token(fake.issue_user_token()).build(),
        )
        assert visible.visibility is True
        deleted = await asyncio.to_thread(
            sessions.delete,
            DeleteAgentAgentChatSessionRequest.builder()
            .agent_id(AGENT)
            .agent_chat_session_id(made.session_id)
            .build(),
        )
        assert deleted.success()
        assert made.session_id not in fake.agents.session_ids(AGENT)


# -- hostile answers ------------------------------------------------------------------------------

JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=8,
)
#: Agent-shaped fields with wrong or odd values, inside a success envelope.
AGENT_DATA = st.fixed_dictionaries(
    {},
    optional={
        key: JSON_VALUE | st.sampled_from(["", "1.5", "x", "nan", "inf", "1e999"])
        for key in (
            "session_id",
            "agent_chat_id",
            "status",
            "finish_reason",
            "created_at",
            "last_chat_at",
            "turns",
            "content",
            "sessions",
            "has_more",
            "next_page_token",
            "agent_artifact",
            "agent_attachment_id",
            "visibility",
        )
    },
)
HOSTILE = (
    AGENT_DATA.map(lambda d: json.dumps({"code": 0, "msg": "ok", "data": d}).encode())
    | JSON_VALUE.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=48)
    | st.sampled_from([b"", b"<html>502 Bad Gateway</html>", b'{"code":0,"data":[]}'])
)


class _OneAnswer:
    """A stand-in wire: a token for every fetch, one (status, payload) for every call."""

    def __init__(self, status: int, payload: bytes) -> None:
        self.status, self.payload, self.calls = status, payload, 0

    async def send(
        self, call: str, method: str, url: Any, headers: Any, data: Any, params: Any
    ) -> Answer:
        if call == "auth.token":
            return Answer(200, b'{"code":0,"tenant_access_token":"t-seam","expire":7200}')
        self.calls += 1
        assert self.calls <= 60, f"runaway: more than 60 requests ({call})"
        return Answer(self.status, self.payload)

    async def close(self) -> None:
        pass


async def _drain(iterator: Any) -> list[Any]:
    return [item async for item in iterator]


async def _chat(client: AilyClient) -> Any:
    handle = await client.agents.chats.create(AGENT, "hi", max_wait=20.0)
    return await handle


AGENT_OPERATIONS: dict[str, Any] = {
    "agents.sessions.create": lambda c: c.agents.sessions.create(AGENT, name="n"),
    "agents.sessions.get": lambda c: c.agents.sessions.get(AGENT, "s1"),
    "agents.sessions.list": lambda c: _drain(c.agents.sessions.list(AGENT)),
    "agents.sessions.delete": lambda c: c.agents.sessions.delete(AGENT, "s1"),
    "agents.chats.create": _chat,
    "agents.chats.stream": lambda c: _drain(c.agents.chats.stream(AGENT, "hi", max_wait=20.0)),
    "agents.chats.get": lambda c: c.agents.chats.get(AGENT, "c1"),
    "agents.artifacts.get": lambda c: c.agents.artifacts.get(AGENT, "a1"),
    "agents.attachments.create": lambda c: c.agents.attachments.create(AGENT, doc_url="u"),
    "agents.check_visibility": lambda c: c.agents.check_visibility(AGENT, "feishu"),
}
CALL_NAMES = {
    "agents.chats.create",
    "agents.chats.get",
    "agents.chats.wait",
    *(name for name in AGENT_OPERATIONS if name != "agents.chats.stream"),
}


@pytest.fixture(scope="module")
def vloop() -> Iterator[VirtualTimeLoop]:
    """One virtual-time loop for the examples of the property test."""
    loop = VirtualTimeLoop()
    yield loop
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    op=st.sampled_from(sorted(AGENT_OPERATIONS)),
    status=st.sampled_from([200, 200, 200, 201, 302, 400, 404, 429, 500, 503]),
    payload=HOSTILE,
)
def test_every_agent_call_survives_any_answer(
    vloop: VirtualTimeLoop, op: str, status: int, payload: bytes
) -> None:
    """Every agent call, fed the same hostile answer for each of its requests (retries,
    paging, polling and the stream's fallback included), returns or raises an AilyError that
    names the call, and leaves no task behind."""

    async def scenario() -> None:
        client = AilyClient(
            "cli_test",
            "secret",
            base_url="http://127.0.0.1:9",
            limiter=None,
            retry=RetryPolicy(
                max_attempts=2, base_delay=0, max_delay=0, max_reset_wait=0, max_quota_wait=5
            ),
            poll_interval=0.5,
            wire=_OneAnswer(status, payload),
        )
        error: AilyError | None = None
        try:
            await asyncio.wait_for(AGENT_OPERATIONS[op](client), timeout=600)
        except AilyError as exc:
            error = exc
        finally:
            await client.close()
        if error is not None:
            assert str(error).split(":", 1)[0] in CALL_NAMES, error
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    vloop.run_until_complete(scenario())
