"""The ``aily`` command line: the demo, skill calls, runs, batches, knowledge asks, data
assets and a fake server.

Credentials come from the environment: ``FEISHU_APP_ID`` and ``FEISHU_APP_SECRET`` (the
Feishu app's id and secret); ``--base-url`` or ``AILY_BASE_URL`` points at another host (such
as ``aily fake-server``). Exit status: 0 success, 1 an API or service error (or a batch with
failed items), 2 a usage error (bad arguments, bad JSON, missing credentials), 130 Ctrl-C.

This module builds the parser and dispatches; the commands live in ``_commands`` (skill, run),
``_agents`` (agent), ``_assets`` (ask, assets), ``_batch`` (batch) and ``_demo`` (demo), on
the helpers of ``_common``, and run under the Ctrl-C handling of ``_interrupts``;
``fake-server`` is handed to :mod:`aily_async.testing`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from aily_async import FEISHU_HOST, LARK_HOST, AilyError, AilyValidationError, __version__

from ._agents import add_agent_commands
from ._assets import add_ask_command, add_assets_command
from ._batch import batch_command
from ._commands import LOOKUPS, add_run_lookups, run_command, skill_get, skill_list, skill_start
from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Handler, UsageError
from ._demo import demo_command
from ._interrupts import interruptible
from ._worker import add_worker_command

__all__ = ["build_parser", "main"]


# -- aily fake-server ------------------------------------------------------------------------


def _fake_server(argv: Sequence[str]) -> int:
    """``aily fake-server``: the fake of :mod:`aily_async.testing`, served until Ctrl-C."""
    from aily_async.testing._serve import main as serve_main

    return serve_main(list(argv), prog="aily fake-server")


# -- the parser ------------------------------------------------------------------------------


def _connection_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection (credentials: FEISHU_APP_ID, FEISHU_APP_SECRET)")
    group.add_argument(
        "--base-url",
        metavar="URL",
        help=f"API host (default: $AILY_BASE_URL, else {FEISHU_HOST})",
    )
    group.add_argument("--lark", action="store_true", help=f"use the Lark host {LARK_HOST}")
    group.add_argument(
        "--request-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds per HTTP request (default: 30)",
    )
    group.add_argument(
        "--no-throttle",
        action="store_true",
        help="no client-side rate limiting (for a local fake server; Aily itself answers 429)",
    )
    group.add_argument("--json", action="store_true", help="print results as JSON")
    group.add_argument("-v", "--verbose", action="store_true", help="log each request to stderr")
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The ``aily`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="aily",
        description="Call the Feishu/Lark Aily OpenAPI from the shell, or watch a demo batch.",
        epilog="Start with 'aily demo': it runs against a built-in fake server, no credentials.",
    )
    parser.add_argument("--version", action="version", version=f"aily-async {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    conn = _connection_options()

    demo = commands.add_parser(
        "demo",
        help="run a batch of skill calls and runs against a built-in FakeAily",
        description=(
            "Start a fake Aily server in this process with the documented rate limits scaled "
            "down, run a batch of skill calls and a batch of runs through the real client, and "
            "print what it cost: items, failures, requests, 429s, quota utilisation, time."
        ),
    )
    demo.add_argument("--skills", type=int, default=300, metavar="N", help="skill calls (300)")
    demo.add_argument("--runs", type=int, default=100, metavar="N", help="runs (100)")
    demo.add_argument("--concurrency", type=int, default=32, metavar="N", help="workers (32)")
    demo.add_argument(
        "--scale",
        type=float,
        default=0.05,
        metavar="F",
        help="time scale of the quotas: 0.05 turns 100/min into 100 per 3 s (default)",
    )
    demo.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )
    demo.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    demo.set_defaults(handler=demo_command, verbose=False)

    skill = commands.add_parser("skill", help="start, list or describe skills")
    skill_commands = skill.add_subparsers(title="skill commands", metavar="COMMAND")
    start = skill_commands.add_parser(
        "start",
        parents=[conn],
        help="start a skill and print its output",
        description="Start skill SKILL of Aily app APP and print its output (JSON, indented).",
    )
    start.add_argument("app", metavar="APP", help="Aily app id (spring_…__c)")
    start.add_argument("skill", metavar="SKILL", help="skill id (skill_…)")
    start.add_argument("--query", help="the query text")
    start.add_argument("--input", metavar="JSON", help="the skill's input, a JSON value")
    start.add_argument("--variables", metavar="JSON", help="channel variables, a JSON object")
    start.add_argument("--file", action="append", metavar="FILE_ID", help="a file id (repeatable)")
    start.set_defaults(handler=skill_start)
    listing = skill_commands.add_parser(
        "list", parents=[conn], help="list an app's skills", description="List APP's skills."
    )
    listing.add_argument("app", metavar="APP", help="Aily app id")
    listing.set_defaults(handler=skill_list)
    get = skill_commands.add_parser(
        "get", parents=[conn], help="describe one skill", description="Describe one skill."
    )
    get.add_argument("app", metavar="APP", help="Aily app id")
    get.add_argument("skill", metavar="SKILL", help="skill id")
    get.set_defaults(handler=skill_get)
    skill.set_defaults(usage_of=skill)

    run = commands.add_parser(
        "run",
        parents=[conn],
        help="send a message and run the app on a session",
        description=(
            "Create a run of APP on SESSION (or on a new session), after sending --message. "
            "With --wait, wait for the run and print the app's answer. A run made earlier: "
            "'aily run get SESSION RUN' prints its state, 'aily run wait SESSION RUN "
            "[--timeout S]' waits for its answer."
        ),
    )
    run.add_argument("session", nargs="?", metavar="SESSION", help="session id (session_…)")
    run.add_argument("--new-session", action="store_true", help="create a new session")
    run.add_argument("--app", required=True, help="Aily app id (spring_…__c)")
    run.add_argument("--message", "-m", help="send this message before the run")
    run.add_argument("--skill", help="run this skill (skill_…)")
    run.add_argument("--skill-input", metavar="JSON", help="the skill's input, JSON")
    run.add_argument("--metadata", metavar="JSON", help="run metadata, JSON")
    run.add_argument("--wait", action="store_true", help="wait for the answer and print it")
    run.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="give up waiting after S s"
    )
    run.set_defaults(handler=run_command)
    add_run_lookups(commands, conn)  # aily run get / aily run wait (routed by main)

    add_agent_commands(commands, conn)
    add_ask_command(commands, conn)
    add_assets_command(commands, conn)
    add_worker_command(commands)

    batch = commands.add_parser(
        "batch",
        help="run a JSON Lines file of skill calls or messages",
        description="Run one skill call or one run per line of a JSON Lines file.",
    )
    batch_commands = batch.add_subparsers(title="batch commands", metavar="KIND")
    for kind, summary, line_help in (
        (
            "skill",
            "start a skill once per line",
            'each line: a query string, or {"query": ..., "input": {...}, "variables": ...}',
        ),
        (
            "run",
            "send each line as a message and wait for the app's answer",
            'each line: a message string, or {"message": ..., "skill_id": ..., ...}',
        ),
    ):
        sub = batch_commands.add_parser(
            kind,
            parents=[conn],
            help=summary,
            description=(
                f"{summary[0].upper()}{summary[1:]}; {line_help}. With --out, every finished "
                "item is appended to that JSON Lines file at once: run the same command again "
                "after an interruption and it skips what is done (a results file of another "
                "batch is refused). Without --out, results go to standard output. Failed "
                "items are reported on stderr with their line. Exit status 1 if any item "
                "failed."
            ),
        )
        sub.add_argument("file", metavar="FILE.jsonl", help="the inputs ('-': standard input)")
        sub.add_argument("--app", required=True, help="Aily app id (spring_…__c)")
        if kind == "skill":
            sub.add_argument("--skill", required=True, help="skill id (skill_…)")
        else:
            sub.add_argument("--skill", help="run this skill for every message")
            sub.add_argument(
                "--session",
                choices=("fresh", "per-worker"),
                default="fresh",
                help="a new session per message (default), or one per worker",
            )
            sub.add_argument(
                "--timeout", type=float, default=None, metavar="S", help="per-run time limit"
            )
        sub.add_argument("--out", metavar="RESULTS.jsonl", help="results file and checkpoint")
        sub.add_argument(
            "--key",
            metavar="FIELD",
            help="key items by this field of each line (default: the line's position)",
        )
        sub.add_argument(
            "--concurrency", type=int, default=16, metavar="N", help="items at once (16)"
        )
        sub.add_argument(
            "--grace",
            type=float,
            default=5.0,
            metavar="S",
            help="on Ctrl-C, seconds for calls underway to finish (5); Ctrl-C again: cancel them",
        )
        sub.add_argument(
            "--no-progress", dest="progress", action="store_false", help="no progress bar"
        )
        sub.set_defaults(handler=batch_command, kind=kind)
    batch.set_defaults(usage_of=batch)

    commands.add_parser(
        "fake-server",
        help="serve a fake Aily OpenAPI (see 'aily fake-server --help')",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``aily`` command line; return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["fake-server"]:
        return _fake_server(args_list[1:])
    parser = build_parser()
    if args_list[:1] == ["run"] and args_list[1:2] and args_list[1] in LOOKUPS:
        args_list = [LOOKUPS[args_list[1]], *args_list[2:]]
    args = parser.parse_args(args_list)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        (getattr(args, "usage_of", None) or parser).print_help(sys.stderr)
        return EXIT_USAGE
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    try:
        return asyncio.run(interruptible(handler(args)))
    except (UsageError, AilyValidationError) as exc:
        print(f"aily: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AilyError as exc:
        print(f"aily: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C (see _interrupts)
        print("aily: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``aily ... | head``): no traceback, and none at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
