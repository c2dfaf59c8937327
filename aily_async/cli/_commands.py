"""The ``aily skill`` and ``aily run`` commands: one skill call, or one run, from the shell.

``aily run get SESSION RUN`` and ``aily run wait SESSION RUN`` look at a run made earlier;
``aily run`` itself takes an optional SESSION positional, so ``main`` routes ``run get`` and
``run wait`` to the parsers :func:`add_run_lookups` adds (``run-get``, ``run-wait``, not
listed).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from aily_async import RunResult

from ._common import EXIT_ERROR, EXIT_OK, UsageError, json_option, make_client, pretty, print_json

__all__ = [
    "LOOKUPS",
    "add_run_lookups",
    "run_command",
    "run_get",
    "run_wait",
    "skill_get",
    "skill_list",
    "skill_start",
]

#: ``aily run get`` and ``aily run wait``: the parsers ``main`` routes them to.
LOOKUPS = {"get": "run-get", "wait": "run-wait"}


# -- aily skill ------------------------------------------------------------------------------


async def skill_start(args: argparse.Namespace) -> int:
    """``aily skill start APP SKILL``: start a skill, print its output."""
    variables = json_option("--variables", args.variables)
    skill_input = json_option("--input", args.input)
    async with make_client(args) as client:
        result = await client.skills.start(
            args.app,
            args.skill,
            query=args.query,
            input=skill_input,
            variables=variables,
            files=args.file or None,
        )
    if args.json:
        print_json(result)
    else:
        print(pretty(result.output))
    return EXIT_OK


async def skill_list(args: argparse.Namespace) -> int:
    """``aily skill list APP``: one line (or JSON) per skill."""
    async with make_client(args) as client:
        skills = [skill async for skill in client.skills.list(args.app)]
    if args.json:
        print_json(skills)
        return EXIT_OK
    for skill in skills:
        print(f"{skill.id}\t{skill.label or ''}\t{skill.description or ''}")
    return EXIT_OK


async def skill_get(args: argparse.Namespace) -> int:
    """``aily skill get APP SKILL``: the skill as JSON."""
    async with make_client(args) as client:
        skill = await client.skills.get(args.app, args.skill)
    print_json(skill)
    return EXIT_OK


# -- aily run --------------------------------------------------------------------------------


async def run_command(args: argparse.Namespace) -> int:
    """``aily run``: create a run (after a message), and with ``--wait`` print its answer."""
    if (args.session is None) == (not args.new_session):
        raise UsageError("give a SESSION id or --new-session (one of them)")
    if args.skill_input is not None and args.skill is None:
        raise UsageError("--skill-input needs --skill")
    skill_input = json_option("--skill-input", args.skill_input)
    metadata = json_option("--metadata", args.metadata)
    async with make_client(args) as client:
        session_id = args.session or (await client.sessions.create()).id
        if args.message is not None:
            await client.messages.create(session_id, args.message)
        handle = await client.runs.create(
            session_id,
            app_id=args.app,
            skill_id=args.skill,
            skill_input=skill_input,
            metadata=metadata,
        )
        if not args.wait:
            if args.json:
                print_json(handle.run)
            else:
                print(f"{handle.id}\t{handle.run.status.value}\t{session_id}")
            return EXIT_OK
        try:
            result = await handle.result(args.timeout)
        except asyncio.CancelledError:
            print(f"aily: stopped waiting; run {handle.id} goes on", file=sys.stderr)
            raise
    return _answer(result, args)


async def run_get(args: argparse.Namespace) -> int:
    """``aily run get SESSION RUN``: the run's state, one line (or JSON)."""
    async with make_client(args) as client:
        run = await client.runs.get(args.session, args.run)
    if args.json:
        print_json(run)
    else:
        took = f"\t{run.duration:.3f}s" if run.duration is not None else ""
        error = f"\t{run.error.code} {run.error.message}" if run.error is not None else ""
        print(f"{run.id}\t{run.status.value}\t{args.session}{took}{error}")
    return EXIT_OK


async def run_wait(args: argparse.Namespace) -> int:
    """``aily run wait SESSION RUN``: wait for a run made earlier and print its answer."""
    async with make_client(args) as client:
        handle = client.runs.attach(await client.runs.get(args.session, args.run))
        try:
            result = await handle.result(args.timeout)
        except asyncio.CancelledError:
            print(f"aily: stopped waiting; run {handle.id} goes on", file=sys.stderr)
            raise
    return _answer(result, args)


def _answer(result: RunResult, args: argparse.Namespace) -> int:
    """Print a finished run's answer (or all of it as JSON); exit 1 unless it completed."""
    if args.json:
        print_json(result)
    elif result.text:
        print(result.text)
    if not result.ok:
        error = result.run.error
        detail = f": {error.code} {error.message}" if error is not None else ""
        print(f"aily: run {result.run.id} ended {result.run.status.value}{detail}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def add_run_lookups(commands: Any, conn: argparse.ArgumentParser) -> None:
    """Add the parsers of ``aily run get`` and ``aily run wait`` (see the module docstring)."""
    get = commands.add_parser(
        LOOKUPS["get"],
        parents=[conn],
        prog="aily run get",
        description="Print the state of run RUN of session SESSION: id, status, session, "
        "duration and error (or the whole run with --json).",
    )
    wait = commands.add_parser(
        LOOKUPS["wait"],
        parents=[conn],
        prog="aily run wait",
        description="Wait for run RUN of session SESSION to end and print the app's answer "
        "(the run and its messages with --json). Exit status 1 if it did not complete.",
    )
    for parser in (get, wait):
        parser.add_argument("session", metavar="SESSION", help="session id (session_…)")
        parser.add_argument("run", metavar="RUN", help="run id (run_…)")
    wait.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="give up waiting after S seconds (the run goes on; exit status 1)",
    )
    get.set_defaults(handler=run_get)
    wait.set_defaults(handler=run_wait)
