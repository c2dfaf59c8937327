"""OpenTelemetry tracing and metrics for an :class:`~aily_async.AilyClient` (``pip install
'aily-async[otel]'``).

::

    from aily_async import otel
    otel.instrument(client)          # uses the global tracer and meter providers

Built on the client's event hooks (``AilyClient.event_hooks``), nothing else: each API call
becomes one CLIENT span named ``aily <call>`` (``aily runs.create``), current while the call
runs, with

- attributes: ``aily.call``, ``http.request.method``, ``url.path``, ``aily.attempts``, and of
  the last answer ``http.response.status_code``, ``aily.code``, ``aily.log_id`` (what Feishu
  support asks for); on failure the span's status is ERROR with ``error.type``;
- events: ``aily.limiter_wait`` (seconds an attempt waited for its rate-limiter grant, or for
  the quota after a 429), ``aily.token_fetch``, ``aily.rate_limited`` (a 429) and
  ``aily.retry`` (the failed attempt, its error and the wait before the next).

Metrics: counters ``aily.client.requests`` (by call and HTTP status, token fetches included),
``aily.client.rate_limited`` (429 answers) and ``aily.client.retries``, and the histogram
``aily.client.call.duration`` (seconds, by call and ``error.type``).

Only this module imports ``opentelemetry``; ``import aily_async`` never does.
"""

from __future__ import annotations

import contextvars
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from aily_async import (
    AilyClient,
    CallEndEvent,
    CallStartEvent,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
    __version__,
)

__all__ = ["Instrumentation", "instrument", "uninstrument"]

_TOKEN_CALL = "auth.token"
_NOISE = 0.001  # waits shorter than this are not worth an event


class _Call:
    """The span of one call in flight, and when its next attempt could have left."""

    __slots__ = ("attempts", "call", "parent", "ready", "span", "started", "token", "token_time")

    def __init__(
        self,
        call: str,
        span: trace.Span,
        token: contextvars.Token[otel_context.Context],
        parent: _Call | None,
    ) -> None:
        self.call = call
        self.span = span
        self.token = token  # to restore the OpenTelemetry context at the end
        self.parent = parent
        self.started = self.ready = time.perf_counter()
        self.attempts = 0
        self.token_time = 0.0


#: The call the current task is in (calls nest: a recovery look-up inside runs.create).
_current: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "aily_async_otel_call", default=None
)


