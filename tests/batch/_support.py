"""Helpers the batch tests share: a client for a fake, a created-runs event, checkpoint lines."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aily_async import AilyClient, PollPolicy, RetryPolicy
from aily_async.testing import FakeAily

APP = "spring_449d72db2f__c"


def make_client(fake: FakeAily | str, **options: Any) -> AilyClient:
    """A client for ``fake`` (or its URL): no waiting between retries, no limiter, quick
    polls."""
    options.setdefault("retry", RetryPolicy.no_wait())
    options.setdefault("limiter", None)
    options.setdefault(
        "poll", PollPolicy(interval=0.02, backoff=2.0, max_interval=0.5, adaptive=False)
    )
    url = fake if isinstance(fake, str) else fake.url
    return AilyClient("cli_test", "test-secret", base_url=url, **options)


def runs_created(count: int) -> tuple[asyncio.Event, dict[str, Any]]:
    """An event set once ``count`` runs were created, and the client hooks that set it."""
    event = asyncio.Event()
    created = 0

    def on_response(response: Any) -> None:
        nonlocal created
        if response.call == "runs.create" and response.error is None:
            created += 1
            if created >= count:
                event.set()

    return event, {"event_hooks": {"response": [on_response]}}


def lines_of(path: Path) -> list[dict[str, Any]]:
    """Every whole line of a checkpoint file (header included), split at ``\\n`` only."""
    if not path.exists():
        return []
    whole = path.read_bytes().split(b"\n")[:-1]  # what follows the last newline is torn
    return [json.loads(line) for line in whole if line.strip()]


def last_records(path: Path) -> dict[Any, dict[str, Any]]:
    """The last record of each key of a checkpoint file."""
    return {line["key"]: line for line in lines_of(path) if "key" in line}
