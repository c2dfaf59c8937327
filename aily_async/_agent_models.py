"""Typed views of what the Agent API answers: chat sessions, chats, artifacts, stream events.

Field names are the wire's (``session_id``, ``agent_chat_id``, ``artifact_id``), each model
with an ``id`` alias. The official SDK declares the shapes and nothing else, so the models are
tolerant where the SDK is odd: timestamps are numbers or numeric strings (the SDK types them
as strings in some answers and floats in others; the unit is not documented and the value is
kept as sent), ``turns`` is one object as the SDK declares it or a list, and ``null`` stands for
an absent list. No enum value is known: statuses, reasons and types are plain strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from ._models import converter

__all__ = [
    "AGENT_CHAT_TERMINAL_STATUSES",
    "AgentArtifact",
    "AgentChat",
    "AgentChatEvent",
    "AgentChatPart",
    "AgentChatTurn",
    "AgentSession",
]

#: Chat statuses taken as final when no ``finish_reason`` says so already (compared without
#: regard to case). The service documents no status value: these are assumptions, the
#: spellings its other APIs and common practice use; extend them per client
#: (``client.agents.chats.terminal_statuses``) or per chat (``terminal_statuses=``).
AGENT_CHAT_TERMINAL_STATUSES: frozenset[str] = frozenset(
    {
        "COMPLETED",
        "SUCCEEDED",
        "SUCCESS",
        "FINISHED",
        "DONE",
        "FAILED",
        "ERROR",
        "CANCELLED",
        "CANCELED",
        "EXPIRED",
        "TIMEOUT",
        "STOPPED",
    }
)


@attrs.frozen
class AgentChatTurn:
    """A chat in a session's ``turns``: its id, creation time and status."""

    agent_chat_id: str | None = None
    created_at: float | None = None
    status: str | None = None


@attrs.frozen
class AgentSession:
    """A chat session of an agent. ``turns`` holds what the service sent as ``turns`` (one
    object in the SDK's declaration, kept as a one-item tuple; a list is kept whole)."""

    session_id: str
    name: str | None = None
    status: str | None = None
    created_at: float | None = None
    last_chat_at: float | None = None
    turns: tuple[AgentChatTurn, ...] = ()

    @property
    def id(self) -> str:
        """The session id (``session_id``)."""
        return self.session_id


@attrs.frozen
class AgentChatPart:
    """One part of an agent's reply: text, or a reference to an artifact
    (``agent_artifact_id``, fetch it with ``client.agents.artifacts.get``)."""

    type: str | None = None
    text: str | None = None
    agent_artifact_id: str | None = None
    artifact_type: str | None = None


@attrs.frozen(repr=False)
class AgentChat:
    """One chat (a user turn and the agent's reply) as last seen.

    The "get chat" answer holds only ``status``, ``finish_reason`` and ``content``; the ids are
    filled in by the client from the call (``session_id`` when it is known, e.g. by the
    handle that created the chat).
    """

    agent_chat_id: str = ""
    agent_id: str = ""
    session_id: str | None = None
    status: str | None = None
    finish_reason: str | None = None
    content: tuple[AgentChatPart, ...] = ()

    @property
    def id(self) -> str:
        """The chat id (``agent_chat_id``)."""
        return self.agent_chat_id

    @property
    def text(self) -> str:
        """The reply's text: the text of its parts, joined by blank lines."""
        return "\n\n".join(part.text for part in self.content if part.text)

    @property
    def artifact_ids(self) -> tuple[str, ...]:
        """The artifacts the reply refers to, in order."""
        return tuple(p.agent_artifact_id for p in self.content if p.agent_artifact_id)

    def __repr__(self) -> str:
        text = self.text
        snippet = text if len(text) <= 40 else text[:37] + "..."
        parts = [f"id={self.agent_chat_id!r}", f"status={self.status!r}"]
        if self.finish_reason:
            parts.append(f"finish_reason={self.finish_reason!r}")
        parts.append(f"text={snippet!r}")
        return f"AgentChat({', '.join(parts)})"


@attrs.frozen
class AgentArtifact:
    """Something an agent made, handed out as a URL (whether it expires is not documented)."""

    artifact_id: str | None = None
    name: str | None = None
    url: str | None = None

    @property
    def id(self) -> str | None:
        """The artifact id (``artifact_id``)."""
        return self.artifact_id


@attrs.frozen(repr=False)
class AgentChatEvent:
    """One step of a streamed chat, as ``client.agents.chats.stream()`` and
    ``AgentChatHandle.stream()`` yield it.

    ``source="sse"``: a Server-Sent Event as the service sent it: ``event`` (its type,
    ``"message"`` by default), ``raw`` (its data), ``data`` (the data decoded as JSON when it is
    JSON, else the raw text) and ``id`` (the last event id). ``source="poll"``: a new state of
    the chat, read with "get chat" (``chat``; ``event`` is ``"chat"``, ``data`` the same
    :class:`AgentChat`).

    ``text`` is what the event adds to the reply's text (``""`` when nothing). A polled event
    whose text is not a continuation of what came before (the service rewrote it) has
    ``rewrite=True`` and holds the whole new text.
    """

    source: Literal["sse", "poll"]
    event: str
    data: Any = None
    raw: str = ""
    text: str = ""
    id: str | None = None
    rewrite: bool = False
    chat: AgentChat | None = None

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        extra = " rewrite" if self.rewrite else ""
        return f"AgentChatEvent({self.source} {self.event!r} text={text!r}{extra})"


# -- decoding -----------------------------------------------------------------------------


def _parts(cls: type[Any], *, one_object: bool) -> Any:
    """A hook for ``tuple[cls, ...]``: a list of objects; ``null`` is empty; with
    ``one_object`` a single object is a one-item tuple."""

    def structure(value: Any, _: type) -> tuple[Any, ...]:
        if value is None:
            return ()
        if one_object and isinstance(value, Mapping):
            return (converter.structure(value, cls),) if value else ()
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        return tuple(converter.structure(item, cls) for item in value)

    return structure


def _register_hooks() -> None:
    # The agent models' own list types get their own hooks on the package's one converter.
    turns, parts = tuple[AgentChatTurn, ...], tuple[AgentChatPart, ...]
    converter.register_structure_hook_func(
        lambda t: t == turns, _parts(AgentChatTurn, one_object=True)
    )
    converter.register_structure_hook_func(
        lambda t: t == parts, _parts(AgentChatPart, one_object=False)
    )


_register_hooks()
