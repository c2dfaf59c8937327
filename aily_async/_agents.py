"""``client.agents``: an agent's chat sessions, chats (awaitable and streamable), artifacts,
attachments, and the visibility check.

The Agent API is declared by the official SDK with no required fields, no enum values, no
formats and no rate limits (see the README's "Agents"). So ids are checked only for what would
break the path (:func:`aily_async._validation.path_id`) and percent-encoded; arguments are
checked for their type and presence; quotas are the default of unknown calls (1000 per minute
per call, :class:`Limits`). Creates (session, chat, attachment) are retried only when they
certainly did not reach the service: nothing says a repeated one is harmless.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from aiohttp import FormData

from . import _validation as v
from ._agent_chat import AgentChatHandle, terminal_set
from ._agent_models import (
    AGENT_CHAT_TERMINAL_STATUSES,
    AgentArtifact,
    AgentChat,
    AgentSession,
)
from ._agent_stream import AgentChatStream, streamed_call
from ._errors import AilyResponseError, AilyValidationError
from ._polling import DurationStats, PollBudget, PollPolicy
from ._resources import Resource, model, pages, structure
from ._transport import Transport
from ._uploads import FileSource, Upload

__all__ = ["AgentArtifacts", "AgentAttachments", "AgentChats", "AgentSessions", "Agents"]

#: The ``type`` of the text part a chat sends (the SDK names no value; an assumption).
TEXT_PART = "text"


class AgentSessions(Resource):
    """An agent's chat sessions (``client.agents.sessions``)."""

    __slots__ = ()

    async def create(
        self, agent_id: str, *, name: str | None = None, timeout: float | None = None
    ) -> AgentSession:
        """Create a chat session (optionally named)."""
        call = "agents.sessions.create"
        aid = v.path_id(call, "agent_id", agent_id)
        body = {} if name is None else {"name": v.text(call, "name", name, required=False)}
        data = await self._transport.request(
            call, "POST", f"/agents/{aid}/sessions", body=body, safety="unsafe", timeout=timeout
        )
        return structure(call, data, AgentSession, "data")

    async def get(
        self, agent_id: str, session_id: str, *, timeout: float | None = None
    ) -> AgentSession:
        """Fetch a chat session (with its ``turns``)."""
        call = "agents.sessions.get"
        aid = v.path_id(call, "agent_id", agent_id)
        sid = v.path_id(call, "session_id", session_id)
        data = await self._transport.request(
            call, "GET", f"/agents/{aid}/sessions/{sid}", timeout=timeout
        )
        return structure(call, data, AgentSession, "data")

    def list(
        self, agent_id: str, *, page_size: int | None = None, timeout: float | None = None
    ) -> AsyncIterator[AgentSession]:
        """Iterate over the agent's chat sessions (all pages; the answer's page token is
        ``next_page_token``); ``timeout`` bounds each page's request."""
        call = "agents.sessions.list"
        aid = v.path_id(call, "agent_id", agent_id)
        params = {}
        if page_size is not None:
            params["page_size"] = str(v.positive_int(call, "page_size", page_size))
        path = f"/agents/{aid}/sessions"
        return pages(
            self._transport, call, path, "sessions", AgentSession, params,
            token_key="next_page_token", timeout=timeout,
        )

    async def delete(
        self, agent_id: str, session_id: str, *, timeout: float | None = None
    ) -> None:
        """Delete a chat session. Retried like every delete; a retry answered "not found"
        after an attempt that may have landed counts as done."""
        call = "agents.sessions.delete"
        aid = v.path_id(call, "agent_id", agent_id)
        sid = v.path_id(call, "session_id", session_id)
        await self._transport.request(
            call, "DELETE", f"/agents/{aid}/sessions/{sid}", done_if_gone=True, timeout=timeout
        )


