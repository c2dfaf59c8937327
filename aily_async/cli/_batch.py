"""The ``aily batch`` command: a JSON Lines file of inputs in, one JSON line per result out.

Each input line is a string (a skill's query, a run's message) or a JSON object of the fields
:data:`aily_async.batch.SKILL_FIELDS` or :data:`aily_async.batch.RUN_FIELDS` (and the
``--key`` field). With ``--out`` the results file is the batch's checkpoint; without it, each
result is printed as it finishes (:meth:`BatchResult.to_record`, one line each).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from aily_async.batch import RUN_FIELDS, SKILL_FIELDS, BatchRun, ProgressBar

from ._common import EXIT_ERROR, EXIT_OK, UsageError, make_client

__all__ = ["batch_command", "read_inputs"]


def read_inputs(path: str, kind: str, key: str | None) -> list[Any]:
    """Read and check a JSON Lines file of inputs (``-``: standard input)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    fields = SKILL_FIELDS if kind == "skill" else ("content", *RUN_FIELDS)
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


def _line(record: dict[str, Any]) -> str:
    """One compact JSON line, as a checkpoint writes it (non-JSON values as their ``repr``)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=repr)


async def batch_command(args: argparse.Namespace) -> int:
    """``aily batch skill|run FILE``: run the batch; exit status 1 if any item failed."""
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if not args.grace >= 0:
        raise UsageError("--grace must be >= 0")
    if getattr(args, "timeout", None) is not None and not args.timeout > 0:
        raise UsageError("--timeout must be > 0")
    inputs = read_inputs(args.file, args.kind, args.key)
    if args.out is not None and _same_file(args.out, args.file):
        raise UsageError("--out must not be the input file")
    progress = ProgressBar() if args.progress else None
    async with make_client(args) as client:
        common: dict[str, Any] = {
            "concurrency": args.concurrency,
            "key": args.key,
            "progress": progress,
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
        try:
            async with run:
                async for result in run:
                    if args.out is None:
                        print(_line(result.to_record()), flush=True)
        except asyncio.CancelledError:
            if args.out is not None:
                saved = run.progress.done
                print(
                    f"aily batch: stopped; {saved} items are saved in {args.out}, "
                    "run the same command to finish the rest",
                    file=sys.stderr,
                )
            raise
        done = run.progress
    where = f" -> {args.out}" if args.out else ""
    skipped = f", {done.skipped} already done" if done.skipped else ""
    print(
        f"aily batch: {done.done} items: {done.succeeded + done.skipped} ok{skipped}, "
        f"{done.failed} failed{where}",
        file=sys.stderr,
    )
    return EXIT_ERROR if done.failed else EXIT_OK
