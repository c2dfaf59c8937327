"""In-memory records of the fake: sessions, messages and runs, with lazy run progression.

Nothing here runs in the background: a run's status, timestamps and answer are computed from
its creation time and plan whenever they are read, so idle runs cost nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs

from ._models import RunPlan

__all__ = [
    "ID_ALPHABET",
    "MESSAGE_ID_RE",
    "PLACEHOLDER_SHARE",
    "RUN_ID_RE",
    "SESSION_ID_RE",
    "MessageRecord",
    "RunRecord",
    "RunView",
    "SessionRecord",
    "answer_state",
    "answer_wire",
    "message_wire",
    "partial_text",
    "run_wire",
    "session_wire",
]

#: Characters of generated ids (the id regexes leave out ``i``, ``l`` and ``o``).
ID_ALPHABET = "0123456789abcdefghjkmnpqrstuvwxyz"
SESSION_ID_RE = re.compile(r"session_[0-9a-hjkmnp-z]{1,24}")
RUN_ID_RE = re.compile(r"run_[0-9a-hjkmnp-z]{1,28}")
MESSAGE_ID_RE = re.compile(r"message_[0-9a-hjkmnp-z]{1,24}")

#: Timestamp sent for a run that has not started or ended yet.
UNSET_MS = "0"

#: Share of the writing time during which a run's partial answer shows its placeholder.
PLACEHOLDER_SHARE = 1 / 3

MsFormatter = Callable[[float], str]


@attrs.define(eq=False)
class MessageRecord:
    """A message a user sent (assistant answers are derived from their run instead)."""

    id: str
    session_id: str
    content_type: str
    content: str
    files: tuple[str, ...]
    quote_message_id: str
    mentions: list[Any]
    sender: dict[str, str]
    created: float
    seq: int
    idempotent_id: str


@attrs.frozen
class RunView:
    """A run as seen at one instant."""

    status: str
    started: float | None
    ended: float | None
    #: When the answer message began to be written, or ``None`` if there is none (yet).
    answer_created: float | None
    #: How much of the answer is written, from 0 to 1.
    answer_fraction: float


@attrs.define(eq=False)
class RunRecord:
    """A run and what is needed to tell its state at any later time."""

    id: str
    session_id: str
    app_id: str
    skill_id: str | None
    skill_input: str | None
    metadata: str | None
    plan: RunPlan
    answer: str
    answer_message_id: str
    created: float
    seq: int
    answer_seq: int
    #: Whether the answer should echo the user's reply once the run resumes.
    echo_reply: bool = False
    cancelled_at: float | None = None
    resumed_at: float | None = None

    def view(self, now: float) -> RunView:
        """Compute the run's status and answer progress at ``now``."""
        plan = self.plan
        start = self.created + plan.queued
        if self.cancelled_at is not None:
            cancelled = self.cancelled_at
            return RunView("CANCELLED", start if start <= cancelled else None, cancelled, None, 0)
        if now < start:
            return RunView("QUEUED", None, None, None, 0)
        if plan.requires_message:
            half = plan.duration / 2
            if now < start + half:
                return RunView("IN_PROGRESS", start, None, None, 0)
            if self.resumed_at is None:
                return RunView("REQUIRES_MESSAGE", start, None, None, 0)
            write_from, write_for = self.resumed_at, half
        else:
            write_from, write_for = start, plan.duration
        end = write_from + write_for
        if now < end:
            return RunView("IN_PROGRESS", start, None, write_from, (now - write_from) / write_for)
        if plan.outcome == "COMPLETED":
            return RunView("COMPLETED", start, end, write_from, 1)
        return RunView(plan.outcome, start, end, None, 0)


@attrs.define(eq=False)
class SessionRecord:
    """A session with its user messages and runs, both oldest first."""

    id: str
    created: float
    modified: float
    created_by: str
    channel_context: str
    metadata: str
    messages: list[MessageRecord] = attrs.Factory(list)
    runs: list[RunRecord] = attrs.Factory(list)


