"""``AgentChatHandle``: an awaitable view of one agent chat, kept fresh by the shared poll loop.

The handle is :class:`RunHandle`'s twin over the same :class:`~aily_async._poller.Poller`: any
number of awaiters, ``wait()`` calls and ``watch()``/``stream()`` loops share one poll loop of
"get chat", which goes through the limiter like every call and ends with
:class:`AilyClosedError` when the client closes.

When a chat has ended is not documented (the SDK lists no status value), so a chat counts as
finished once it has a non-empty ``finish_reason``, or a status in the handle's terminal set
(:data:`AGENT_CHAT_TERMINAL_STATUSES` plus what the caller adds; compared without regard to
case). An unknown status is taken as still going, so every wait is bounded: by its own
``timeout``, and always by the handle's ``max_wait`` (seconds from the handle's creation).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Coroutine, Generator, Iterable
from typing import Any, Protocol

from ._agent_models import AGENT_CHAT_TERMINAL_STATUSES, AgentChat, AgentChatEvent
from ._errors import AgentChatWaitTimeout
from ._poller import Guard, Poller
from ._polling import DurationStats, PollBudget, PollPolicy

__all__ = ["AgentChatCalls", "AgentChatHandle", "chat_events", "terminal_set"]


class AgentChatCalls(Protocol):
    """The call a handle makes (``client.agents.chats`` is one)."""

    async def get(
        self, agent_id: str, chat_id: str, *, session_id: str | None = None
    ) -> AgentChat:
        """Fetch the chat once."""
        ...


def terminal_set(extra: Iterable[str] | None, base: Iterable[str]) -> frozenset[str]:
    """``base`` plus ``extra``, upper-cased (statuses are compared without regard to case)."""
    statuses = [*base, *(extra or ())]
    if any(not isinstance(s, str) for s in statuses):
        raise TypeError("terminal statuses must be strings")
    return frozenset(s.upper() for s in statuses)


def _changed(old: AgentChat, new: AgentChat) -> bool:
    return (
        old.status != new.status
        or old.finish_reason != new.finish_reason
        or old.content != new.content
    )


async def chat_events(
    states: AsyncIterator[AgentChat], written: str = ""
) -> AsyncIterator[AgentChatEvent]:
    """Each state of ``states`` as a polled :class:`AgentChatEvent`, with the text it adds
    to ``written`` (the text already handed out): the rest of the text when it continues
    ``written``; nothing when it is a beginning of ``written`` (a state behind what a stream
    already gave); else all of it, as a rewrite."""
    async for chat in states:
        text, delta, rewrite = chat.text, "", False
        if text.startswith(written):
            delta, written = text[len(written) :], text
        elif not written.startswith(text):
            delta, written, rewrite = text, text, True
        yield AgentChatEvent(
            source="poll", event="chat", data=chat, text=delta, rewrite=rewrite, chat=chat
        )


class AgentChatHandle:
    """An agent chat being followed. ``await handle`` returns the final :class:`AgentChat`.

    Polls follow the client's :class:`PollPolicy` (the first poll learnt from the chats this
    client saw end) and are shared by every waiter. See the module docstring for when a chat
    counts as finished and for ``max_wait``.
    """

    __slots__ = ("_calls", "_max_wait", "_poller", "_stats", "_terminal")

    def __init__(
        self,
        chat: AgentChat,
        *,
        calls: AgentChatCalls,
        guard: Guard,
        policy: PollPolicy,
        stats: DurationStats,
        max_wait: float,
        terminal_statuses: Iterable[str] = AGENT_CHAT_TERMINAL_STATUSES,
        budget: PollBudget | None = None,
    ) -> None:
        if not max_wait > 0:
            raise ValueError(f"max_wait must be > 0, got {max_wait!r}")
        self._calls = calls
        self._stats = stats
        self._max_wait = float(max_wait)
        self._terminal = terminal_set(None, terminal_statuses)
        self._poller: Poller[AgentChat] = Poller(
            chat,
            call="agents.chats.wait",
            guard=guard,
            fetch=functools.partial(
                calls.get, chat.agent_id, chat.agent_chat_id, session_id=chat.session_id
            ),
            fetch_call="agents.chats.get",
            ended=self.is_finished,
            changed=_changed,
            expired=self._expired,
            policy=policy,
            stats=stats,
            on_change=self._on_change,
            budget=budget,
        )

    # -- state ----------------------------------------------------------------------------

    @property
    def chat(self) -> AgentChat:
        """The latest state of the chat seen."""
        return self._poller.state

    @property
    def id(self) -> str:
        """The chat id (``agent_chat_id``)."""
        return self._poller.state.agent_chat_id

    @property
    def agent_id(self) -> str:
        """The agent the chat belongs to."""
        return self._poller.state.agent_id

    @property
    def session_id(self) -> str | None:
        """The chat session the chat belongs to (as the create answered)."""
        return self._poller.state.session_id

    @property
    def done(self) -> bool:
        """True once the chat is seen finished."""
        return self._poller.done

    @property
    def polls(self) -> int:
        """How many GETs this handle has spent polling."""
        return self._poller.polls

    @property
    def max_wait(self) -> float:
        """Seconds from the handle's creation after which every wait gives up."""
        return self._max_wait

    @property
    def terminal_statuses(self) -> frozenset[str]:
        """The statuses (upper-cased) that end the chat besides a ``finish_reason``."""
        return self._terminal

    def is_finished(self, chat: AgentChat) -> bool:
        """True when ``chat`` has a ``finish_reason`` or a terminal status."""
        return bool(chat.finish_reason) or (chat.status or "").upper() in self._terminal

    def __repr__(self) -> str:
        chat = self._poller.state
        loop = self._poller.describe()
        return f"<AgentChatHandle {chat.agent_chat_id} {chat.status or '-'}{loop}>"

    def _on_change(self, chat: AgentChat) -> None:
        if self.is_finished(chat):
            self._stats.add(self._poller.age())

    def _expired(self, chat: AgentChat, timeout: float) -> BaseException:
        return AgentChatWaitTimeout(
            f"chat {chat.agent_chat_id} not finished after {timeout:g}s "
            f"(status {chat.status!r}; every wait ends {self._max_wait:g}s after the chat was "
            "created, max_wait); it goes on server-side: fetch it with agents.chats.get",
            call="agents.chats.wait",
            chat=chat,
        )

    def _bounded(self, timeout: float | None) -> float:
        """``timeout``, cut to what is left of ``max_wait``."""
        left = max(0.0, self._max_wait - self._poller.age())
        return left if timeout is None else min(timeout, left)

    # -- waiting --------------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, AgentChat]:
        return self._poller.wait(self._bounded(None)).__await__()

    def wait(self, timeout: float | None = None) -> Coroutine[Any, Any, AgentChat]:
        """The final chat (a coroutine: ``await handle.wait()``). After ``timeout`` seconds
        (at most what is left of ``max_wait``) raise :class:`AgentChatWaitTimeout`."""
        return self._poller.wait(self._bounded(timeout))

    def watch(self) -> AsyncIterator[AgentChat]:
        """Yield the chat now and at each change (status, finish reason or content), the last
        one finished; raise :class:`AgentChatWaitTimeout` once ``max_wait`` has passed."""
        return self._poller.watch(self._bounded(None))

    def stream(self) -> AsyncIterator[AgentChatEvent]:
        """Yield the chat's progress as polled :class:`AgentChatEvent` values (one per change
        seen by :meth:`watch`), each with the text it adds to the reply; joined, the texts
        make the final ``chat.text`` (a rewrite holds the whole new text)."""
        return chat_events(self.watch())

    async def refresh(self) -> AgentChat:
        """Fetch the chat once and return it."""
        state = self._poller.state
        chat = await self._calls.get(
            state.agent_id, state.agent_chat_id, session_id=state.session_id
        )
        self._poller.update(chat)
        return chat
