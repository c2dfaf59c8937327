"""AgentChatHandle and AgentChatStream against FakeAily on virtual time: waiting, deadlines,
watching, sharing, cancelling, closing; the event stream, its drop, its stall, the JSON
fallback, and a wire that cannot stream.

As in ``test_runhandle``, the fake's chat clock and the client's timers read one virtual clock
(``_vloop``), so minutes of polling take milliseconds and the fake's log gives exact times.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import pytest
from _handles import FIXED, aily, client_tasks
from _vloop import virtual_time

from aily_async import (
    AgentChat,
    AgentChatHandle,
    AgentChatWaitTimeout,
    AilyClient,
    AilyClosedError,
    AilyConnectionError,
    AilyResponseError,
    AilyTimeoutError,
    Answer,
    Limits,
    PollPolicy,
    RetryPolicy,
)
from aily_async._wire import AiohttpWire
from aily_async.testing import ChatPlan, FakeAily

AGENT = "agent_7a1c"


async def start(client: AilyClient, text: str = "hello", **options: Any) -> AgentChatHandle:
    """A new chat with the agent."""
    return await client.agents.chats.create(AGENT, text, **options)


def gets(fake: FakeAily, handle: AgentChatHandle) -> list[float]:
    """Arrival times of the GETs of ``handle``'s chat, as the fake logged them."""
    return sorted(
        r.time
        for r in fake.requests
        if r.route == "agents.chats.get" and r.path.endswith(f"/chats/{handle.id}")
    )


# -- awaiting ---------------------------------------------------------------------------------


@virtual_time
async def test_await_returns_the_finished_chat() -> None:
    """``await handle`` polls until the chat has a finish reason and returns it; awaiting again
    sends nothing."""
    plan = ChatPlan(queued=0.5, duration=3.0, answer="All done.")
    async with aily(chat_script=plan) as (fake, client):
        handle = await start(client)
        assert not handle.done
        assert handle.chat.status is None
        chat = await handle
        assert (chat.status, chat.finish_reason, chat.text) == ("COMPLETED", "stop", "All done.")
        assert handle.done
        assert handle.chat is chat
        assert handle.polls == len(gets(fake, handle)) >= 2
        assert await handle is chat
        assert handle.polls == len(gets(fake, handle))


@virtual_time
async def test_a_terminal_status_alone_ends_the_wait() -> None:
    """A chat with no finish reason ends on a status of the default terminal set (any case)."""
    async with aily(chat_script=ChatPlan(outcome="failed", finish_reason="")) as (_, client):
        chat = await (await start(client))
        assert (chat.status, chat.finish_reason) == ("failed", "")


@virtual_time
async def test_an_unknown_status_polls_until_max_wait() -> None:
    """A status the client does not know and no finish reason: polling goes on, bounded by
    ``max_wait``, which raises AgentChatWaitTimeout (a TimeoutError) with the last state."""
    plan = ChatPlan(outcome="AWAITING_REVIEW", finish_reason="", duration=1.0)
    async with aily(chat_script=plan) as (fake, client):
        loop = asyncio.get_running_loop()
        handle = await start(client, max_wait=40.0)
        began = loop.time()
        with pytest.raises(AgentChatWaitTimeout, match="max_wait") as caught:
            await handle
        assert isinstance(caught.value, TimeoutError)
        assert loop.time() - began == pytest.approx(40.0, abs=0.1)
        assert isinstance(caught.value.chat, AgentChat)
        assert caught.value.chat.status == "AWAITING_REVIEW"
        polled = len(gets(fake, handle))
        assert polled >= 3
        with pytest.raises(AgentChatWaitTimeout):  # max_wait is spent: at once, no request
            await handle.wait(10.0)
        assert len(gets(fake, handle)) == polled


@virtual_time
async def test_terminal_statuses_can_be_extended_per_chat_and_per_client() -> None:
    """Statuses added per chat (``terminal_statuses=``) or to the client's set end the wait."""
    plan = ChatPlan(outcome="AWAITING_REVIEW", finish_reason="", duration=1.0)
    async with aily(chat_script=plan) as (_, client):
        one = await start(client, terminal_statuses=["awaiting_review"])
        assert (await one).status == "AWAITING_REVIEW"
        assert "AWAITING_REVIEW" in one.terminal_statuses
        client.agents.chats.terminal_statuses |= {"AWAITING_REVIEW"}
        two = await start(client)
        assert (await two.wait(30.0)).status == "AWAITING_REVIEW"


