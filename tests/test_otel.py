"""aily_async.otel: each call one span with its attempts, answer, retries and waits; request,
429 and retry counters; and nothing of OpenTelemetry imported unless asked for."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aily_async import AilyClient, AilyNotFoundError, RetryPolicy, TokenBucket, otel
from aily_async.testing import FakeAily


class Telemetry:
    """An SDK tracer provider with an in-memory exporter, a meter provider with an in-memory
    reader."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def counts(self, name: str) -> dict[tuple[tuple[str, Any], ...], int]:
        """The data points of metric ``name``: their attributes -> value (sum or count)."""
        data = self.reader.get_metrics_data()
        found: dict[tuple[tuple[str, Any], ...], int] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = point.count  # type: ignore[union-attr]
                        found[tuple(sorted((point.attributes or {}).items()))] = value
        return found


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


@pytest.fixture
async def fake() -> AsyncIterator[FakeAily]:
    async with FakeAily() as server:
        yield server


def client_for(fake: FakeAily, telemetry: Telemetry, **options: Any) -> AilyClient:
    options.setdefault("limiter", None)
    options.setdefault("retry", RetryPolicy.no_wait())
    client = AilyClient("cli_test", "secret", base_url=fake.url, **options)
    otel.instrument(
        client,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    return client


def events(span: ReadableSpan) -> list[str]:
    return [event.name for event in span.events]


async def test_each_call_is_one_span_with_its_answer(
    fake: FakeAily, telemetry: Telemetry
) -> None:
    """sessions.create then sessions.get: two CLIENT spans named after the calls, with the
    method, attempts, HTTP status, Aily code and the log id the server sent; the token fetch
    is an event of the first."""
    async with client_for(fake, telemetry) as client:
        session = await client.sessions.create()
        await client.sessions.get(session.id)
    create, get = telemetry.finished()
    assert (create.name, get.name) == ("aily sessions.create", "aily sessions.get")
    assert create.kind is SpanKind.CLIENT
    attributes = dict(get.attributes or {})
    assert attributes["aily.call"] == "sessions.get"
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.response.status_code"] == 200
    assert attributes["aily.code"] == 0
    assert attributes["aily.attempts"] == 1
    assert attributes["aily.log_id"] == fake.requests[-1].log_id
    assert get.status.status_code is StatusCode.UNSET
    assert events(create) == ["aily.token_fetch"]
    assert telemetry.counts("aily.client.requests") == {
        (("aily.call", "auth.token"), ("http.response.status_code", 200)): 1,
        (("aily.call", "sessions.create"), ("http.response.status_code", 200)): 1,
        (("aily.call", "sessions.get"), ("http.response.status_code", 200)): 1,
    }


async def test_retries_and_429s_are_events_and_counted(
    fake: FakeAily, telemetry: Telemetry
) -> None:
    """Two 502s then an answer: one span, three attempts, two retry events naming the error;
    a 429 is a rate_limited event; the counters agree."""
    async with client_for(fake, telemetry) as client:
        session = await client.sessions.create()
        fake.inject("sessions.get", status=502, times=2)
        await client.sessions.get(session.id)
        fake.inject("sessions.get", status=429, headers={"x-ogw-ratelimit-reset": "0"})
        await client.sessions.get(session.id)
    _, retried, limited = telemetry.finished()
    assert dict(retried.attributes or {})["aily.attempts"] == 3
    assert events(retried) == ["aily.retry", "aily.retry"]
    retry = retried.events[0].attributes or {}
    assert retry["aily.attempt"] == 1
    assert retry["error.type"] == "aily_async.AilyServerError"
    assert "aily.rate_limited" in events(limited)
    assert dict(limited.attributes or {})["http.response.status_code"] == 200
    assert telemetry.counts("aily.client.retries") == {(("aily.call", "sessions.get"),): 2}
    assert telemetry.counts("aily.client.rate_limited") == {(("aily.call", "sessions.get"),): 1}


async def test_a_limiter_wait_is_an_event(fake: FakeAily, telemetry: Telemetry) -> None:
    """A call that queued behind the client's rate limiter says how long it waited."""
    limiter = TokenBucket(1, per=0.3)
    async with client_for(fake, telemetry, limiter=limiter) as client:
        session = await client.sessions.create()
        await client.sessions.get(session.id)
    get = telemetry.finished()[-1]
    (wait,) = [e for e in get.events if e.name == "aily.limiter_wait"]
    assert 0.1 < float((wait.attributes or {})["aily.wait_seconds"]) < 1.0


async def test_a_failed_call_is_an_error_span_under_the_callers_span(
    fake: FakeAily, telemetry: Telemetry
) -> None:
    """A 404 ends the span with status ERROR and the public error class; the call's span is a
    child of the span current where the call was made; the duration histogram has it."""
    tracer = telemetry.tracer_provider.get_tracer("app")
    async with client_for(fake, telemetry) as client:
        with tracer.start_as_current_span("handle request"), pytest.raises(AilyNotFoundError):
            await client.sessions.get("session_zzzz")
    get, parent = telemetry.finished()
    assert get.parent is not None
    assert get.parent.span_id == parent.context.span_id
    assert get.status.status_code is StatusCode.ERROR
    assert dict(get.attributes or {})["error.type"] == "aily_async.AilyNotFoundError"
    assert [e.name for e in get.events][-1] == "exception"
    durations = telemetry.counts("aily.client.call.duration")
    assert durations == {
        (("aily.call", "sessions.get"), ("error.type", "aily_async.AilyNotFoundError")): 1
    }


async def test_instrument_once_and_uninstrument(fake: FakeAily, telemetry: Telemetry) -> None:
    """instrument() twice is one instrumentation; after uninstrument() no span is made and the
    client's own hooks are left alone."""
    seen: list[object] = []
    hooks = {"request": [seen.append]}
    client = AilyClient("cli_test", "secret", base_url=fake.url, limiter=None, event_hooks=hooks)
    first = otel.instrument(client, tracer_provider=telemetry.tracer_provider)
    assert otel.instrument(client) is first
    async with client:
        await client.sessions.create()
        otel.uninstrument(client)
        await client.sessions.create()
    assert len(telemetry.finished()) == 1
    assert client.event_hooks["request"] == [seen.append]
    assert len(seen) == 3


def test_opentelemetry_is_not_imported_unless_asked_for() -> None:
    """``import aily_async`` (and using a client) loads no opentelemetry module."""
    code = (
        "import sys, aily_async\n"
        "aily_async.AilyClient('a', 'b')\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')]\n"
        "import aily_async.otel\n"
        "assert 'opentelemetry.trace' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