class AgentChats(Resource):
    """Chats with an agent (``client.agents.chats``): one user turn each, whose reply is read
    back by polling (:meth:`create`) or as it streams (:meth:`stream`).

    ``terminal_statuses`` (settable) are the statuses that end a chat besides a non-empty
    ``finish_reason``; ``max_wait`` (settable, seconds) bounds every wait on a chat from its
    creation; ``read_timeout`` (settable, seconds) is how long a stream may stay silent.
    """

    __slots__ = (
        "_budget",
        "_durations",
        "_poll",
        "max_wait",
        "read_timeout",
        "terminal_statuses",
    )

    def __init__(
        self,
        transport: Transport,
        *,
        poll: PollPolicy,
        read_timeout: float,
        max_wait: float = 600.0,
    ) -> None:
        super().__init__(transport)
        self._poll = poll
        #: Durations of the chats this client saw finish (feeds adaptive polling).
        self._durations = DurationStats()
        self._budget = PollBudget()  # the agents.chats.get polls this client's chats share
        self.terminal_statuses: frozenset[str] = AGENT_CHAT_TERMINAL_STATUSES
        self.max_wait = max_wait
        self.read_timeout = read_timeout

    def _handle(
        self,
        chat: AgentChat,
        poll: PollPolicy | None,
        max_wait: float | None,
        terminal_statuses: Iterable[str] | None,
    ) -> AgentChatHandle:
        return AgentChatHandle(
            chat,
            calls=self,
            guard=self._transport,
            policy=poll or self._poll,
            stats=self._durations,
            max_wait=self.max_wait if max_wait is None else max_wait,
            terminal_statuses=terminal_set(terminal_statuses, self.terminal_statuses),
            budget=self._budget,
        )

    def _body(
        self,
        call: str,
        text: object,
        session_id: object,
        attachment_ids: object,
        stream: bool,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "content": [{"type": TEXT_PART, "text": v.text(call, "text", text)}]
        }
        if attachment_ids is not None:
            message["agent_attachment_ids"] = v.text_list(call, "attachment_ids", attachment_ids)
        body: dict[str, Any] = {"user_message": message}
        if stream:
            body["stream"] = True
        if session_id is not None:
            body["session_id"] = v.text(call, "session_id", session_id)
        return body

    def _options(
        self, call: str, poll_interval: float | None, max_wait: float | None
    ) -> tuple[PollPolicy | None, float | None]:
        poll = None if poll_interval is None else PollPolicy(interval=poll_interval)
        wait = None if max_wait is None else v.seconds(call, "max_wait", max_wait)
        return poll, wait

    async def create(
        self,
        agent_id: str,
        text: str,
        *,
        session_id: str | None = None,
        attachment_ids: Iterable[str] | None = None,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
        max_wait: float | None = None,
        terminal_statuses: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> AgentChatHandle:
        """Send ``text`` to the agent (in ``session_id``, or wherever the service puts a chat
        without one) and return an :class:`AgentChatHandle`: ``await`` it for the reply.

        ``terminal_statuses`` add to :attr:`terminal_statuses` for this chat; ``max_wait``
        replaces :attr:`max_wait`. ``timeout`` bounds the create call (the wait for the reply
        has its own: ``max_wait``, ``wait(timeout)``). Not retried once it may have reached
        the service.
        """
        call = "agents.chats.create"
        aid = v.path_id(call, "agent_id", agent_id)
        body = self._body(call, text, session_id, attachment_ids, stream=False)
        implied, wait = self._options(call, poll_interval, max_wait)
        data = await self._transport.request(
            call, "POST", f"/agents/{aid}/chats", body=body, safety="unsafe", timeout=timeout
        )
        chat_id = data.get("agent_chat_id")
        if not isinstance(chat_id, str) or not chat_id:
            raise AilyResponseError("the answer has no agent_chat_id", call=call)
        answered = data.get("session_id")
        chat = AgentChat(
            agent_chat_id=chat_id,
            agent_id=agent_id,
            session_id=answered if isinstance(answered, str) and answered else session_id,
        )
        return self._handle(chat, poll or implied, wait, terminal_statuses)

    def stream(
        self,
        agent_id: str,
        text: str,
        *,
        session_id: str | None = None,
        attachment_ids: Iterable[str] | None = None,
        read_timeout: float | None = None,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
        max_wait: float | None = None,
        terminal_statuses: Iterable[str] | None = None,
    ) -> AgentChatStream:
        """Send ``text`` with ``stream: true`` and return an :class:`AgentChatStream`:
        ``async for event in ...`` yields the reply as it comes (Server-Sent Events when the
        service streams, polled states when it answers plain JSON). The request leaves when
        iteration begins. ``read_timeout`` (default :attr:`read_timeout`) bounds each silence
        of the stream; the polling options apply when the chat is polled.
        """
        call = "agents.chats.create"
        aid = v.path_id(call, "agent_id", agent_id)
        body = self._body(call, text, session_id, attachment_ids, stream=True)
        implied, wait = self._options(call, poll_interval, max_wait)
        silence = self.read_timeout if read_timeout is None else read_timeout
        silence = v.seconds(call, "read_timeout", silence)
        terminal = tuple(terminal_statuses) if terminal_statuses is not None else None
        return AgentChatStream(
            call=call,
            agent_id=agent_id,
            session_id=session_id,
            open=functools.partial(
                streamed_call, self._transport, call, f"/agents/{aid}/chats", body, silence
            ),
            make_handle=lambda chat: self._handle(chat, poll or implied, wait, terminal),
        )

    async def get(
        self,
        agent_id: str,
        chat_id: str,
        *,
        session_id: str | None = None,
        timeout: float | None = None,
    ) -> AgentChat:
        """Fetch a chat once. The answer does not name the chat's session: ``session_id``,
        when given, is copied into the result (handles pass the one they know)."""
        call = "agents.chats.get"
        aid = v.path_id(call, "agent_id", agent_id)
        cid = v.path_id(call, "chat_id", chat_id)
        data = await self._transport.request(
            call, "GET", f"/agents/{aid}/chats/{cid}", timeout=timeout
        )
        chat = structure(call, data, AgentChat, "data")
        return AgentChat(
            agent_chat_id=chat_id,
            agent_id=agent_id,
            session_id=chat.session_id or session_id,
            status=chat.status,
            finish_reason=chat.finish_reason,
            content=chat.content,
        )

    def attach(
        self,
        agent_id: str,
        chat_id: str,
        *,
        session_id: str | None = None,
        poll: PollPolicy | None = None,
        max_wait: float | None = None,
        terminal_statuses: Iterable[str] | None = None,
    ) -> AgentChatHandle:
        """An :class:`AgentChatHandle` for a chat you already have the id of (its
        ``max_wait`` counts from now)."""
        call = "agents.chats.attach"
        v.path_id(call, "agent_id", agent_id)
        v.path_id(call, "chat_id", chat_id)
        _, wait = self._options(call, None, max_wait)
        chat = AgentChat(agent_chat_id=chat_id, agent_id=agent_id, session_id=session_id)
        return self._handle(chat, poll, wait, terminal_statuses)

    def __repr__(self) -> str:
        return f"<AgentChats max_wait={self.max_wait:g}s finished={len(self._durations)}>"


class AgentArtifacts(Resource):
    """What agents made (``client.agents.artifacts``)."""

    __slots__ = ()

    async def get(
        self, agent_id: str, artifact_id: str, *, timeout: float | None = None
    ) -> AgentArtifact:
        """Fetch an artifact (a name and a URL)."""
        call = "agents.artifacts.get"
        aid = v.path_id(call, "agent_id", agent_id)
        rid = v.path_id(call, "artifact_id", artifact_id)
        data = await self._transport.request(
            call, "GET", f"/agents/{aid}/artifacts/{rid}", timeout=timeout
        )
        return model(call, data, "agent_artifact", AgentArtifact)


def _fields_form(fields: Mapping[str, str]) -> FormData:
    # Multipart even without a file part (aiohttp would send text fields url-encoded).
    form = FormData(quote_fields=False, default_to_multipart=True)
    for name, value in fields.items():
        form.add_field(name, value)
    return form


class AgentAttachments(Resource):
    """Files and documents to attach to a chat (``client.agents.attachments``)."""

    __slots__ = ()

    async def create(
        self,
        agent_id: str,
        *,
        file: FileSource | None = None,
        doc_url: str | None = None,
        type: str | None = None,
        filename: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Upload a ``file`` (a path, bytes or a binary file object, streamed) and/or name a
        document by ``doc_url``; returns the attachment id to pass as ``attachment_ids``.

        A multipart form: text fields that are set (``type``, ``doc_url``), then the file part
        ``file`` with its ``filename`` (default: the path's base name, else ``"file"``) and a
        content type guessed from it. Not retried once it may have reached the service.
        """
        call = "agents.attachments.create"
        aid = v.path_id(call, "agent_id", agent_id)
        if file is None and doc_url is None:
            raise AilyValidationError("file", "or doc_url must be given", call=call)
        if filename is not None and file is None:
            raise AilyValidationError("filename", "only goes with a file", call=call)
        fields = {
            name: v.text(call, name, value)
            for name, value in (("type", type), ("doc_url", doc_url))
            if value is not None
        }
        path = f"/agents/{aid}/attachments"
        if file is None:
            data = await self._transport.request(
                call,
                "POST",
                path,
                form=functools.partial(_fields_form, fields),
                safety="unsafe",
                timeout=timeout,
            )
        else:
            async with Upload(call, file, filename=filename, fields=fields) as upload:
                data = await self._transport.request(
                    call, "POST", path, form=upload.form, safety="unsafe", timeout=timeout
                )
        attachment_id = data.get("agent_attachment_id")
        if not isinstance(attachment_id, str) or not attachment_id:
            raise AilyResponseError("the answer has no agent_attachment_id", call=call)
        return attachment_id


class Agents(Resource):
    """The Agent API (``client.agents``): ``sessions``, ``chats``, ``artifacts``,
    ``attachments`` and :meth:`check_visibility`."""

    __slots__ = ("artifacts", "attachments", "chats", "sessions")

    def __init__(self, transport: Transport, *, poll: PollPolicy, read_timeout: float) -> None:
        super().__init__(transport)
        self.sessions = AgentSessions(transport)
        self.chats = AgentChats(transport, poll=poll, read_timeout=read_timeout)
        self.artifacts = AgentArtifacts(transport)
        self.attachments = AgentAttachments(transport)

    async def check_visibility(
        self, agent_id: str, channel_type: str, *, timeout: float | None = None
    ) -> bool:
        """Whether the calling user may see the agent in ``channel_type`` (values not
        documented). Takes a **user** access token (``AilyClient(user_access_token=...)``);
        the service refuses a tenant token."""
        call = "agents.check_visibility"
        aid = v.path_id(call, "agent_id", agent_id)
        body = {"channel_type": v.text(call, "channel_type", channel_type)}
        data = await self._transport.request(
            call, "POST", f"/agents/{aid}/agent_visibility/check", body=body, timeout=timeout
        )
        return structure(call, data.get("visibility"), bool, "data.visibility")