@virtual_time
async def test_wait_timeout_raises_and_waiting_again_resumes() -> None:
    """``wait(timeout)`` raises on time, polling stops while nobody waits, the chat goes on,
    and waiting again resumes."""
    async with aily(chat_script=ChatPlan(duration=20.0)) as (fake, client):
        loop = asyncio.get_running_loop()
        handle = await start(client)
        began = loop.time()
        with pytest.raises(AgentChatWaitTimeout) as caught:
            await handle.wait(timeout=3.0)
        assert loop.time() - began == pytest.approx(3.0, abs=1e-3)
        assert caught.value.chat is handle.chat
        polled = len(gets(fake, handle))
        await asyncio.sleep(5.0)
        assert len(gets(fake, handle)) == polled
        assert not client_tasks()
        assert (await handle.wait(60.0)).status == "COMPLETED"


@virtual_time
async def test_watch_yields_each_change_and_stream_adds_up_to_the_text() -> None:
    """``watch()`` yields the chat at each change (status, growing content), the last one
    finished; ``stream()`` yields polled events whose texts join into the reply."""
    answer = " ".join(f"word{i}" for i in range(30))
    plan = ChatPlan(queued=1.0, duration=10.0, answer=answer)
    async with aily(chat_script=plan) as (_, client):
        handle = await start(client, poll=FIXED)
        seen = [chat async for chat in handle.watch()]
        statuses = [c.status for c in seen]
        assert statuses[0] is None
        assert statuses[-1] == "COMPLETED"
        assert "QUEUED" in statuses
        assert statuses.count("IN_PROGRESS") >= 3
        assert all(a != b for a, b in itertools.pairwise(seen))
        other = await start(client, poll=FIXED)
        events = [event async for event in other.stream()]
        assert all(e.source == "poll" and e.chat is not None for e in events)
        assert not any(e.rewrite for e in events)
        assert "".join(e.text for e in events) == answer
        assert sum(1 for e in events if e.text) >= 3
        assert other.done


@virtual_time
async def test_refresh_fetches_once() -> None:
    """``refresh()`` sends one GET and updates the handle; it starts no polling."""
    async with aily(chat_script=ChatPlan(queued=0.1, duration=5.0)) as (fake, client):
        handle = await start(client)
        await asyncio.sleep(1.0)
        chat = await handle.refresh()
        assert chat.status == "IN_PROGRESS"
        assert handle.chat is chat
        await asyncio.sleep(30.0)
        assert len(gets(fake, handle)) == 1
        assert "idle" in repr(handle)


# -- shared polling, cancellation, closing ------------------------------------------------------


@virtual_time
async def test_five_awaiters_share_one_poll_loop() -> None:
    """Five tasks awaiting one handle cost the GETs of one task awaiting another chat of the
    same length: one GET per poll, whatever the number of waiters."""
    async with aily(chat_script=ChatPlan(duration=12.0)) as (fake, client):
        shared = await start(client, poll=FIXED)
        single = await start(client, poll=FIXED)
        results = await asyncio.gather(
            *(shared.wait() for _ in range(3)), shared, _watch_to_end(shared), single.wait()
        )
        assert len(gets(fake, shared)) == len(gets(fake, single)) == shared.polls >= 3
        assert all(r is results[0] for r in results[:4])


async def _watch_to_end(handle: AgentChatHandle) -> AgentChat:
    last = None
    async for chat in handle.watch():
        last = chat
    assert last is not None
    return last


@virtual_time
async def test_cancelling_the_only_awaiter_stops_polling_at_once() -> None:
    """Cancelling the only task awaiting a handle leaves no task, and no GET arrives after."""
    async with aily(chat_script=ChatPlan(duration=120.0)) as (fake, client):
        loop = asyncio.get_running_loop()
        handle = await start(client)
        waiter = loop.create_task(handle.wait())
        await asyncio.sleep(3.0)
        assert client_tasks()
        waiter.cancel()
        with suppress(asyncio.CancelledError):
            await waiter
        cancelled_at = loop.time()
        await asyncio.sleep(0)
        assert not client_tasks()
        await asyncio.sleep(200.0)
        assert not [t for t in gets(fake, handle) if t > cancelled_at]


