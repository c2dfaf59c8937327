"""What every ``aily`` command shares: exit statuses, usage errors, the client, JSON output."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Coroutine
from typing import Any

import attrs

from aily_async import FEISHU_HOST, LARK_HOST, AilyClient, SkillResult

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Handler",
    "UsageError",
    "json_option",
    "jsonable",
    "make_client",
    "pretty",
    "print_json",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: A command: runs with the parsed arguments, returns the exit status.
Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class UsageError(Exception):
    """A mistake in how the command was called: printed, exit status 2."""


def make_client(args: argparse.Namespace) -> AilyClient:
    """A client from the credentials in the environment and the connection options."""
    app_id = os.environ.get("FEISHU_APP_ID", "")
    secret = os.environ.get("FEISHU_APP_SECRET", "")
    missing = [name for name in ("FEISHU_APP_ID", "FEISHU_APP_SECRET") if not os.environ.get(name)]
    if missing:
        raise UsageError(
            f"no credentials: set {' and '.join(missing)} to your Feishu app's id and secret "
            "(or try 'aily demo', which needs none)"
        )
    base_url = (
        args.base_url
        or os.environ.get("AILY_BASE_URL")
        or (LARK_HOST if args.lark else FEISHU_HOST)
    )
    options: dict[str, Any] = {"timeout": args.request_timeout}
    if args.no_throttle:
        options["limiter"] = None
    try:
        return AilyClient(app_id, secret, base_url=base_url, **options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def json_option(name: str, text: str | None) -> str | None:
    """Check that an option holds JSON; return the text as given (``None`` stays ``None``)."""
    if text is None:
        return None
    try:
        json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{name} is not valid JSON: {exc}") from None
    return text


def pretty(text: str | None) -> str:
    """A JSON text indented (any other text as it is)."""
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), ensure_ascii=False, indent=2)
    except ValueError:
        return text


def jsonable(value: Any) -> Any:
    """A model (or a list of models) as plain dicts and lists, ready for ``json.dumps``; a
    skill's ``output`` (a JSON text) is decoded, so it is not a JSON string inside JSON."""
    if isinstance(value, SkillResult):
        try:
            output = value.json()
        except ValueError:  # not JSON after all: the text as it is
            output = value.output
        return {**attrs.asdict(value), "output": output}
    if attrs.has(type(value)):
        return attrs.asdict(value)
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def print_json(value: Any) -> None:
    """Print a model, or a list of models, as indented JSON."""
    print(json.dumps(jsonable(value), ensure_ascii=False, indent=2, default=str))
