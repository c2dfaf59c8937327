"""Events a user can attach to for metrics or tracing (``AilyClient(event_hooks=...)``).

Hooks are plain callables (sync or async) taking one event object; they never see a token,
a secret or a request body. :data:`sending` is the package's own, per-task hook: told the name
of each call just before it leaves (batches use it to know an item's effect was sent).
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

import attrs

from ._errors import AilyError

__all__ = ["EventHooks", "RequestEvent", "ResponseEvent", "RetryEvent", "sending"]

logger = logging.getLogger("aily_async")


@attrs.frozen
class RequestEvent:
    """A request is about to leave (after the limiter granted it)."""

    call: str
    method: str
    path: str
    attempt: int


@attrs.frozen
class ResponseEvent:
    """A request finished: an answer (``http_status``, ``code``) or an ``error``."""

    call: str
    method: str
    path: str
    attempt: int
    elapsed: float
    http_status: int | None = None
    code: int | None = None
    log_id: str | None = None
    error: AilyError | None = None


@attrs.frozen
class RetryEvent:
    """A failed attempt will be retried after ``wait`` seconds."""

    call: str
    attempt: int
    wait: float
    error: BaseException


Event = RequestEvent | ResponseEvent | RetryEvent
Hook = Callable[[Event], Awaitable[None] | None]
EventHooks = Mapping[str, Sequence[Hook]]

_KINDS = ("request", "response", "retry")


def check_hooks(hooks: EventHooks | None) -> dict[str, tuple[Hook, ...]]:
    """Validate ``{"request"|"response"|"retry": [callables]}``."""
    result: dict[str, tuple[Hook, ...]] = dict.fromkeys(_KINDS, ())
    for kind, fns in (hooks or {}).items():
        if kind not in _KINDS:
            raise ValueError(f"event_hooks: unknown kind {kind!r}, expected one of {_KINDS}")
        for fn in fns:
            if not callable(fn):
                raise ValueError(f"event_hooks[{kind!r}]: {fn!r} is not callable")
        result[kind] = tuple(fns)
    return result


async def emit(hooks: tuple[Hook, ...], event: Event) -> None:
    """Call each hook; a failing hook is logged, never breaks the request."""
    for hook in hooks:
        try:
            result = hook(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("aily_async: event hook %r failed", hook)


#: Called (synchronously) with a call's name just before each of its requests leaves, in the
#: task (and the tasks it starts) that set it; ``None`` when nobody listens.
sending: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar(
    "aily_async_sending", default=None
)
