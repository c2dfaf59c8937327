"""The fake's in-memory store: every session, message and run by id, and new ids for them.

The records themselves (and how a run progresses) are in ``_state``; this module only keeps
them findable, counts what the API created, and deletes a session with everything in it.
"""

from __future__ import annotations

import itertools
import random

from ._state import ID_ALPHABET, MessageRecord, RunRecord, SessionRecord

__all__ = ["Store"]


class Store:
    """All records of one fake, indexed by id."""

    def __init__(self) -> None:
        #: Sessions that exist, oldest first.
        self.sessions: dict[str, SessionRecord] = {}
        self.runs: dict[str, RunRecord] = {}
        #: User messages by id.
        self.messages: dict[str, MessageRecord] = {}
        #: Runs by the id of their answer message.
        self.answers: dict[str, RunRecord] = {}
        #: User messages by ``(session id, idempotent_id)``.
        self.dedup: dict[tuple[str, str], MessageRecord] = {}
        self.created_sessions = 0
        self.created_runs = 0
        self.created_messages = 0
        self._taken_ids: set[str] = set()
        self._id_rng = random.Random()
        self._seq = itertools.count()

    def new_id(self, prefix: str) -> str:
        """Return an id never handed out before, such as ``"run_" + 13 characters``."""
        while True:
            candidate = prefix + "".join(self._id_rng.choices(ID_ALPHABET, k=13))
            if candidate not in self._taken_ids:
                self._taken_ids.add(candidate)
                return candidate

    def next_seq(self) -> int:
        """Return the next number of the store-wide sequence (orders records made at once)."""
        return next(self._seq)

    def add_session(self, session: SessionRecord) -> None:
        """Keep a session created through the API."""
        self.sessions[session.id] = session
        self.created_sessions += 1

    def add_message(self, session: SessionRecord, message: MessageRecord) -> None:
        """Keep a user message sent to ``session`` through the API."""
        session.messages.append(message)
        self.messages[message.id] = message
        self.dedup[(session.id, message.idempotent_id)] = message
        self.created_messages += 1

    def add_run(self, session: SessionRecord, run: RunRecord) -> None:
        """Keep a run created in ``session`` through the API."""
        session.runs.append(run)
        self.runs[run.id] = run
        self.answers[run.answer_message_id] = run
        self.created_runs += 1

    def delete_session(self, session: SessionRecord) -> None:
        """Forget ``session`` with its messages, runs and their answers."""
        del self.sessions[session.id]
        for message in session.messages:
            self.messages.pop(message.id, None)
            self.dedup.pop((session.id, message.idempotent_id), None)
        for run in session.runs:
            self.runs.pop(run.id, None)
            self.answers.pop(run.answer_message_id, None)