class Instrumentation:
    """The hooks that turn one client's events into spans and metrics (see the module
    docstring). Made by :func:`instrument`; :meth:`uninstrument` detaches them."""

    def __init__(
        self,
        client: AilyClient,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._client = client
        self._tracer = trace.get_tracer(__name__, __version__, tracer_provider)
        meter = metrics.get_meter(__name__, __version__, meter_provider)
        self._requests = meter.create_counter(
            "aily.client.requests", unit="{request}", description="HTTP requests sent"
        )
        self._limited = meter.create_counter(
            "aily.client.rate_limited", unit="{response}", description="429 answers received"
        )
        self._retries = meter.create_counter(
            "aily.client.retries", unit="{retry}", description="failed attempts sent again"
        )
        self._duration = meter.create_histogram(
            "aily.client.call.duration", unit="s", description="API calls, retries included"
        )
        self._hooks: dict[str, Any] = {
            "call_start": self._on_start,
            "request": self._on_request,
            "response": self._on_response,
            "retry": self._on_retry,
            "call_end": self._on_end,
        }

    def attach(self) -> None:
        """Add the hooks to the client's (after any it has)."""
        hooks = self._client.event_hooks
        for kind, hook in self._hooks.items():
            hooks.setdefault(kind, []).append(hook)
        self._client.event_hooks = hooks

    def uninstrument(self) -> None:
        """Remove the hooks; calls under way end their spans without them."""
        hooks = self._client.event_hooks
        for kind, hook in self._hooks.items():
            hooks[kind] = [h for h in hooks.get(kind, []) if h != hook]
        self._client.event_hooks = hooks

    # -- the hooks ------------------------------------------------------------------------

    def _on_start(self, event: CallStartEvent) -> None:
        span = self._tracer.start_span(
            f"aily {event.call}",
            kind=SpanKind.CLIENT,
            attributes={
                "aily.call": event.call,
                "http.request.method": event.method,
                "url.path": event.path,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        _current.set(_Call(event.call, span, token, _current.get()))

    def _on_request(self, event: RequestEvent) -> None:
        state = _current.get()
        if state is None or event.call == _TOKEN_CALL:
            return
        state.attempts = event.attempt
        waited = time.perf_counter() - state.ready - state.token_time
        state.token_time = 0.0
        if waited >= _NOISE:
            state.span.add_event(
                "aily.limiter_wait",
                {"aily.wait_seconds": round(waited, 6), "aily.attempt": event.attempt},
            )

    def _on_response(self, event: ResponseEvent) -> None:
        attributes: dict[str, Any] = {"aily.call": event.call}
        if event.http_status is not None:
            attributes["http.response.status_code"] = event.http_status
        if event.error is not None:
            attributes["error.type"] = _error_type(event.error)
        self._requests.add(1, attributes)
        if event.http_status == 429:
            self._limited.add(1, {"aily.call": event.call})
        state = _current.get()
        if state is None:
            return
        span = state.span
        if event.call == _TOKEN_CALL:
            state.token_time += event.elapsed
            span.add_event(
                "aily.token_fetch",
                {"aily.elapsed_seconds": round(event.elapsed, 6), **_answer(event)},
            )
            return
        for key, value in _answer(event).items():
            span.set_attribute(key, value)
        span.set_attribute("aily.attempts", event.attempt)
        if event.http_status == 429:
            span.add_event("aily.rate_limited", {"aily.attempt": event.attempt})
        state.ready = time.perf_counter()  # after a 429 the quota wait is the limiter's

    def _on_retry(self, event: RetryEvent) -> None:
        self._retries.add(1, {"aily.call": event.call})
        state = _current.get()
        if state is None:
            return
        state.span.add_event(
            "aily.retry",
            {
                "aily.attempt": event.attempt,
                "aily.wait_seconds": round(event.wait, 6),
                "error.type": _error_type(event.error),
                "exception.message": str(event.error),
            },
        )
        state.ready = time.perf_counter() + event.wait

    def _on_end(self, event: CallEndEvent) -> None:
        state = _current.get()
        if state is None or state.call != event.call:
            return
        _current.set(state.parent)
        span = state.span
        attributes: dict[str, Any] = {"aily.call": event.call}
        error = event.error
        if error is not None:
            kind = _error_type(error)
            attributes["error.type"] = kind
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, str(error) or kind))
            if isinstance(error, Exception):
                span.record_exception(error)
        self._duration.record(time.perf_counter() - state.started, attributes)
        span.end()
        otel_context.detach(state.token)


def _answer(event: ResponseEvent) -> dict[str, Any]:
    """The answer's attributes: HTTP status, Aily code, log id (those present)."""
    found: dict[str, Any] = {}
    if event.http_status is not None:
        found["http.response.status_code"] = event.http_status
    if event.code is not None:
        found["aily.code"] = event.code
    if event.log_id is not None:
        found["aily.log_id"] = event.log_id
    return found


def _error_type(error: BaseException) -> str:
    cls = type(error)
    name = cls.__qualname__
    return name if cls.__module__ == "builtins" else f"{cls.__module__}.{name}"


def instrument(
    client: AilyClient,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Instrumentation:
    """Trace and measure every call of ``client`` (the global providers unless given); call
    again on a client already instrumented and you get the same :class:`Instrumentation`."""
    for hooks in client.event_hooks.values():
        for hook in hooks:
            owner = getattr(hook, "__self__", None)
            if isinstance(owner, Instrumentation):
                return owner
    instrumentation = Instrumentation(
        client, tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    instrumentation.attach()
    return instrumentation


def uninstrument(client: AilyClient) -> None:
    """Remove what :func:`instrument` added to ``client`` (nothing if it was not)."""
    for hooks in client.event_hooks.values():
        for hook in hooks:
            owner = getattr(hook, "__self__", None)
            if isinstance(owner, Instrumentation):
                owner.uninstrument()
                return
