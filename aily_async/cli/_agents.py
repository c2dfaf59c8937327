"""The ``aily agent`` commands: chat with an Aily agent from the shell, waiting or streaming."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from aily_async import AgentChat, AgentChatEvent

from ._common import EXIT_ERROR, EXIT_OK, jsonable, make_client, print_json

__all__ = ["add_agent_commands", "agent_chat"]

#: Final statuses reported as a failure (exit status 1). The service documents no status
#: value: these are the failure spellings of ``AGENT_CHAT_TERMINAL_STATUSES``.
FAILED_STATUSES = frozenset({"FAILED", "ERROR", "CANCELLED", "CANCELED", "EXPIRED", "TIMEOUT"})


def _event_record(event: AgentChatEvent) -> dict[str, Any]:
    return {
        "source": event.source,
        "event": event.event,
        "id": event.id,
        "text": event.text,
        "rewrite": event.rewrite,
        "data": jsonable(event.data),
    }


def _ended(chat_id: str | None, status: str | None, finish_reason: str | None) -> int:
    """The exit status for a chat that ended with ``status``; a failure is told on stderr."""
    if (status or "").upper() not in FAILED_STATUSES:
        return EXIT_OK
    detail = f" ({finish_reason})" if finish_reason else ""
    print(f"aily: chat {chat_id} ended {status}{detail}", file=sys.stderr)
    return EXIT_ERROR


async def agent_chat(args: argparse.Namespace) -> int:
    """``aily agent chat AGENT TEXT``: send TEXT, print the agent's reply (as it comes with
    ``--stream``); the chat session goes to stderr, to continue with ``--session``."""
    async with make_client(args) as client:
        chats = client.agents.chats
        if args.stream:
            stream = chats.stream(
                args.agent, args.text, session_id=args.session, max_wait=args.timeout
            )
            async with stream:
                async for event in stream:
                    if args.json:
                        print(json.dumps(_event_record(event), ensure_ascii=False, default=str))
                    elif event.rewrite:
                        print(f"\n{event.text}", end="")
                    else:
                        print(event.text, end="")
                    sys.stdout.flush()
            if not args.json:
                print()
            print(f"aily: session {stream.session_id}", file=sys.stderr)
            return _ended(stream.chat_id, stream.status, stream.finish_reason)
        handle = await chats.create(
            args.agent, args.text, session_id=args.session, max_wait=args.timeout
        )
        chat: AgentChat = await handle
    if args.json:
        print_json(chat)
    elif chat.text:
        print(chat.text)
    print(f"aily: session {chat.session_id}", file=sys.stderr)
    return _ended(chat.agent_chat_id, chat.status, chat.finish_reason)


def add_agent_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], conn: argparse.ArgumentParser
) -> None:
    """Add ``aily agent ...`` to the ``aily`` parser (``conn``: the connection options)."""
    agent = commands.add_parser("agent", help="chat with an Aily agent")
    agent_commands = agent.add_subparsers(title="agent commands", metavar="COMMAND")
    chat = agent_commands.add_parser(
        "chat",
        parents=[conn],
        help="send a message to an agent and print its reply",
        description=(
            "Send TEXT to agent AGENT (in chat session --session, or a new one) and print the "
            "reply once the chat has finished, or as it comes with --stream (with --json: one "
            "JSON object per event). The chat session is printed on stderr. Exit status 1 if "
            "the chat ended failed."
        ),
    )
    chat.add_argument("agent", metavar="AGENT", help="agent id")
    chat.add_argument("text", metavar="TEXT", help="the message")
    chat.add_argument("--session", metavar="S", help="chat session id (default: a new one)")
    chat.add_argument("--stream", action="store_true", help="print the reply as it comes")
    chat.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="give up after S seconds (default: 600)",
    )
    chat.set_defaults(handler=agent_chat)
    agent.set_defaults(usage_of=agent)
