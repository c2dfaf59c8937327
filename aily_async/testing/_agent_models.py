"""Public value types of the fake's Agent API: how a chat behaves (:class:`ChatPlan`), what a
chat script sees (:class:`ChatRequest`) and the attachments received."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import attrs

from ._models import _non_negative

__all__ = ["ChatPlan", "ChatRequest", "ChatScript", "RecordedAttachment"]

#: The chat statuses the fake uses while a chat is going (the service documents none).
ACTIVE_CHAT_STATUSES = frozenset({"QUEUED", "IN_PROGRESS"})


def _optional_count(_: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _final(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value or value in ACTIVE_CHAT_STATUSES:
        raise ValueError(f"{attribute.name} must be a final chat status, got {value!r}")


@attrs.frozen(kw_only=True)
class ChatPlan:
    """How one agent chat behaves over time, decided when it is created.

    The service documents no status or finish reason, so these are the fake's own: a chat is
    ``QUEUED`` for ``queued`` seconds, then ``IN_PROGRESS`` for ``duration`` seconds while its
    reply is written (a "get chat" shows the text written so far, with ``finish_reason``
    ``""``), then ends with ``outcome`` and ``finish_reason``. The reply is ``answer`` (default:
    ``"Echo: "`` plus the user's text) followed by one part per ``artifacts`` entry
    (``(name, artifact_type)``, fetchable with "get artifact").

    With ``stream: true`` the fake answers ``text/event-stream`` (unless ``sse=False``: then
    the plain JSON answer of "create chat"). The events are the fake's own format, not the
    service's (which is not documented): ``chat.created`` (the ids), ``chat.delta`` (the reply
    in ``chunks`` pieces, each ``{"text": ...}``, spread over the writing time), one
    ``chat.artifact`` per artifact, then ``chat.completed`` (``status``, ``finish_reason``);
    data is JSON written over several ``data:`` lines, and a ``:`` comment comes first. Test
    hooks: ``drop_after=N`` closes the connection after N events (the chat goes on),
    ``stall_after=N`` stops sending after N events and keeps the connection open until the
    client leaves.
    """

    queued: float = attrs.field(default=0.05, validator=_non_negative)
    duration: float = attrs.field(default=0.3, validator=_non_negative)
    outcome: str = attrs.field(default="COMPLETED", validator=_final)
    finish_reason: str = "stop"
    answer: str | None = None
    artifacts: tuple[tuple[str, str], ...] = ()
    sse: bool = True
    chunks: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    drop_after: int | None = attrs.field(default=None, validator=_optional_count)
    stall_after: int | None = attrs.field(default=None, validator=_optional_count)


@attrs.frozen(kw_only=True)
class ChatRequest:
    """What a ``chat_script`` sees when a chat is created."""

    agent_id: str
    session_id: str
    text: str
    attachment_ids: tuple[str, ...]
    stream: bool


#: Plans each agent chat from its request.
ChatScript: TypeAlias = Callable[[ChatRequest], ChatPlan]


@attrs.frozen(kw_only=True)
class RecordedAttachment:
    """An attachment the fake received: the multipart fields as sent (``data`` is the file's
    bytes, ``None`` without a file part)."""

    id: str
    agent_id: str
    type: str | None
    doc_url: str | None
    filename: str | None
    content_type: str | None
    data: bytes | None
