"""The ``aily batch`` command: a JSON Lines file of inputs in, one JSON line per result out.

Each input line is a string (a skill's query, a run's message) or a JSON object of the fields
:data:`aily_async.batch.SKILL_FIELDS` or :data:`aily_async.batch.RUN_FIELDS` (and the
``--key`` field). The file is read as bytes split at ``\\n`` only, each line decoded as UTF-8
on its own, so text holding U+2028 or U+0085 stays on its line. With ``--out`` the results
file is the batch's checkpoint (its first line names the batch; a file of another batch is
refused); without it, each result is printed as it finishes (:meth:`BatchResult.to_record`,
one line each). Either way each failed item is reported on stderr as it fails, with its line
number, its row and its error, and the summary lists the failed lines (with ``--json`` the
summary is one JSON object on stderr).

Ctrl-C (see ``_interrupts``) stops the batch: calls not sent yet are dropped, calls underway
get ``--grace`` seconds to finish and be saved, and the command says so; Ctrl-C again cancels
them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aily_async.batch import RUN_FIELDS, SKILL_FIELDS, BatchResult, BatchRun, ProgressBar
from aily_async.batch._checkpoint import dumps

from ._common import EXIT_ERROR, EXIT_OK, UsageError, make_client
from ._interrupts import current

__all__ = ["batch_command", "read_inputs"]

#: Characters of a failed row shown on screen (the results file holds all of it).
ROW_SHOWN = 300


def _check(value: Any, where: str, kind: str, key: str | None, keys: set[Any]) -> None:
    """Raise :class:`UsageError` if one parsed input line is not a valid input."""
    fields = SKILL_FIELDS if kind == "skill" else ("content", *RUN_FIELDS)
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
                f"{where}: unknown field(s) {', '.join(unknown)} (expected: {', '.join(fields)})"
            )
        if kind == "run" and not isinstance(value.get("message", value.get("content")), str):
            raise UsageError(f"{where}: a run needs a 'message' string")
    elif isinstance(value, str):
        if key is not None:
            raise UsageError(f"{where}: --key {key} needs JSON objects, got a string")
    else:
        what = "a query string" if kind == "skill" else "a message string"
        raise UsageError(f"{where}: expected a JSON object or {what}")


def read_inputs(path: str, kind: str, key: str | None) -> tuple[list[Any], list[int]]:
    """Read and check a JSON Lines file of inputs (``-``: standard input): the inputs, and
    the line number of each."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    inputs: list[Any] = []
    numbers: list[int] = []
    keys: set[Any] = set()
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            value = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise UsageError(f"{where}: not UTF-8 text: {exc}") from None
        except ValueError as exc:
            raise UsageError(f"{where}: not valid JSON: {exc}") from None
        _check(value, where, kind, key, keys)
        inputs.append(value)
        numbers.append(number)
    return inputs, numbers


def _same_file(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


_line = dumps  # one compact JSON line, as a checkpoint writes it


def _say(text: str, bar: ProgressBar | None) -> None:
    """A line on stderr (above the progress bar, if one is drawn)."""
    if bar is not None:
        bar.note(text)
    else:
        print(text, file=sys.stderr, flush=True)


def _failure(result: BatchResult[Any], line: int) -> str:
    """What stderr says of a failed item: its line, its row and its error."""
    row = _line(result.input)
    if len(row) > ROW_SHOWN:
        row = row[: ROW_SHOWN - 1] + "…"
    error = result.error
    return f"aily batch: line {line} failed: {row}: {type(error).__name__}: {error}"


def _on_press(
    run: BatchRun[Any], args: argparse.Namespace, bar: ProgressBar | None
) -> Callable[[int], None]:
    """What the batch says on each Ctrl-C: what it waits for, and what another press does."""
    noun = "run" if args.kind == "run" else "skill call"

    def on_press(presses: int) -> None:
        count = run.underway
        what = f"{count} {noun}{'' if count == 1 else 's'} in flight"
        if presses == 1:
            if count and args.grace:
                then = "cancel" if args.kind == "run" else "stop waiting for"
                it = "it" if count == 1 else "them"
                saved = " and be saved" if args.out is not None else ""
                _say(
                    f"aily batch: stopping: waiting up to {args.grace:g}s for {what} to finish"
                    f"{saved}; Ctrl-C again to {then} {it}",
                    bar,
                )
            else:
                _say("aily batch: stopping", bar)
        elif count:
            verb = "cancelling" if args.kind == "run" else "no longer waiting for"
            _say(f"aily batch: {verb} {what}", bar)

    return on_press


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(str(number) for number in numbers[:20])
    return shown + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")


async def batch_command(args: argparse.Namespace) -> int:
    """``aily batch skill|run FILE``: run the batch; exit status 1 if any item failed."""
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if not args.grace >= 0:
        raise UsageError("--grace must be >= 0")
    if getattr(args, "timeout", None) is not None and not args.timeout > 0:
        raise UsageError("--timeout must be > 0")
    inputs, numbers = read_inputs(args.file, args.kind, args.key)
    if args.out is not None and _same_file(args.out, args.file):
        raise UsageError("--out must not be the input file")
    bar = ProgressBar() if args.progress else None
    failed: list[int] = []
    async with make_client(args) as client:
        common: dict[str, Any] = {
            "concurrency": args.concurrency,
            "key": args.key,
            "progress": bar,
            "checkpoint": args.out,
            "grace": args.grace,
        }
        run: BatchRun[Any]
        if args.kind == "skill":
            run = client.batch.skills(args.app, args.skill, inputs, **common)
        else:
            run = client.batch.runs(
                args.app,
                inputs,
                session=args.session.replace("-", "_"),
                skill_id=args.skill,
                timeout=args.timeout,
                **common,
            )
        interrupts = current()
        if interrupts is not None:
            interrupts.on_press = _on_press(run, args, bar)
        try:
            async with run:
                async for result in run:
                    if args.out is None:
                        print(_line(result.to_record()), flush=True)
                    if not result.ok:
                        failed.append(numbers[result.index])
                        _say(_failure(result, numbers[result.index]), bar)
        except asyncio.CancelledError:
            if args.out is not None:
                saved = run.progress.done
                print(
                    f"aily batch: stopped; {saved} items are saved in {args.out}, "
                    "run the same command to finish the rest",
                    file=sys.stderr,
                )
            raise
        finally:
            if interrupts is not None:
                interrupts.on_press = None
        done = run.progress
    if args.json:  # the results are JSON lines already (stdout or --out): the summary too
        summary = {
            "items": done.done,
            "ok": done.succeeded + done.skipped,
            "already_done": done.skipped,
            "failed": done.failed,
            "failed_lines": sorted(failed),
            "out": args.out,
        }
        print(json.dumps(summary), file=sys.stderr)
        return EXIT_ERROR if done.failed else EXIT_OK
    where = f" -> {args.out}" if args.out else ""
    skipped = f", {done.skipped} already done" if done.skipped else ""
    lines = ""
    if failed:
        lines = f" (line{'s' if len(failed) > 1 else ''} {_lines(sorted(failed))}; see above)"
    print(
        f"aily batch: {done.done} items: {done.succeeded + done.skipped} ok{skipped}, "
        f"{done.failed} failed{lines}{where}",
        file=sys.stderr,
    )
    return EXIT_ERROR if done.failed else EXIT_OK
