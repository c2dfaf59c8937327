"""``client.agents.chats.stream()``: an agent chat created with ``stream: true``, read as it comes.

The Agent API declares the ``stream`` flag and nothing about the answer (the official SDK
cannot read a streamed answer at all), so this reader assumes only what the HTTP answer says:

* ``Content-Type: text/event-stream``: the body is read as Server-Sent Events
  (:mod:`aily_async._sse`, standard framing only, no event name assumed) and each event is
  yielded as it arrives, its ``data`` decoded as JSON when it is JSON;
* any other successful answer is the plain JSON answer of "create chat" (the chat's ids): the
  chat is then followed by polling "get chat" (:meth:`AgentChatHandle.stream`).

Where the text is (assumptions, documented in the README): an event's ``text`` is its JSON
data when that is a string, else the first string found at ``text``, ``delta`` (or
``delta.text`` / ``delta.content``) or ``content`` (a string, or the joined ``text`` of a list
of parts), looked for in the data object and then in its ``data`` or ``message`` object; data
that is not JSON carries no text (it might be a sentinel such as ``[DONE]``). Each event's text
is taken as a delta that continues the text before it. The chat's ids (``agent_chat_id``,
``session_id``) and progress (``status``, ``finish_reason``) are read the same way, when an
event carries them.

A stream that sends nothing for ``read_timeout`` seconds raises :class:`AilyTimeoutError`. A
connection that drops mid-stream goes on by polling when an event named the chat (the chat
goes on server-side, and what it wrote since is yielded); otherwise it raises
:class:`AilyConnectionError`. Nothing is sent twice: a streamed create is never retried once it
may have reached the service.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

from ._agent_chat import AgentChatHandle, chat_events
from ._agent_models import AgentChat, AgentChatEvent
from ._errors import AilyConnectionError, AilyResponseError
from ._sse import SSEError, SSEEvent, SSEParser
from ._stream_body import ByteStream, Streamed
from ._transport import Transport

__all__ = ["AgentChatStream", "event_text", "streamed_call"]

logger = logging.getLogger("aily_async")

#: What a streamed call hands its reader: the JSON ``data`` of a plain answer (and ``None``),
#: or ``{}`` and the body's chunks as they arrive.
Opened = tuple[dict[str, Any], AsyncIterator[bytes] | None]


@contextlib.asynccontextmanager
async def streamed_call(
    transport: Transport, call: str, path: str, body: Any, read_timeout: float
) -> AsyncIterator[Opened]:
    """POST ``body`` to ``path`` through the transport (token, limiter, the retries of an
    unsafe call) asking for a stream; the body of an event-stream answer is read chunk by
    chunk, each read inside the transport's scope (closing the client ends it with
    :class:`AilyClosedError`), and released on the way out."""
    streamed = Streamed(read_timeout)
    try:
        data = await transport.request(
            call, "POST", path, body=body, safety="unsafe", streamed=streamed
        )
    except BaseException:
        if streamed.events is not None:
            await streamed.events.close()
        raise
    events = streamed.events
    if events is None:
        yield data, None
        return
    try:
        yield {}, _chunks(transport, call, events)
    finally:
        await events.close()


async def _chunks(transport: Transport, call: str, events: ByteStream) -> AsyncIterator[bytes]:
    while True:
        async with transport.scope(call):
            chunk = await events.read()
        if not chunk:
            return
        yield chunk


def _string(value: Any) -> str:
    """The text a value holds: a string, a part's ``text``/``content``, or a list's parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        for key in ("text", "content"):
            inner = value.get(key)
            if isinstance(inner, str):
                return inner
        return ""
    if isinstance(value, list):
        return "".join(
            part["text"]
            for part in value
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def _objects(data: Any) -> list[Mapping[str, Any]]:
    """Where an event's fields are looked for: the data object, then its ``data`` and
    ``message`` objects."""
    if not isinstance(data, Mapping):
        return []
    found = [data]
    for key in ("data", "message"):
        inner = data.get(key)
        if isinstance(inner, Mapping):
            found.append(inner)
    return found


def event_text(data: Any) -> str:
    """The text an event's decoded data carries (see the module docstring)."""
    if isinstance(data, str):
        return data
    for obj in _objects(data):
        for key in ("text", "delta", "content"):
            text = _string(obj.get(key))
            if text:
                return text
    return ""


def _field(data: Any, key: str) -> str | None:
    for obj in _objects(data):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _decode(raw: str) -> tuple[Any, bool]:
    """The data decoded as JSON and True, or the raw text and False when it is not JSON."""
    try:
        return json.loads(raw), True
    except (ValueError, RecursionError):
        return raw, False


class AgentChatStream:
    """An agent chat created with ``stream: true``: iterate it (once) for
    :class:`AgentChatEvent` values as they arrive. Use ``async with`` (or :meth:`aclose`) to
    release the connection when leaving early.

    Meanwhile and afterwards: :attr:`chat_id` and :attr:`session_id` once known, :attr:`text`
    (the texts yielded so far, joined), :attr:`status` / :attr:`finish_reason` (the last an
    event named) and :attr:`polling` (the answer was plain JSON, or the stream dropped, and the
    chat was followed by polling); :meth:`handle` follows the chat by polling, e.g. ``await
    stream.handle()`` for its final state.
    """

    __slots__ = (
        "_agent_id",
        "_call",
        "_chat_id",
        "_finish_reason",
        "_handle",
        "_iterator",
        "_make_handle",
        "_open",
        "_polling",
        "_session_id",
        "_status",
        "_text",
    )

    def __init__(
        self,
        *,
        call: str,
        agent_id: str,
        session_id: str | None,
        open: Callable[[], AbstractAsyncContextManager[Opened]],
        make_handle: Callable[[AgentChat], AgentChatHandle],
    ) -> None:
        self._call = call
        self._agent_id = agent_id
        self._session_id = session_id
        self._open = open
        self._make_handle = make_handle
        self._chat_id: str | None = None
        self._status: str | None = None
        self._finish_reason: str | None = None
        self._text: list[str] = []
        self._polling = False
        self._handle: AgentChatHandle | None = None
        self._iterator: AsyncGenerator[AgentChatEvent, None] | None = None

    # -- what is known ----------------------------------------------------------------------

    @property
    def chat_id(self) -> str | None:
        """The chat's id, once the answer or an event named it."""
        return self._chat_id

    @property
    def session_id(self) -> str | None:
        """The chat session, as given or once the answer or an event named it."""
        return self._session_id

    @property
    def text(self) -> str:
        """The text yielded so far (rewrites applied)."""
        return "".join(self._text)

    @property
    def status(self) -> str | None:
        """The last status an event (or a polled state) named."""
        return self._status

    @property
    def finish_reason(self) -> str | None:
        """The last finish reason an event (or a polled state) named."""
        return self._finish_reason

    @property
    def polling(self) -> bool:
        """True once the chat is followed by polling rather than read as a stream."""
        return self._polling

    def handle(self) -> AgentChatHandle:
        """An :class:`AgentChatHandle` of the chat (``await`` it for the final state); raises
        :class:`AilyResponseError` while no answer or event has named the chat."""
        if self._handle is None:
            if self._chat_id is None:
                raise AilyResponseError(
                    "the stream has not named its chat (no agent_chat_id seen)", call=self._call
                )
            self._handle = self._make_handle(
                AgentChat(
                    agent_chat_id=self._chat_id,
                    agent_id=self._agent_id,
                    session_id=self._session_id,
                )
            )
        return self._handle

    def __repr__(self) -> str:
        mode = "polling" if self._polling else "stream"
        return (
            f"<AgentChatStream {self._chat_id or '?'} {mode} status={self._status!r} "
            f"text={len(self.text)} chars>"
        )

    # -- iterating --------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[AgentChatEvent]:
        if self._iterator is None:
            self._iterator = self._events()
        return self._iterator

    async def aclose(self) -> None:
        """Stop reading and release the connection (idempotent)."""
        if self._iterator is not None:
            await self._iterator.aclose()

    async def __aenter__(self) -> AgentChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _events(self) -> AsyncGenerator[AgentChatEvent, None]:
        dropped: AilyConnectionError | None = None
        async with self._open() as (data, chunks):
            if chunks is None:
                self._learn(data)
                if self._chat_id is None:
                    raise AilyResponseError(
                        "the answer has no agent_chat_id (and is not an event stream)",
                        call=self._call,
                    )
            else:
                parser = SSEParser()
                try:
                    async for chunk in chunks:
                        for sse in self._parse(parser, chunk):
                            yield self._sse_event(sse)
                    return
                except AilyConnectionError as exc:
                    if self._chat_id is None:
                        raise
                    dropped = exc
        if dropped is not None:
            logger.info("%s: %s; following chat %s by polling", self._call, dropped, self._chat_id)
        self._polling = True
        async for event in chat_events(self.handle().watch(), self.text):
            chat = event.chat
            assert chat is not None
            self._status = chat.status or self._status
            self._finish_reason = chat.finish_reason or self._finish_reason
            if event.rewrite:
                self._text = [event.text]
            elif event.text:
                self._text.append(event.text)
            yield event

    def _parse(self, parser: SSEParser, chunk: bytes) -> list[SSEEvent]:
        try:
            return parser.feed(chunk)
        except SSEError as exc:
            raise AilyResponseError(f"unreadable event stream: {exc}", call=self._call) from None

    def _learn(self, data: Any) -> None:
        """Take the chat's ids and progress from an answer or an event's data."""
        self._chat_id = self._chat_id or _field(data, "agent_chat_id")
        self._session_id = self._session_id or _field(data, "session_id")
        self._status = _field(data, "status") or self._status
        self._finish_reason = _field(data, "finish_reason") or self._finish_reason

    def _sse_event(self, sse: SSEEvent) -> AgentChatEvent:
        data, is_json = _decode(sse.data)
        self._learn(data)
        text = event_text(data) if is_json else ""
        if text:
            self._text.append(text)
        return AgentChatEvent(
            source="sse", event=sse.event, data=data, raw=sse.data, text=text, id=sse.id
        )
