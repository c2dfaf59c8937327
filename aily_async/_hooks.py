"""Events a user can attach to for metrics or tracing (``AilyClient(event_hooks=...)``).

Hooks are plain callables (sync or async) taking one event object; they never see a token,
a secret or a request body. Kinds, in the order they come for one call: ``call_start`` (the
call entered the client, before its rate-limiter wait), then per attempt ``request`` (it
leaves) and ``response`` (its answer or failure), ``retry`` between attempts, and
``call_end`` (the call returns or raises). All of them run in the task making the call, so a
hook may read or set context variables (a tracing span) that the later ones see.

:data:`sending` is the package's own, per-task hook: told the name of each call just before
it leaves (batches use it to know an item's effect was sent).
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from ._errors import AilyError

__all__ = [
    "CallEndEvent",
    "CallStartEvent",
    "EventHooks",
    "RequestEvent",
    "ResponseEvent",
    "RetryEvent",
    "sending",
]

logger = logging.getLogger("aily_async")


@attrs.frozen
class CallStartEvent:
    """A call entered the client: its rate-limiter wait and attempts follow."""

    call: str
    method: str
    path: str


@attrs.frozen
class CallEndEvent:
    """A call is over: it returned (``error`` is ``None``) or raised ``error``."""

    call: str
    method: str
    path: str
    error: BaseException | None = None


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


Event = CallStartEvent | RequestEvent | ResponseEvent | RetryEvent | CallEndEvent
#: A hook takes the event of its kind. Typed ``Any`` so that a hook annotated with the events
#: it is given (``RequestEvent | ResponseEvent``, say) fits wherever it is attached.
Hook = Callable[[Any], Awaitable[None] | None]
EventHooks = Mapping[str, Sequence[Hook]]

_KINDS = ("call_start", "request", "response", "retry", "call_end")


def check_hooks(hooks: EventHooks | None) -> dict[str, tuple[Hook, ...]]:
    """Validate ``{kind: [callables]}`` (kinds: see the module docstring)."""
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
