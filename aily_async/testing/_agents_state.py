"""In-memory records of the fake's Agent API: chat sessions, chats, artifacts, attachments.

Nothing runs in the background: a chat's status and reply are computed from its creation time
and :class:`ChatPlan` whenever it is read, and its event stream (``stream: true``) is the same
progress told as events. The shapes are those the official SDK declares, oddities included:
session timestamps are strings in the create and get answers but numbers in list entries,
``turns`` is one object (the latest chat), list paging answers with ``next_page_token``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs

from ._agent_models import ChatPlan, RecordedAttachment
from ._clock import Clock

__all__ = [
    "AgentStore",
    "ArtifactRecord",
    "ChatRecord",
    "FakeAgents",
    "SessionRecord",
    "artifact_wire",
    "chat_events",
    "chat_wire",
    "encode_event",
    "session_entry",
    "session_wire",
]

#: The status the fake gives every chat session (the service documents none).
SESSION_STATUS = "ACTIVE"



@attrs.define(eq=False)
class ArtifactRecord:
    """Something a chat made: a name, a type and a URL (never served)."""

    id: str
    agent_id: str
    name: str
    artifact_type: str
    url: str


@attrs.define(eq=False)
class ChatRecord:
    """A chat and what is needed to tell its state at any later time."""

    id: str
    agent_id: str
    session_id: str
    text: str
    plan: ChatPlan
    answer: str
    artifacts: tuple[ArtifactRecord, ...]
    created: float

    @property
    def started(self) -> float:
        """When the reply begins to be written."""
        return self.created + self.plan.queued

    @property
    def ended(self) -> float:
        """When the chat ends."""
        return self.started + self.plan.duration

    def status(self, now: float) -> str:
        """The chat's status at ``now``."""
        if now < self.started:
            return "QUEUED"
        if now < self.ended:
            return "IN_PROGRESS"
        return self.plan.outcome

    def written(self, now: float) -> str:
        """The reply's text written by ``now``."""
        if now >= self.ended:
            return self.answer
        if now < self.started or not self.plan.duration:
            return ""
        return self.answer[: int(len(self.answer) * (now - self.started) / self.plan.duration)]


@attrs.define(eq=False)
class SessionRecord:
    """A chat session of one agent, with its chats, oldest first."""

    id: str
    agent_id: str
    name: str
    created: float
    seq: int
    chats: list[ChatRecord] = attrs.Factory(list)


class AgentStore:
    """Every agent record of one fake, by id."""

    def __init__(self, new_id: Callable[[str], str], next_seq: Callable[[], int]) -> None:
        self.new_id = new_id
        self.next_seq = next_seq
        self.sessions: dict[str, SessionRecord] = {}
        self.chats: dict[str, ChatRecord] = {}
        self.artifacts: dict[str, ArtifactRecord] = {}
        self.attachments: dict[str, RecordedAttachment] = {}
        #: Agents the visibility check answers ``false`` for.
        self.invisible: set[str] = set()
        self.created_chats = 0

    def add_session(self, agent_id: str, name: str, now: float) -> SessionRecord:
        """A new chat session of ``agent_id``."""
        session = SessionRecord(self.new_id("session_"), agent_id, name, now, self.next_seq())
        self.sessions[session.id] = session
        return session

    def add_chat(self, session: SessionRecord, chat: ChatRecord) -> None:
        """Keep a chat created in ``session``."""
        session.chats.append(chat)
        self.chats[chat.id] = chat
        for artifact in chat.artifacts:
            self.artifacts[artifact.id] = artifact
        self.created_chats += 1

    def delete_session(self, session: SessionRecord) -> None:
        """Forget ``session`` and its chats (their artifacts stay fetchable)."""
        del self.sessions[session.id]
        for chat in session.chats:
            self.chats.pop(chat.id, None)


MsFormatter = Callable[[float], int]


def session_wire(session: SessionRecord, now: float, ms: MsFormatter) -> dict[str, Any]:
    """A session as "create" and "get" send it: timestamps as strings, ``turns`` one object
    (the latest chat), left out before the first chat."""
    wire: dict[str, Any] = {
        "session_id": session.id,
        "name": session.name,
        "status": SESSION_STATUS,
        "created_at": str(ms(session.created)),
    }
    if session.chats:
        last = session.chats[-1]
        wire["last_chat_at"] = str(ms(last.created))
        wire["turns"] = {
            "agent_chat_id": last.id,
            "created_at": float(ms(last.created)),
            "status": last.status(now),
        }
    return wire


