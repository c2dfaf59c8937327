"""Endpoint handlers of the Agent API: chat sessions, chats (JSON or an event stream),
artifacts, attachments (multipart) and the visibility check.

Agents exist implicitly: any agent id is served. A chat without ``session_id`` opens a new
session (the service's behaviour is not documented). Choices where the SDK is silent: unknown
session, chat, artifact or attachment ids get HTTP 404 with code 2700001; the visibility check
refuses a tenant token with HTTP 400, code 2700001 (it takes a user token only), and answers
``visibility: false`` for the agents in ``fake.agents.invisible``.
"""

from __future__ import annotations

import asyncio
import functools
from functools import partial
from typing import Any

from aiohttp import web

from ._agent_models import ChatPlan, ChatRequest, ChatScript, RecordedAttachment
from ._agents_state import (
    AgentStore,
    ArtifactRecord,
    ChatRecord,
    SessionRecord,
    artifact_wire,
    chat_events,
    chat_wire,
    encode_event,
    session_entry,
    session_wire,
)
from ._clock import Clock
from ._context import Ctx, Handler
from ._models import FakeApiError
from ._multipart import parse_form
from ._paging import Entry, paged
from ._wire import PARAM_INVALID, invalid, not_found, object_field, str_field, str_list

__all__ = ["AgentHandlers", "make_chat_script"]

#: How often a stalled stream looks whether its client has gone.
_STALL_CHECK = 0.25
#: The longest a stalled stream stays open.
_STALL_MAX = 3600.0


def make_chat_script(chat_script: ChatPlan | ChatScript | None) -> ChatScript:
    """Turn the ``chat_script`` option into a chat script."""
    if chat_script is None:
        chat_script = ChatPlan()
    if isinstance(chat_script, ChatPlan):
        plan = chat_script
        return lambda _request: plan
    return chat_script


