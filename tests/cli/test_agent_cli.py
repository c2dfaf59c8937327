"""``aily agent chat``, run as a user runs it: a subprocess against a FakeAily."""

from __future__ import annotations

import json
import re

import pytest
from test_cli import ThreadedFake, aily, assert_clean_error, env

from aily_async.cli import main
from aily_async.testing import ChatPlan

AGENT = "agent_7a1c"


def test_help_and_bare_agent(capsys: pytest.CaptureFixture[str]) -> None:
    """``aily agent chat --help`` shows the usage; a bare ``aily agent`` prints its commands
    and exits 2."""
    with pytest.raises(SystemExit) as exited:
        main(["agent", "chat", "--help"])
    assert exited.value.code == 0
    assert "AGENT TEXT" in capsys.readouterr().out
    assert main(["agent"]) == 2
    assert "chat" in capsys.readouterr().err


def test_chat_waits_and_prints_the_reply_then_continues_the_session() -> None:
    """A chat prints the agent's reply, and its session on stderr; ``--session`` continues in
    it and ``--json`` prints the whole chat."""
    with ThreadedFake(chat_script=ChatPlan(duration=0.1)) as server:
        first = aily("agent", "chat", AGENT, "hello", "--no-throttle", environ=env(server.url))
        assert first.returncode == 0, first.stderr
        assert first.stdout == "Echo: hello\n"
        found = re.search(r"aily: session (\S+)", first.stderr)
        assert found is not None
        session = found.group(1)
        second = aily(
            "agent", "chat", AGENT, "again", "--session", session, "--json", "--no-throttle",
            environ=env(server.url),
        )  # fmt: skip
        assert second.returncode == 0, second.stderr
        chat = json.loads(second.stdout)
        assert (chat["session_id"], chat["status"]) == (session, "COMPLETED")
        assert chat["content"][0]["text"] == "Echo: again"
        assert server.fake.agents.session_ids(AGENT) == [session]


def test_stream_prints_the_reply_as_it_comes_and_json_lines_per_event() -> None:
    """``--stream`` prints the text of the events; with ``--json``, one JSON object per
    event, the last one the chat's end."""
    with ThreadedFake(chat_script=ChatPlan(duration=0.2, chunks=3)) as server:
        text = aily(
            "agent", "chat", AGENT, "stream me", "--stream", "--no-throttle",
            environ=env(server.url),
        )  # fmt: skip
        assert text.returncode == 0, text.stderr
        assert text.stdout == "Echo: stream me\n"
        lines = aily(
            "agent", "chat", AGENT, "as json", "--stream", "--json", "--no-throttle",
            environ=env(server.url),
        )  # fmt: skip
        assert lines.returncode == 0, lines.stderr
        events = [json.loads(line) for line in lines.stdout.splitlines()]
        assert events[0]["event"] == "chat.created"
        assert events[-1]["event"] == "chat.completed"
        assert events[-1]["data"]["finish_reason"] == "stop"
        assert "".join(e["text"] for e in events) == "Echo: as json"


def test_a_failed_chat_an_api_error_and_a_bad_id_exit_1_1_and_2() -> None:
    """A chat that ended failed exits 1 and says so; an unknown session is an API error
    (exit 1, with its log id); an id holding ``/`` is a usage error (exit 2)."""
    plan = ChatPlan(duration=0.1, outcome="FAILED", finish_reason="error")
    with ThreadedFake(chat_script=plan) as server:
        failed = aily("agent", "chat", AGENT, "hi", "--no-throttle", environ=env(server.url))
        assert_clean_error(failed, 1, r"aily: chat chat_\S+ ended FAILED \(error\)")
        unknown = aily(
            "agent", "chat", AGENT, "hi", "--session", "session_nope", "--no-throttle",
            environ=env(server.url),
        )  # fmt: skip
        assert_clean_error(unknown, 1, r"agents\.chats\.create: .*not found.*log_id")
        bad = aily("agent", "chat", "a/b", "hi", "--no-throttle", environ=env(server.url))
        assert_clean_error(bad, 2, r"agent_id must not contain '/'")