def session_wire(session: SessionRecord, ms: MsFormatter) -> dict[str, Any]:
    """Render a session as the API sends it."""
    return {
        "id": session.id,
        "created_at": ms(session.created),
        "modified_at": ms(session.modified),
        "created_by": session.created_by,
        "channel_context": session.channel_context,
        "metadata": session.metadata,
    }


def run_wire(run: RunRecord, now: float, ms: MsFormatter) -> dict[str, Any]:
    """Render a run as the API sends it at ``now``."""
    view = run.view(now)
    wire: dict[str, Any] = {
        "id": run.id,
        "created_at": ms(run.created),
        "app_id": run.app_id,
        "session_id": run.session_id,
        "status": view.status,
        "started_at": UNSET_MS if view.started is None else ms(view.started),
        "ended_at": UNSET_MS if view.ended is None else ms(view.ended),
        "metadata": run.metadata or "",
    }
    if view.status == "FAILED":
        code, message = run.plan.error
        wire["error"] = {"code": code, "message": message}
    return wire


def _files_wire(files: tuple[str, ...], created_at: str) -> list[dict[str, str]]:
    return [
        {"id": file_id, "mime_type": "", "file_name": "", "metadata": "", "created_at": created_at}
        for file_id in files
    ]


def message_wire(message: MessageRecord, ms: MsFormatter) -> dict[str, Any]:
    """Render a user message as the API sends it."""
    created_at = ms(message.created)
    return {
        "id": message.id,
        "session_id": message.session_id,
        "run_id": "",
        "content_type": message.content_type,
        "content": message.content,
        "plain_text": message.content,
        "files": _files_wire(message.files, created_at),
        "quote_message_id": message.quote_message_id,
        "sender": dict(message.sender),
        "mentions": list(message.mentions),
        "created_at": created_at,
        "status": "COMPLETED",
    }


def answer_state(run: RunRecord, now: float, *, partial: bool) -> tuple[float, str, str] | None:
    """Return ``(created, content, status)`` of a run's answer at ``now``, if visible.

    A finished answer exists once the run is ``COMPLETED``; while the run is writing it, the
    answer is visible only with ``partial`` and holds what :func:`partial_text` gives.
    """
    view = run.view(now)
    if view.answer_created is None:
        return None
    if view.status == "COMPLETED":
        return view.answer_created, run.answer, "COMPLETED"
    if not partial:
        return None
    return view.answer_created, partial_text(run, view.answer_fraction), "IN_PROGRESS"


def partial_text(run: RunRecord, fraction: float) -> str:
    """Return the text of a run's answer once ``fraction`` (0 to 1) of its writing time passed.

    With a placeholder in the plan, the placeholder stands for the first
    :data:`PLACEHOLDER_SHARE` of the time; the answer then grows from its start (at least one
    character of it) and replaces the placeholder. Without one, the answer grows from empty.
    """
    answer, placeholder = run.answer, run.plan.placeholder
    if placeholder is None:
        return answer[: int(len(answer) * fraction)]
    if fraction < PLACEHOLDER_SHARE:
        return placeholder
    rest = (fraction - PLACEHOLDER_SHARE) / (1 - PLACEHOLDER_SHARE)
    return answer[: max(1, int(len(answer) * rest))]


def answer_wire(run: RunRecord, state: tuple[float, str, str], ms: MsFormatter) -> dict[str, Any]:
    """Render a run's answer (in the state ``answer_state`` gave) as the API sends it."""
    created, content, status = state
    return {
        "id": run.answer_message_id,
        "session_id": run.session_id,
        "run_id": run.id,
        "content_type": "MDX",
        "content": content,
        "plain_text": content,
        "files": [],
        "quote_message_id": "",
        "sender": {
            "entity_id": run.app_id,
            "identity_provider": "AILY",
            "sender_type": "ASSISTANT",
            "aily_id": run.app_id,
        },
        "mentions": [],
        "created_at": ms(created),
        "status": status,
    }