@virtual_time
async def test_closing_the_client_ends_pending_waits_promptly() -> None:
    """``client.close()`` ends every pending wait, watch and polled stream with
    AilyClosedError at once and leaves no task."""
    async with aily(chat_script=ChatPlan(duration=500.0)) as (_, client):
        loop = asyncio.get_running_loop()
        one, two = await start(client), await start(client)

        async def consume(events: AsyncIterator[Any]) -> None:
            async for _ in events:
                pass

        pending: list[asyncio.Task[Any]] = [loop.create_task(one.wait()) for _ in range(2)]
        pending.append(loop.create_task(consume(two.watch())))
        pending.append(loop.create_task(consume(two.stream())))
        await asyncio.sleep(5.0)
        closed_at = loop.time()
        await client.close()
        results = await asyncio.gather(*pending, return_exceptions=True)
        assert loop.time() - closed_at < 0.01
        assert all(isinstance(r, AilyClosedError) for r in results), results
        await asyncio.sleep(0)
        assert not client_tasks()
        with pytest.raises(AilyClosedError):
            await one


@virtual_time
async def test_a_passing_poll_failure_does_not_end_the_waits() -> None:
    """Polls failing with 5xx beyond their retries do not end the waits."""
    async with aily(
        chat_script=ChatPlan(duration=5.0), client={"retry": RetryPolicy.no_wait(max_attempts=2)}
    ) as (fake, client):
        handle = await start(client)
        fake.inject("agents.chats.get", status=500, times=4)
        results = await asyncio.gather(handle.wait(), handle.wait())
        assert all(r.status == "COMPLETED" for r in results)
        statuses = [r.status for r in fake.requests if r.route == "agents.chats.get"]
        assert statuses[:4] == [500] * 4
        assert statuses[-1] == 200


@virtual_time
async def test_polls_go_through_the_limiter() -> None:
    """Polls are calls like any other: with a quota of 2 GETs per 10 s, no 10-second window
    holds more than 2, however eagerly the policy would poll."""
    quota = Limits({"agents.chats.get": (2, 10.0)})
    async with aily(chat_script=ChatPlan(duration=40.0), client={"limiter": quota}) as (
        fake,
        client,
    ):
        handle = await start(client, poll_interval=0.1)
        await handle
        times = gets(fake, handle)
        assert len(times) >= 3
        assert all(b - a >= 10.0 - 1e-6 for a, b in zip(times, times[2:], strict=False))


# -- the event stream ----------------------------------------------------------------------------


@virtual_time
async def test_stream_reads_server_sent_events_as_they_come() -> None:
    """``chats.stream`` sends ``stream: true``, reads the event stream as it is written
    (types, ids, JSON data over several lines, a comment skipped) and yields each event with
    its text; the texts join into the reply, the chat's ids and progress are learnt, and no
    GET is needed."""
    answer = "The quick brown fox jumps over the lazy dog."
    plan = ChatPlan(queued=1.0, duration=8.0, answer=answer, chunks=4, artifacts=(("a", "b"),))
    async with aily(chat_script=plan) as (fake, client):
        loop = asyncio.get_running_loop()
        session = await client.agents.sessions.create(AGENT)
        times: list[float] = []
        async with client.agents.chats.stream(AGENT, "fox?", session_id=session.id) as stream:
            events = []
            async for event in stream:
                times.append(loop.time())
                events.append(event)
        assert [e.event for e in events] == [
            "chat.created",
            *["chat.delta"] * 4,
            "chat.artifact",
            "chat.completed",
        ]
        assert [e.id for e in events] == [str(i) for i in range(7)]
        assert all(e.source == "sse" and isinstance(e.data, dict) for e in events)
        assert events[1].raw.count("\n") >= 2  # the data came over several lines
        assert "".join(e.text for e in events) == answer == stream.text
        assert times[-1] - times[1] == pytest.approx(6.0, abs=0.05)  # as written, not at once
        assert stream.chat_id == events[0].data["agent_chat_id"]
        assert stream.session_id == session.id
        assert (stream.status, stream.finish_reason, stream.polling) == ("COMPLETED", "stop", False)
        sent = next(r for r in fake.requests if r.route == "agents.chats.create")
        assert sent.json["stream"] is True
        assert not [r for r in fake.requests if r.route == "agents.chats.get"]
        final = await stream.handle()
        assert final.text == answer
        assert final.finish_reason == "stop"