def session_entry(session: SessionRecord, ms: MsFormatter) -> dict[str, Any]:
    """A session as "list" sends it (``AgentChatSession``): timestamps as numbers."""
    entry: dict[str, Any] = {
        "session_id": session.id,
        "name": session.name,
        "status": SESSION_STATUS,
        "created_at": float(ms(session.created)),
    }
    if session.chats:
        entry["last_chat_at"] = float(ms(session.chats[-1].created))
    return entry


def _artifact_part(artifact: ArtifactRecord) -> dict[str, Any]:
    return {
        "type": "artifact",
        "agent_artifact_id": artifact.id,
        "artifact_type": artifact.artifact_type,
    }


def chat_wire(chat: ChatRecord, now: float) -> dict[str, Any]:
    """A chat as "get chat" sends it at ``now``: status, finish reason (``""`` while going)
    and the reply's parts so far (the text, then the artifacts once it ended)."""
    content: list[dict[str, Any]] = []
    text = chat.written(now)
    if text:
        content.append({"type": "text", "text": text})
    ended = now >= chat.ended
    if ended:
        content.extend(_artifact_part(artifact) for artifact in chat.artifacts)
    return {
        "status": chat.status(now),
        "finish_reason": chat.plan.finish_reason if ended else "",
        "content": content,
    }


def artifact_wire(artifact: ArtifactRecord) -> dict[str, Any]:
    """An artifact as "get artifact" sends it."""
    return {"artifact_id": artifact.id, "name": artifact.name, "url": artifact.url}


def chat_events(chat: ChatRecord) -> list[tuple[float, str, dict[str, Any]]]:
    """The fake's event stream of ``chat``: ``(when, event type, data)``, in order."""
    ids = {"agent_chat_id": chat.id}
    events: list[tuple[float, str, dict[str, Any]]] = [
        (chat.created, "chat.created", {**ids, "session_id": chat.session_id, "status": "QUEUED"})
    ]
    plan, answer = chat.plan, chat.answer
    cuts = [len(answer) * i // plan.chunks for i in range(plan.chunks + 1)]
    for i in range(plan.chunks):
        piece = answer[cuts[i] : cuts[i + 1]]
        if piece:
            at = chat.started + plan.duration * (i + 1) / plan.chunks
            events.append((at, "chat.delta", {**ids, "status": "IN_PROGRESS", "text": piece}))
    events.extend(
        (chat.ended, "chat.artifact", {**ids, **_artifact_part(a)}) for a in chat.artifacts
    )
    final = {**ids, "status": plan.outcome, "finish_reason": plan.finish_reason}
    events.append((chat.ended, "chat.completed", final))
    return events


def encode_event(index: int, event: str, data: dict[str, Any]) -> bytes:
    """One Server-Sent Event: its id, type and JSON data written over several ``data:``
    lines (JSON allows the line breaks; a reader joins them with ``\\n``)."""
    lines = [f"id: {index}", f"event: {event}"]
    text = json.dumps(data, ensure_ascii=False, indent=1)
    lines += [f"data: {line}" for line in text.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


class FakeAgents:
    """The fake's agents, for tests to look at and steer (``fake.agents``)."""

    def __init__(self, store: AgentStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    @property
    def created_chats(self) -> int:
        """Chats created through the API."""
        return self._store.created_chats

    @property
    def invisible(self) -> set[str]:
        """Agents the visibility check answers ``false`` for (add to it)."""
        return self._store.invisible

    @property
    def attachments(self) -> list[RecordedAttachment]:
        """The attachments received, oldest first."""
        return list(self._store.attachments.values())

    def session_ids(self, agent_id: str | None = None) -> list[str]:
        """Ids of the chat sessions that exist (of one agent, or of all), oldest first."""
        return [s.id for s in self._store.sessions.values() if agent_id in (None, s.agent_id)]

    def get_chat(self, chat_id: str) -> dict[str, Any]:
        """A chat as "get chat" would send it now; ``KeyError`` if unknown."""
        return chat_wire(self._store.chats[chat_id], self._clock.now())

    def __repr__(self) -> str:
        return f"<FakeAgents sessions={len(self._store.sessions)} chats={len(self._store.chats)}>"