class AgentHandlers:
    """Handlers of the ``agents.*`` routes, over one agent store."""

    def __init__(self, store: AgentStore, clock: Clock, chat_script: ChatScript) -> None:
        self._store = store
        self._clock = clock
        self._script = chat_script

    def routes(self) -> dict[str, Handler]:
        """Map each route key this class serves to its handler."""
        return {
            "agents.sessions.create": self.create_session,
            "agents.sessions.get": self.get_session,
            "agents.sessions.list": self.list_sessions,
            "agents.sessions.delete": self.delete_session,
            "agents.chats.create": self.create_chat,
            "agents.chats.get": self.get_chat,
            "agents.artifacts.get": self.get_artifact,
            "agents.attachments.create": self.create_attachment,
            "agents.check_visibility": self.check_visibility,
        }

    # ------------------------------------------------------------------ sessions

    def _session(self, agent_id: str, session_id: str) -> SessionRecord:
        session = self._store.sessions.get(session_id)
        if session is None or session.agent_id != agent_id:
            raise not_found("agent_chat_session_id", f"session {session_id}")
        return session

    async def create_session(self, ctx: Ctx) -> dict[str, Any]:
        """``POST /agents/{agent}/sessions``: ``name`` optional."""
        agent_id = ctx.request.match_info["agent_id"]
        name = str_field(ctx.body, "name") or ""
        session = self._store.add_session(agent_id, name, ctx.now)
        return session_wire(session, ctx.now, self._clock.wall_ms)

    async def get_session(self, ctx: Ctx) -> dict[str, Any]:
        """``GET /agents/{agent}/sessions/{session}``."""
        info = ctx.request.match_info
        session = self._session(info["agent_id"], info["agent_chat_session_id"])
        return session_wire(session, ctx.now, self._clock.wall_ms)

    async def list_sessions(self, ctx: Ctx) -> dict[str, Any]:
        """``GET /agents/{agent}/sessions``, oldest first; the next page's token is answered
        as ``next_page_token`` (and taken back as ``page_token``)."""
        agent_id = ctx.request.match_info["agent_id"]
        entries: list[Entry] = [
            ((session.seq,), partial(session_entry, session, self._clock.wall_ms))
            for session in self._store.sessions.values()
            if session.agent_id == agent_id
        ]
        data = paged(ctx.request.query, "sessions", entries)
        if "page_token" in data:
            data["next_page_token"] = data.pop("page_token")
        return data

    async def delete_session(self, ctx: Ctx) -> dict[str, Any]:
        """``DELETE /agents/{agent}/sessions/{session}``, with its chats."""
        info = ctx.request.match_info
        self._store.delete_session(self._session(info["agent_id"], info["agent_chat_session_id"]))
        return {}

    # ------------------------------------------------------------------ chats

    async def create_chat(self, ctx: Ctx) -> dict[str, Any]:
        """``POST /agents/{agent}/chats``: answered with the ids, or with ``stream: true`` by
        the chat's event stream (see :class:`ChatPlan`)."""
        agent_id = ctx.request.match_info["agent_id"]
        body = ctx.body
        message = object_field(body, "user_message", label="user_message")
        content = message.get("content")
        if not isinstance(content, list) or not content:
            raise invalid("user_message.content", "must be a non-empty list")
        texts: list[str] = []
        for index, part in enumerate(content):
            label = f"user_message.content[{index}]"
            if not isinstance(part, dict):
                raise invalid(label, "must be an object")
            str_field(part, "type", label=f"{label}.type")
            texts.append(str_field(part, "text", label=f"{label}.text") or "")
        attachments = str_list(
            message,
            "agent_attachment_ids",
            label="user_message.agent_attachment_ids",
            max_items=100,
        )
        for attachment_id in attachments:
            known = self._store.attachments.get(attachment_id)
            if known is None or known.agent_id != agent_id:
                raise not_found("agent_attachment_ids", f"attachment {attachment_id}")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise invalid("stream", "must be a boolean")
        session_id = str_field(body, "session_id")
        if session_id:
            session = self._session(agent_id, session_id)
        else:
            session = self._store.add_session(agent_id, "", ctx.now)
        text = "\n".join(t for t in texts if t)
        plan = self._script(
            ChatRequest(
                agent_id=agent_id,
                session_id=session.id,
                text=text,
                attachment_ids=tuple(attachments),
                stream=stream,
            )
        )
        if not isinstance(plan, ChatPlan):
            raise TypeError(f"chat_script must return a ChatPlan, got {plan!r}")
        origin = f"{ctx.request.scheme}://{ctx.request.host}"
        artifacts = tuple(
            ArtifactRecord(
                id=(artifact_id := self._store.new_id("artifact_")),
                agent_id=agent_id,
                name=name,
                artifact_type=kind,
                url=f"{origin}/fake-artifacts/{artifact_id}",
            )
            for name, kind in plan.artifacts
        )
        chat = ChatRecord(
            id=self._store.new_id("chat_"),
            agent_id=agent_id,
            session_id=session.id,
            text=text,
            plan=plan,
            answer=plan.answer if plan.answer is not None else f"Echo: {text}",
            artifacts=artifacts,
            created=ctx.now,
        )
        self._store.add_chat(session, chat)
        if stream and plan.sse:
            ctx.stream = functools.partial(self._stream, ctx, chat)
        return {"agent_chat_id": chat.id, "session_id": session.id}

    async def get_chat(self, ctx: Ctx) -> dict[str, Any]:
        """``GET /agents/{agent}/chats/{chat}``."""
        info = ctx.request.match_info
        chat = self._store.chats.get(info["agent_chat_id"])
        if chat is None or chat.agent_id != info["agent_id"]:
            raise not_found("agent_chat_id", f"chat {info['agent_chat_id']}")
        return chat_wire(chat, ctx.now)

    async def _stream(self, ctx: Ctx, chat: ChatRecord) -> web.StreamResponse:
        """Write ``chat``'s events as they happen (the test hooks of its plan applied)."""
        request, plan = ctx.request, chat.plan
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Tt-Logid": ctx.log_id,
            },
        )
        await response.prepare(request)
        try:
            await response.write(b": the fake's event stream (not the service's format)\n\n")
            for index, (at, event, data) in enumerate(chat_events(chat)):
                if plan.drop_after is not None and index >= plan.drop_after:
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                if plan.stall_after is not None and index >= plan.stall_after:
                    await _until_gone(request)
                    return response
                wait = at - self._clock.now()
                if wait > 0:
                    await asyncio.sleep(wait)
                await response.write(encode_event(index, event, data))
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client left
        return response

    # ------------------------------------------------------------------ the rest

    async def get_artifact(self, ctx: Ctx) -> dict[str, Any]:
        """``GET /agents/{agent}/artifacts/{artifact}``."""
        info = ctx.request.match_info
        artifact = self._store.artifacts.get(info["agent_artifact_id"])
        if artifact is None or artifact.agent_id != info["agent_id"]:
            raise not_found("agent_artifact_id", f"artifact {info['agent_artifact_id']}")
        return {"agent_artifact": artifact_wire(artifact)}

    async def create_attachment(self, ctx: Ctx) -> dict[str, Any]:
        """``POST /agents/{agent}/attachments``: multipart ``file`` and/or ``doc_url``, and
        ``type``."""
        agent_id = ctx.request.match_info["agent_id"]
        header = ctx.request.headers.get("Content-Type", "")
        parts = {part.name: part for part in parse_form(header, await ctx.request.read())}
        file = parts.get("file")
        fields = {
            name: parts[name].data.decode("utf-8", "replace")
            for name in ("type", "doc_url")
            if name in parts and not parts[name].is_file
        }
        if (file is None or not file.data) and not fields.get("doc_url"):
            raise invalid("file", "or doc_url is required")
        attachment = RecordedAttachment(
            id=self._store.new_id("attachment_"),
            agent_id=agent_id,
            type=fields.get("type") or None,
            doc_url=fields.get("doc_url") or None,
            filename=file.filename if file is not None else None,
            content_type=file.content_type if file is not None else None,
            data=file.data if file is not None else None,
        )
        self._store.attachments[attachment.id] = attachment
        return {"agent_attachment_id": attachment.id}

    async def check_visibility(self, ctx: Ctx) -> dict[str, Any]:
        """``POST /agents/{agent}/agent_visibility/check``: a user token only."""
        _, _, token = ctx.request.headers.get("Authorization", "").partition(" ")
        if not token.strip().startswith("u-"):
            raise FakeApiError(
                PARAM_INVALID,
                "param is invalid: this call takes a user access token",
                http_status=400,
            )
        channel_type = str_field(ctx.body, "channel_type", required=True)
        assert channel_type is not None
        agent_id = ctx.request.match_info["agent_id"]
        return {"visibility": agent_id not in self._store.invisible}


async def _until_gone(request: web.Request) -> None:
    """Keep a connection open, sending nothing, until its client has gone."""
    loop = asyncio.get_running_loop()
    until = loop.time() + _STALL_MAX
    while loop.time() < until:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(_STALL_CHECK)