@virtual_time
async def test_a_plain_json_answer_falls_back_to_polling() -> None:
    """When the service answers ``stream: true`` with plain JSON, the chat is polled and its
    states are yielded with their text."""
    async with aily(chat_script=ChatPlan(sse=False, duration=6.0, answer="polled reply")) as (
        fake,
        client,
    ):
        async with client.agents.chats.stream(AGENT, "hi", poll=FIXED) as stream:
            events = [event async for event in stream]
        assert stream.polling
        assert all(e.source == "poll" for e in events)
        assert "".join(e.text for e in events) == "polled reply" == stream.text
        assert events[-1].chat is not None
        assert events[-1].chat.finish_reason == "stop"
        assert len([r for r in fake.requests if r.route == "agents.chats.get"]) >= 3


@virtual_time
async def test_a_drop_mid_stream_goes_on_by_polling_without_losing_text() -> None:
    """The connection drops after a few events: the chat (named by the first event) is
    followed by polling, and the text adds up to the reply exactly once."""
    answer = "one two three four five six seven eight"
    plan = ChatPlan(duration=8.0, answer=answer, chunks=8, drop_after=3)
    async with aily(chat_script=plan) as (_, client):
        stream = client.agents.chats.stream(AGENT, "count", poll=FIXED)
        events = [event async for event in stream]
        assert [e.source for e in events[:3]] == ["sse"] * 3
        assert events[-1].source == "poll"
        assert stream.polling
        assert "".join(e.text for e in events) == answer == stream.text
        assert stream.finish_reason == "stop"


@virtual_time
async def test_a_drop_before_the_chat_is_named_is_a_connection_error() -> None:
    """A stream that drops before any event named the chat cannot go on: AilyConnectionError
    naming the call."""
    async with aily(chat_script=ChatPlan(drop_after=0)) as (_, client):
        with pytest.raises(AilyConnectionError, match=r"agents\.chats\.create: .*dropped"):
            async for _ in client.agents.chats.stream(AGENT, "hi"):
                pass


@virtual_time
async def test_a_stalled_stream_raises_a_timeout_after_the_read_timeout() -> None:
    """A stream that stops sending (its connection open) raises AilyTimeoutError naming the
    call after ``read_timeout`` seconds of silence, and releases its connection."""
    async with aily(chat_script=ChatPlan(duration=4.0, stall_after=2)) as (_, client):
        loop = asyncio.get_running_loop()
        seen: list[float] = []

        async def read() -> None:
            async for _ in client.agents.chats.stream(AGENT, "hi", read_timeout=7.0):
                seen.append(loop.time())

        with pytest.raises(AilyTimeoutError, match=r"agents\.chats\.create: .*stalled.*7s"):
            await read()
        assert len(seen) == 2
        assert loop.time() - seen[-1] == pytest.approx(7.0, abs=1.0)
        assert isinstance(client.wire, AiohttpWire)
        pool: Any = client.wire.pool
        assert len(pool._acquired) == 0


@virtual_time
async def test_closing_the_client_ends_a_stream_with_closed_error() -> None:
    """``client.close()`` while a stream waits for its next event ends it with
    AilyClosedError at once."""
    async with aily(chat_script=ChatPlan(duration=300.0)) as (_, client):
        loop = asyncio.get_running_loop()

        async def read() -> None:
            async for _ in client.agents.chats.stream(AGENT, "hi"):
                pass

        reader = loop.create_task(read())
        await asyncio.sleep(10.0)
        await client.close()
        with pytest.raises(AilyClosedError):
            await reader


@virtual_time
async def test_leaving_a_stream_early_releases_its_connection() -> None:
    """Breaking out inside ``async with`` closes the response: no connection stays checked
    out, and the stream cannot be resumed."""
    async with aily(chat_script=ChatPlan(duration=300.0)) as (_, client):
        async with client.agents.chats.stream(AGENT, "hi") as stream:
            async for _ in stream:
                break
        assert isinstance(client.wire, AiohttpWire)
        pool: Any = client.wire.pool
        assert len(pool._acquired) == 0
        assert [event async for event in stream] == []


@virtual_time
async def test_a_rate_limited_stream_is_sent_again() -> None:
    """A 429 on the streamed create did not land: it is waited out and sent again, and one
    chat streams."""
    async with aily(chat_script=ChatPlan(duration=2.0)) as (fake, client):
        fake.inject("agents.chats.create", status=429, headers={"x-ogw-ratelimit-reset": "2"})
        events = [e async for e in client.agents.chats.stream(AGENT, "hi")]
        assert events[-1].event == "chat.completed"
        assert fake.agents.created_chats == 1


