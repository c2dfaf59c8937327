"""Endpoint handlers of sessions and their messages: create, get, update, delete; send, list.

A session's messages are the users' messages plus the answers of its runs; answers are not
stored but derived from each run's progress whenever they are read.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ._clock import Clock
from ._context import Ctx, Handler, path_id, session_of
from ._paging import Entry, paged
from ._state import (
    MESSAGE_ID_RE,
    RUN_ID_RE,
    SESSION_ID_RE,
    MessageRecord,
    MsFormatter,
    SessionRecord,
    answer_state,
    answer_wire,
    message_wire,
    session_wire,
)
from ._store import Store
from ._wire import invalid, not_found, str_field, str_list

__all__ = ["SessionHandlers", "message_entries"]

#: How long the server remembers an ``idempotent_id`` (72 hours, as documented).
_DEDUP_SECONDS = 72 * 3600.0


def message_entries(
    session: SessionRecord, run_id: str | None, with_partial: bool, now: float, ms: MsFormatter
) -> list[Entry]:
    """List a session's messages at ``now``, oldest first (only one run's answer with ``run_id``).

    Answers still being written are included (partly written) only with ``with_partial``.
    """
    entries: list[Entry] = []
    if not run_id:
        for message in session.messages:
            entries.append(((message.created, message.seq), partial(message_wire, message, ms)))
    for run in session.runs:
        if run_id and run.id != run_id:
            continue
        state = answer_state(run, now, partial=with_partial)
        if state is not None:
            entries.append(((state[0], run.answer_seq), partial(answer_wire, run, state, ms)))
    entries.sort(key=lambda entry: entry[0])
    return entries


class SessionHandlers:
    """Handlers of the ``sessions.*`` and ``messages.*`` routes, over one store."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def routes(self) -> dict[str, Handler]:
        """Map each route key this class serves to its handler."""
        return {
            "sessions.create": self.create_session,
            "sessions.get": self.get_session,
            "sessions.update": self.update_session,
            "sessions.delete": self.delete_session,
            "messages.create": self.create_message,
            "messages.get": self.get_message,
            "messages.list": self.list_messages,
        }

    # ------------------------------------------------------------------ sessions

    async def create_session(self, ctx: Ctx) -> dict[str, Any]:
        """``POST /sessions``."""
        channel_context = str_field(ctx.body, "channel_context") or ""
        metadata = str_field(ctx.body, "metadata") or ""
        session = SessionRecord(
            id=self._store.new_id("session_"),
            created=ctx.now,
            modified=ctx.now,
            created_by=ctx.biz_user_id or ctx.principal,
            channel_context=channel_context,
            metadata=metadata,
        )
        self._store.add_session(session)
        return {"session": session_wire(session, self._clock.ms)}

    async def get_session(self, ctx: Ctx) -> dict[str, Any]:
        """``GET /sessions/{id}``."""
        return {"session": session_wire(session_of(ctx, self._store), self._clock.ms)}

    async def update_session(self, ctx: Ctx) -> dict[str, Any]:
        """``PUT /sessions/{id}``: replace the fields given."""
        session = session_of(ctx, self._store)
        channel_context = str_field(ctx.body, "channel_context")
        metadata = str_field(ctx.body, "metadata")
        if channel_context is not None:
            session.channel_context = channel_context
        if metadata is not None:
            session.metadata = metadata
        session.modified = ctx.now
        return {"session": session_wire(session, self._clock.ms)}

    async def delete_session(self, ctx: Ctx) -> dict[str, Any]:
        """``DELETE /sessions/{id}``, with its messages and runs."""
        self._store.delete_session(session_of(ctx, self._store))
        return {}

    # ------------------------------------------------------------------ messages

    async def create_message(self, ctx: Ctx) -> dict[str, Any]:
        """``POST /sessions/{id}/messages``, deduplicated by ``idempotent_id`` for 72 hours.

        A run waiting for the user (``REQUIRES_MESSAGE``) goes on with this message.
        """
        path_id(ctx, "aily_session_id", SESSION_ID_RE)
        body = ctx.body
        idempotent_id = str_field(body, "idempotent_id", required=True, max_len=64)
        content_type = str_field(body, "content_type", required=True, max_len=64)
        content = str_field(body, "content", max_len=61440)
        if content is None:
            raise invalid("content", "is required")
        files = str_list(body, "file_ids", label="file_ids", max_items=32)
        quote = str_field(body, "quote_message_id") or ""
        if quote and not MESSAGE_ID_RE.fullmatch(quote):
            raise invalid("quote_message_id", f"must match {MESSAGE_ID_RE.pattern}")
        mentions = body.get("mentions") or []
        if not isinstance(mentions, list) or not all(isinstance(m, dict) for m in mentions):
            raise invalid("mentions", "must be a list of objects")
        session = session_of(ctx, self._store)
        assert idempotent_id is not None
        assert content_type is not None

        existing = self._store.dedup.get((session.id, idempotent_id))
        if existing is not None and ctx.now - existing.created < _DEDUP_SECONDS:
            return {"message": message_wire(existing, self._clock.ms)}

        message = MessageRecord(
            id=self._store.new_id("message_"),
            session_id=session.id,
            content_type=content_type,
            content=content,
            files=tuple(files),
            quote_message_id=quote,
            mentions=mentions,
            sender={
                "entity_id": ctx.biz_user_id or ctx.principal,
                "identity_provider": "FEISHU",
                "sender_type": "USER",
                "aily_id": "",
            },
            created=ctx.now,
            seq=self._store.next_seq(),
            idempotent_id=idempotent_id,
        )
        self._store.add_message(session, message)
        if session.runs:
            run = session.runs[-1]
            if run.view(ctx.now).status == "REQUIRES_MESSAGE":
                run.resumed_at = ctx.now
                if run.echo_reply:
                    run.answer = f"Echo: {content}"
        return {"message": message_wire(message, self._clock.ms)}

    async def get_message(self, ctx: Ctx) -> dict[str, Any]:
        """``GET /sessions/{id}/messages/{id}``: a user message or a run's (partial) answer."""
        session = session_of(ctx, self._store)
        message_id = path_id(ctx, "aily_message_id", MESSAGE_ID_RE)
        message = self._store.messages.get(message_id)
        if message is not None and message.session_id == session.id:
            return {"message": message_wire(message, self._clock.ms)}
        run = self._store.answers.get(message_id)
        if run is not None and run.session_id == session.id:
            state = answer_state(run, ctx.now, partial=True)
            if state is not None:
                return {"message": answer_wire(run, state, self._clock.ms)}
        raise not_found("aily_message_id", f"message {message_id}")

    async def list_messages(self, ctx: Ctx) -> dict[str, Any]:
        """``GET /sessions/{id}/messages``, oldest first, optionally one run's only."""
        session = session_of(ctx, self._store)
        query = ctx.request.query
        run_id = query.get("run_id", "")
        if run_id and not RUN_ID_RE.fullmatch(run_id):
            raise invalid("run_id", f"must match {RUN_ID_RE.pattern}")
        partial_raw = query.get("with_partial_message", "false").lower()
        if partial_raw not in ("true", "false", "1", "0", ""):
            raise invalid("with_partial_message", "must be true or false")
        with_partial = partial_raw in ("true", "1")
        entries = message_entries(
            session, run_id or None, with_partial, self._clock.now(), self._clock.ms
        )
        return paged(query, "messages", entries)
