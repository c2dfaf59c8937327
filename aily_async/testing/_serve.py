"""Run :class:`FakeAily` as a stand-alone server: ``python -m aily_async.testing``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from ._fake import FakeAily
from ._models import Faults

__all__ = ["build_parser", "main", "serve", "server_options"]


async def serve(
    port: int = 8080, host: str = "127.0.0.1", *, as_json: bool = False, **options: Any
) -> None:
    """Serve a :class:`FakeAily` on ``host:port`` until cancelled, printing its URL first
    (with ``as_json``, as one JSON line: ``{"url": ...}``).

    ``options`` are passed to :class:`FakeAily` as they are.
    """
    async with FakeAily(host=host, port=port, **options) as fake:
        if as_json:
            print(json.dumps({"url": fake.url}), flush=True)
        else:
            print(f"FakeAily listening on {fake.url} (Ctrl-C to stop)", flush=True)
        await asyncio.Event().wait()


def build_parser(prog: str = "python -m aily_async.testing") -> argparse.ArgumentParser:
    """Return the command-line parser of :func:`main` (the ``aily fake-server`` CLI reuses it)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve a fake Feishu/Lark Aily OpenAPI for local testing."
    )
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument(
        "--rate-limits", action="store_true", help="enforce the documented quotas (429s)"
    )
    parser.add_argument(
        "--token-ttl",
        type=float,
        default=7200.0,
        metavar="S",
        help="seconds a tenant access token stays valid (default: 7200)",
    )
    parser.add_argument(
        "--run-duration", type=float, default=None, metavar="S", help="seconds a run works"
    )
    parser.add_argument(
        "--error-rate", type=float, default=0.0, metavar="F", help="share of random 5xx answers"
    )
    parser.add_argument(
        "--drop-rate", type=float, default=0.0, metavar="F", help="share of dropped connections"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the random faults")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, metavar="F", help="multiplies rate windows"
    )
    parser.add_argument(
        "--clock-offset",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds the server's clock is ahead (timestamps and Date headers)",
    )
    parser.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="APP_ID:SECRET",
        help="accept only these credentials (repeatable; default: accept any)",
    )
    parser.add_argument(
        "--json", action="store_true", help='print the address as one JSON line: {"url": ...}'
    )
    return parser


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """Turn arguments parsed by :func:`build_parser` into keyword arguments of :class:`FakeAily`.

    ``--port`` and ``--host`` are left out (they are :func:`serve`'s own arguments). Raises
    ``ValueError`` on a malformed ``--app``.
    """
    options: dict[str, Any] = {
        "rate_limits": args.rate_limits,
        "token_ttl": args.token_ttl,
        "run_duration": args.run_duration,
        "time_scale": args.time_scale,
    }
    if args.clock_offset:
        options["clock_offset"] = args.clock_offset
    if args.error_rate or args.drop_rate:
        options["faults"] = Faults(
            error_rate=args.error_rate, drop_rate=args.drop_rate, seed=args.seed
        )
    if args.app:
        pairs = [item.partition(":") for item in args.app]
        if any(not sep or not app or not secret for app, sep, secret in pairs):
            raise ValueError("--app takes APP_ID:SECRET")
        options["credentials"] = {app: secret for app, _, secret in pairs}
    return options


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Parse ``argv`` and serve until Ctrl-C; return the exit status."""
    parser = build_parser() if prog is None else build_parser(prog)
    args = parser.parse_args(argv)
    try:
        options = server_options(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(serve(args.port, args.host, as_json=args.json, **options))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    except OSError as exc:
        where = "" if prog is None else f"{prog}: "
        print(f"{where}cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
