"""The ``aily`` command line: the demo, skill calls, runs, batches and a fake server.

Credentials come from the environment: ``FEISHU_APP_ID`` and ``FEISHU_APP_SECRET`` (the
Feishu app's id and secret); ``--base-url`` or ``AILY_BASE_URL`` points at another host (such
as ``aily fake-server``). Exit status: 0 success, 1 an API or service error (or a batch with
failed items), 2 a usage error (bad arguments, bad JSON, missing credentials), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import AilyError, AilyValidationError

if TYPE_CHECKING:
    from ._client import AilyClient

__all__ = ["build_parser", "main"]

FEISHU = "https://open.feishu.cn"
LARK = "https://open.larksuite.com"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class UsageError(Exception):
    """A mistake in how the command was called: printed, exit status 2."""


# -- helpers ---------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> AilyClient:
    from ._client import AilyClient

    app_id = os.environ.get("FEISHU_APP_ID", "")
    secret = os.environ.get("FEISHU_APP_SECRET", "")
    missing = [name for name in ("FEISHU_APP_ID", "FEISHU_APP_SECRET") if not os.environ.get(name)]
    if missing:
        raise UsageError(
            f"no credentials: set {' and '.join(missing)} to your Feishu app's id and secret "
            "(or try 'aily demo', which needs none)"
        )
    base_url = args.base_url or os.environ.get("AILY_BASE_URL") or (LARK if args.lark else FEISHU)
    options: dict[str, Any] = {"timeout": args.request_timeout}
    if args.no_throttle:
        options["limiter"] = None
    try:
        return AilyClient(app_id, secret, base_url=base_url, **options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _json_option(name: str, text: str | None) -> str | None:
    """Check that an option holds JSON; return the text as given (``None`` stays ``None``)."""
    if text is None:
        return None
    try:
        json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{name} is not valid JSON: {exc}") from None
    return text


def _pretty(text: str | None) -> str:
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), ensure_ascii=False, indent=2)
    except ValueError:
        return text


def _print_json(value: Any) -> None:
    from ._models import _converter

    print(json.dumps(_converter.unstructure(value), ensure_ascii=False, indent=2, default=str))


# -- aily skill ------------------------------------------------------------------------------


async def _skill_start(args: argparse.Namespace) -> int:
    variables = _json_option("--variables", args.variables)
    skill_input = _json_option("--input", args.input)
    async with _client(args) as client:
        result = await client.skills.start(
            args.app,
            args.skill,
            query=args.query,
            input=skill_input,
            variables=variables,
            files=args.file or None,
        )
    if args.json:
        _print_json(result)
    else:
        print(_pretty(result.output))
    return EXIT_OK


async def _skill_list(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        skills = [skill async for skill in client.skills.list(args.app)]
    if args.json:
        _print_json(skills)
        return EXIT_OK
    for skill in skills:
        print(f"{skill.id}\t{skill.label or ''}\t{skill.description or ''}")
    return EXIT_OK


async def _skill_get(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        skill = await client.skills.get(args.app, args.skill)
    _print_json(skill)
    return EXIT_OK


# -- aily run --------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> int:
    if (args.session is None) == (not args.new_session):
        raise UsageError("give a SESSION id or --new-session (one of them)")
    if args.skill_input is not None and args.skill is None:
        raise UsageError("--skill-input needs --skill")
    skill_input = _json_option("--skill-input", args.skill_input)
    metadata = _json_option("--metadata", args.metadata)
    async with _client(args) as client:
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
                _print_json(handle.run)
            else:
                print(f"{handle.id}\t{handle.run.status.value}\t{session_id}")
            return EXIT_OK
        try:
            result = await handle.result(args.timeout)
        except asyncio.CancelledError:
            print(f"aily: stopped waiting; run {handle.id} goes on", file=sys.stderr)
            raise
    if args.json:
        _print_json(result)
    elif result.text:
        print(result.text)
    if not result.ok:
        error = result.run.error
        detail = f": {error.code} {error.message}" if error is not None else ""
        print(f"aily: run {result.run.id} ended {result.run.status.value}{detail}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


# -- aily batch ------------------------------------------------------------------------------


def _read_inputs(path: str, kind: str, key: str | None) -> list[Any]:
    """Read and check a JSON Lines file of inputs (``-``: standard input)."""
    from ._batch import _RUN_FIELDS, _SKILL_FIELDS

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    fields = _SKILL_FIELDS if kind == "skill" else ("content", *_RUN_FIELDS)
    inputs: list[Any] = []
    keys: set[Any] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{where}: not valid JSON: {exc}") from None
        if isinstance(value, dict):
            if key is not None:
                if not isinstance(value.get(key), str | int) or isinstance(value.get(key), bool):
                    raise UsageError(f"{where}: no string or integer key field {key!r}")
                if value[key] in keys:
                    raise UsageError(f"{where}: duplicate key {value[key]!r}")
                keys.add(value[key])
            unknown = sorted(name for name in value if name not in fields and name != key)
            if unknown:
                raise UsageError(
                    f"{where}: unknown field(s) {', '.join(unknown)} "
                    f"(expected: {', '.join(fields)})"
                )
            if kind == "run" and not isinstance(value.get("message", value.get("content")), str):
                raise UsageError(f"{where}: a run needs a 'message' string")
        elif isinstance(value, str):
            if key is not None:
                raise UsageError(f"{where}: --key {key} needs JSON objects, got a string")
        else:
            what = "a query string" if kind == "skill" else "a message string"
            raise UsageError(f"{where}: expected a JSON object or {what}")
        inputs.append(value)
    return inputs


def _same_file(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


async def _batch(args: argparse.Namespace) -> int:
    from ._checkpoint import dumps
    from ._progress import ProgressBar

    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if not args.grace >= 0:
        raise UsageError("--grace must be >= 0")
    if getattr(args, "timeout", None) is not None and not args.timeout > 0:
        raise UsageError("--timeout must be > 0")
    inputs = _read_inputs(args.file, args.kind, args.key)
    if args.out is not None and _same_file(args.out, args.file):
        raise UsageError("--out must not be the input file")
    progress: Any = ProgressBar() if args.progress else None
    async with _client(args) as client:
        common: dict[str, Any] = {
            "concurrency": args.concurrency,
            "key": args.key,
            "progress": progress,
            "checkpoint": args.out,
            "grace": args.grace,
        }
        batch: Any
        if args.kind == "skill":
            batch = client.batch.skills(args.app, args.skill, inputs, **common)
        else:
            batch = client.batch.runs(
                args.app,
                inputs,
                session=args.session.replace("-", "_"),
                skill_id=args.skill,
                timeout=args.timeout,
                **common,
            )
        try:
            async with batch:
                async for result in batch:
                    if args.out is None:
                        print(dumps(batch._record(result)), flush=True)
        except asyncio.CancelledError:
            if args.out is not None:
                saved = batch.progress.done
                print(
                    f"aily batch: stopped; {saved} items are saved in {args.out}, "
                    "run the same command to finish the rest",
                    file=sys.stderr,
                )
            raise
        done = batch.progress
    where = f" -> {args.out}" if args.out else ""
    skipped = f", {done.skipped} already done" if done.skipped else ""
    print(
        f"aily batch: {done.done} items: {done.succeeded + done.skipped} ok{skipped}, "
        f"{done.failed} failed{where}",
        file=sys.stderr,
    )
    return EXIT_ERROR if done.failed else EXIT_OK


# -- aily demo -------------------------------------------------------------------------------


async def _demo(args: argparse.Namespace) -> int:
    from ._cli_demo import run_demo

    for name in ("skills", "runs"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name} must be >= 0")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if not args.scale > 0:
        raise UsageError("--scale must be > 0")
    return await run_demo(
        skills=args.skills,
        runs=args.runs,
        concurrency=args.concurrency,
        scale=args.scale,
        progress=args.progress,
    )


# -- aily fake-server ------------------------------------------------------------------------


def _fake_server(argv: Sequence[str]) -> int:
    from .testing import _serve

    parser = _serve.build_parser(prog="aily fake-server")
    args = parser.parse_args(list(argv))
    try:
        options = _serve._options(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_serve.serve(args.port, args.host, **options))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    except OSError as exc:
        print(f"aily fake-server: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


# -- the parser ------------------------------------------------------------------------------


def _connection_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection (credentials: FEISHU_APP_ID, FEISHU_APP_SECRET)")
    group.add_argument(
        "--base-url",
        metavar="URL",
        help=f"API host (default: $AILY_BASE_URL, else {FEISHU})",
    )
    group.add_argument("--lark", action="store_true", help=f"use the Lark host {LARK}")
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
    from . import __version__

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
    demo.set_defaults(handler=_demo, verbose=False)

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
    start.set_defaults(handler=_skill_start)
    listing = skill_commands.add_parser(
        "list", parents=[conn], help="list an app's skills", description="List APP's skills."
    )
    listing.add_argument("app", metavar="APP", help="Aily app id")
    listing.set_defaults(handler=_skill_list)
    get = skill_commands.add_parser(
        "get", parents=[conn], help="describe one skill", description="Describe one skill."
    )
    get.add_argument("app", metavar="APP", help="Aily app id")
    get.add_argument("skill", metavar="SKILL", help="skill id")
    get.set_defaults(handler=_skill_get)
    skill.set_defaults(usage_of=skill)

    run = commands.add_parser(
        "run",
        parents=[conn],
        help="send a message and run the app on a session",
        description=(
            "Create a run of APP on SESSION (or on a new session), after sending --message. "
            "With --wait, wait for the run and print the app's answer."
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
    run.set_defaults(handler=_run)

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
                "after an interruption and it skips what is done. Without --out, results go "
                "to standard output. Exit status 1 if any item failed."
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
            help="on Ctrl-C, seconds for calls underway to finish (5)",
        )
        sub.add_argument(
            "--no-progress", dest="progress", action="store_false", help="no progress bar"
        )
        sub.set_defaults(handler=_batch, kind=kind)
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
    args = parser.parse_args(args_list)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        (getattr(args, "usage_of", None) or parser).print_help(sys.stderr)
        return EXIT_USAGE
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    try:
        return asyncio.run(handler(args))
    except UsageError as exc:
        print(f"aily: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AilyValidationError as exc:
        print(f"aily: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AilyError as exc:
        print(f"aily: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("aily: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``aily ... | head``): no traceback, and none at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