# -- a wire of one's own -------------------------------------------------------------------------


class _Body:
    """An event-stream body played chunk by chunk."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.closed = False

    async def read(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    async def close(self) -> None:
        self.closed = True


class _Wire:
    """A stand-in wire: a token for every fetch, ``created`` for a create, ``chat`` for a
    get; with ``events``, it can stream (a :class:`StreamingWire`)."""

    def __init__(self, chat: bytes) -> None:
        self.chat = chat
        self.calls: list[str] = []

    async def send(
        self, call: str, method: str, url: Any, headers: Any, data: Any, params: Any
    ) -> Answer:
        if call == "auth.token":
            return Answer(200, b'{"code":0,"tenant_access_token":"t-seam","expire":7200}')
        self.calls.append(call)
        if call == "agents.chats.create":
            return Answer(200, b'{"code":0,"data":{"agent_chat_id":"c1","session_id":"s1"}}')
        return Answer(200, self.chat)

    async def close(self) -> None:
        pass


class _StreamingWire(_Wire):
    def __init__(self, chat: bytes, chunks: list[bytes]) -> None:
        super().__init__(chat)
        self.body = _Body(chunks)

    async def stream(
        self,
        call: str,
        method: str,
        url: Any,
        headers: Any,
        data: Any,
        params: Any,
        read_timeout: float,
    ) -> Answer:
        self.calls.append(f"{call} (stream)")
        return Answer(200, b"", events=self.body)


def _client(wire: Any) -> AilyClient:
    return AilyClient(
        "cli_test",
        "secret",
        base_url="http://127.0.0.1:9",
        limiter=None,
        retry=RetryPolicy.no_wait(),
        poll_interval=0.5,
        wire=wire,
    )


FINISHED = b'{"code":0,"data":{"status":"done","finish_reason":"stop","content":[{"text":"ok"}]}}'


@virtual_time
async def test_a_wire_without_stream_falls_back_to_the_whole_answer() -> None:
    """``stream`` is optional on a wire: without it the streamed create is sent with
    ``send`` and read whole (JSON), and the chat is polled."""
    wire = _Wire(FINISHED)
    async with _client(wire) as client:
        events = [e async for e in client.agents.chats.stream(AGENT, "hi")]
    assert wire.calls == ["agents.chats.create", "agents.chats.get"]
    assert events[-1].text == "ok"


@virtual_time
async def test_a_streaming_wire_of_ones_own_is_read_and_closed() -> None:
    """A wire with ``stream`` hands back an open body: it is parsed across odd chunk
    boundaries, and closed at the end."""
    raw = b'data: {"agent_chat_id": "c9", "text": "he"}\r\n\r\ndata: "llo"\r\n\r\n'
    wire = _StreamingWire(FINISHED, [raw[:7], raw[7:40], raw[40:]])
    async with _client(wire) as client:
        stream = client.agents.chats.stream(AGENT, "hi")
        events = [e async for e in stream]
    assert [e.text for e in events] == ["he", "llo"]
    assert stream.chat_id == "c9"
    assert wire.body.closed
    assert wire.calls == ["agents.chats.create (stream)"]


@virtual_time
async def test_an_over_long_line_is_a_response_error() -> None:
    """A line past the parser's bound ends the stream with AilyResponseError (the buffer
    never grows without end)."""
    wire = _StreamingWire(FINISHED, [b"data: " + b"x" * (1 << 16)] * 20)
    async with _client(wire) as client:
        with pytest.raises(AilyResponseError, match="unreadable event stream"):
            async for _ in client.agents.chats.stream(AGENT, "hi"):
                pass
    assert wire.body.closed


@virtual_time
async def test_chats_share_the_polling_budget_like_runs() -> None:
    """With the client's default polling (the shared budget), a few chats are polled every
    0.5 s: each 10 s chat is noticed within a second of its end, not at the next step of a
    backoff."""
    async with aily(chat_script=ChatPlan(duration=10.0), client={"poll": PollPolicy.shared()}) as (
        _,
        client,
    ):
        loop = asyncio.get_running_loop()
        began = loop.time()
        handles = [await start(client) for _ in range(3)]
        chats = await asyncio.gather(*handles)
        assert all(chat.finish_reason or chat.status for chat in chats)
        assert 10.0 <= loop.time() - began <= 11.0
        assert all(h.polls >= 15 for h in handles)  # every 0.5 s, not 0.5, 1.5, 3.5, 7.5, 15.5
