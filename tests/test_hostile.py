"""Hostile answers and hostile input: the client explains, or tolerates, and never crashes.

Answers: hypothesis feeds malformed JSON, HTML error pages, wrong types, missing and extra
fields, huge strings and unknown statuses to the decoder (``aily_async._wire.decode`` and the model
converter) directly for many examples, through the whole request seam and the resources for
many more, and over HTTP through ``FakeAily.inject`` for a sample. Whatever comes back, the
caller sees a result or an :class:`AilyError` naming the call and what was wrong, never a
``KeyError``/``AttributeError``/``TypeError``.

Input: a table of hostile arguments (path tricks, unicode look-alikes, control characters,
bools as ints, huge ints, JSON strings that are not JSON) each raising
:class:`AilyValidationError` before any request leaves.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import attrs
import pytest
from _vloop import VirtualTimeLoop, virtual_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aily_async import (
    AilyClient,
    AilyError,
    AilyRateLimitError,
    AilyResponseError,
    AilyValidationError,
    Answer,
    Message,
    RetryPolicy,
    Run,
    RunStatus,
    Session,
    Skill,
    SkillResult,
    TokenBucket,
)
from aily_async._resources import model as _model
from aily_async._resources import structure as _structure
from aily_async._wire import decode
from aily_async.testing import ROUTES, FakeAily

APP = "spring_449d72db2f__c"
SID = "session_abc123"
RID = "run_abc123"
MID = "message_abc123"

# --------------------------------------------------------------------------- strategies

JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and Infinity too: Python's json writes and reads them
    | st.text(max_size=12)
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=10,
)

STATUS_TEXT = st.sampled_from(
    ["QUEUED", "IN_PROGRESS", "REQUIRES_MESSAGE", "COMPLETED", "FAILED", "CANCELLED", "EXPIRED"]
) | st.text(max_size=12)
TIMESTAMP = (
    st.integers(min_value=-(2**70), max_value=2**70).map(str)
    | st.integers()
    | st.sampled_from(["", "0", " 1711975665710 ", "1711975665710.5", "²", "١٧١١", "9" * 5000])
    | JSON_LEAF
)

# Field-shaped values for the models, so that many examples get past the outer checks.
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "id": st.sampled_from([RID, SID, MID, "skill_echo"]) | JSON_LEAF,
    "status": STATUS_TEXT | JSON_LEAF,
    "created_at": TIMESTAMP,
    "started_at": TIMESTAMP,
    "ended_at": TIMESTAMP,
    "modified_at": TIMESTAMP,
    "error": st.fixed_dictionaries({}, optional={"code": JSON_LEAF, "message": JSON_LEAF})
    | JSON_VALUE,
    "sender": st.fixed_dictionaries(
        {}, optional={"sender_type": st.sampled_from(["USER", "ASSISTANT"]) | JSON_LEAF}
    )
    | JSON_VALUE,
    "files": st.lists(JSON_LEAF, max_size=3) | JSON_VALUE,
    "mentions": st.lists(JSON_VALUE, max_size=3) | JSON_LEAF,
    "samples": st.lists(JSON_LEAF, max_size=3) | JSON_VALUE,
}
MODEL_KEYS = [
    "id",
    "session_id",
    "app_id",
    "status",
    "created_at",
    "started_at",
    "ended_at",
    "modified_at",
    "error",
    "metadata",
    "content",
    "plain_text",
    "sender",
    "files",
    "mentions",
    "samples",
    "output",
    "label",
    "run_id",
    "extra_field_from_the_future",
]


@st.composite
def model_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """An object shaped like a model, with some fields missing, wrong or hostile."""
    keys = draw(st.lists(st.sampled_from(MODEL_KEYS), unique=True, max_size=8))
    return {key: draw(FIELD_VALUES.get(key, JSON_LEAF | st.text(max_size=20))) for key in keys}


DATA_KEYS = ["run", "session", "message", "skill", "runs", "messages", "skills"]


@st.composite
def data_objects(draw: st.DrawFn) -> Any:
    """A ``data`` value: usually an object holding model-shaped values, sometimes anything."""
    if draw(st.integers(0, 4)) == 0:
        return draw(JSON_VALUE)
    data: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(DATA_KEYS), unique=True, max_size=2)):
        if key.endswith("s"):
            data[key] = draw(st.lists(model_dicts(), max_size=3) | JSON_LEAF)
        else:
            data[key] = draw(model_dicts() | JSON_VALUE)
    for key in draw(st.lists(st.sampled_from(["has_more", "page_token", "output"]), unique=True)):
        data[key] = draw(JSON_LEAF | st.sampled_from(["tok", ""]))
    return data


CODES = st.sampled_from([0, 0, 0, 1, 2700001, 99991400, 99991663, 99991668, 99991672]) | JSON_LEAF


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """A JSON envelope with fields missing, of the wrong type or extra."""
    body: dict[str, Any] = {}
    if draw(st.booleans()) or draw(st.booleans()):
        body["code"] = draw(CODES)
    if draw(st.booleans()):
        body["msg"] = draw(JSON_LEAF)
    if draw(st.booleans()) or draw(st.booleans()):
        body["data"] = draw(data_objects())
    if draw(st.booleans()):
        body["error"] = draw(
            st.fixed_dictionaries({}, optional={"log_id": JSON_LEAF, "troubleshooter": JSON_LEAF})
            | JSON_LEAF
        )
    if draw(st.booleans()):
        body[draw(st.text(max_size=6))] = draw(JSON_VALUE)
    return json.dumps(body).encode()


HTML_PAGES = [
    b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    b"<!DOCTYPE html><html><body><h1>Service Unavailable</h1></body></html>",
    b"<?xml version='1.0'?><error>gateway</error>",
]
ODD_PAYLOADS = [
    b"",
    b" ",
    b"null",
    b"[]",
    b'"just a string"',
    b"0",
    b'{"code": 0}',
    b'{"code": 0, "data": null}',
    b'{"code": 0, "data": []}',
    b'{"code": "0", "data": {}}',
    b'{"code": 0.0, "data": {}}',
    b'{"code": true, "data": {}}',
    b'{"code": NaN, "data": {}}',
    b'{"code": 1e999, "data": {}}',
    b'{"code": 0, "data": {"run": {"id": "run_a", "status": "SOMETHING_NEW"}}}',
    b'{"code": 0, "data": {"run": {"id": "run_a", "status": 7}}}',
    b'{"code": 0, "data": {"run": {"status": "QUEUED"}}}',
    b'{"code": 0, "data": {"run": {"id": null}}}',
    b'{"code": 0, "data": {"runs": {"id": "run_a"}, "has_more": true}}',
    b'{"code": 0, "data": {"runs": [], "has_more": true, "page_token": {"a": 1}}}',
    b'{"code": 0, "data": {"runs": [], "has_more": true, "page_token": 5}}',
    b'{"code": 0, "data": {"session": {"id": "session_a"}, "session": 3}}',
    b'{"code": 0, "msg": "ok", "data": {"message": {"id": "m", "sender": "ASSISTANT"}}}',
    b'{"code": 0, "data": {"output": {"not": "a string"}, "status": 1}}',
    b"\xef\xbb\xbf" + b'{"code": 0, "data": {}}',  # UTF-8 BOM
    '{"code": 0, "data": {"run": {"id": "run_a"}}}'.encode("utf-16"),
    b"\xff\xfe\x00garbage\x80\x81",
    b'{"code": 0, "data": {"run": {"id": "run_a"',  # truncated
    b"[" * 3000,  # nesting deeper than the recursion limit
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b'{"code": 0, "data": {"run": {"id": "' + b"r" * 20_000 + b'"}}}',  # long string
    b'{"code": 0, "data": {"run": {"id": "run_a", "created_at": "' + b"9" * 5000 + b'"}}}',
]

PAYLOADS = (
    envelopes()
    | st.sampled_from(HTML_PAGES + ODD_PAYLOADS)
    | st.binary(max_size=64)
    | JSON_VALUE.map(lambda v: json.dumps(v).encode())
    | st.tuples(envelopes(), st.integers(0, 200)).map(lambda t: t[0][: t[1]])  # truncated
    | st.text(max_size=40).map(str.encode)
)
STATUSES = st.sampled_from([200, 200, 200, 201, 204, 301, 302, 400, 401, 403, 404, 429]) | (
    st.sampled_from([500, 502, 503, 504]) | st.integers(100, 599)
)
RESET_HEADERS = st.none() | st.sampled_from(["1", "0", "-5", "inf", "nan", "1e308", "abc", ""])


def _assert_explains(exc: AilyError, call: str) -> None:
    """An error names the call and says something about what went wrong."""
    text = str(exc)
    assert text.startswith(f"{call}: "), text
    assert len(text) > len(call) + 4, text


MODELS: list[tuple[str, type[Any]]] = [
    ("run", Run),
    ("session", Session),
    ("message", Message),
    ("skill", Skill),
]


def _poke(model: Any) -> None:
    """Use what the library itself reads from a decoded model."""
    repr(model)
    if isinstance(model, Run):
        assert model.status.is_terminal != model.status.is_active
        _ = model.duration
    if isinstance(model, Message):
        _ = model.text, model.is_assistant


# --------------------------------------------------------------------------- direct decoding


@pytest.fixture(scope="module")
def bare_client() -> AilyClient:
    """A client used only for its decoding functions (it never opens a session)."""
    return AilyClient("cli_test", "test-secret", base_url="http://127.0.0.1:9", limiter=None)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=STATUSES,
    payload=PAYLOADS,
    reset=RESET_HEADERS,
    limit=RESET_HEADERS,
    raw=st.booleans(),
)
def test_decoder_answers_or_explains(
    bare_client: AilyClient,
    status: int,
    payload: bytes,
    reset: str | None,
    limit: str | None,
    raw: bool,
) -> None:
    """``_decode`` returns a dict for a success envelope and raises an explaining AilyError for
    anything else (bad JSON, HTML, wrong types, redirects, error codes), never a builtin error."""
    try:
        data, code = decode("runs.get", Answer(status, payload, None, reset, limit=limit), raw=raw)
    except AilyError as exc:
        error: AilyError | None = exc
    else:
        error = None
        assert isinstance(data, dict)
        assert code == 0
        assert status < 300
    if error is not None:
        _assert_explains(error, "runs.get")
        if isinstance(error, AilyRateLimitError) and error.retry_after is not None:
            assert math.isfinite(error.retry_after), error.retry_after
            assert error.retry_after >= 0
        if isinstance(error, AilyRateLimitError) and error.limit is not None:
            assert isinstance(error.limit, int)
            assert error.limit >= 1, error.limit


@settings(max_examples=400, deadline=None)
@given(which=st.sampled_from(MODELS), data=data_objects() | model_dicts())
def test_models_decode_or_explain(which: tuple[str, type[Any]], data: Any) -> None:
    """Model-shaped data with missing, extra, wrong-typed and hostile fields becomes a model or an
    AilyResponseError naming the field's path; unknown statuses are kept and count as terminal."""
    key, cls = which
    holder = data if isinstance(data, dict) else {key: data}
    try:
        model = _model("runs.get", holder, key, cls)
    except AilyResponseError as exc:
        error: AilyResponseError | None = exc
    else:
        error = None
        assert isinstance(model, cls)
        _poke(model)
    if error is not None:
        _assert_explains(error, "runs.get")
        assert f"data.{key}" in str(error)


@settings(max_examples=200, deadline=None)
@given(data=data_objects() | model_dicts() | JSON_VALUE)
def test_skill_result_decodes_or_explains(data: Any) -> None:
    """A start-skill ``data`` of any shape becomes a SkillResult or an AilyResponseError."""
    try:
        result = _structure("skills.start", data, SkillResult, "data")
    except AilyResponseError as exc:
        error: AilyResponseError | None = exc
    else:
        error = None
        assert result.output is None or isinstance(result.output, str)
    if error is not None:
        _assert_explains(error, "skills.start")


@pytest.mark.parametrize("status", ["SOMETHING_NEW", "", "paused", "COMPLETED_WITH_WARNINGS"])
def test_unknown_run_status_is_tolerated_as_terminal(status: str) -> None:
    """An unknown run status is kept as is and treated as terminal, as the reference says."""
    run = _model("runs.get", {"run": {"id": RID, "status": status}}, "run", Run)
    assert run.status.value == status
    assert run.status.is_terminal
    assert not run.status.is_active
    assert status in repr(run) or status == ""


def test_deeply_nested_json_is_a_response_error(bare_client: AilyClient) -> None:
    """JSON nested deeper than the recursion limit is refused as an unreadable answer."""
    with pytest.raises(AilyResponseError, match=r"runs\.get: expected a JSON object"):
        decode("runs.get", Answer(200, b"[" * 100_000))
    with pytest.raises(AilyError):
        decode("runs.get", Answer(502, b'{"a":' * 50_000))


# --------------------------------------------------------------------------- through the seam


@attrs.define
class _Wire:
    """A stand-in wire: one (status, payload, reset) answer for every API call, a valid token
    for every token fetch."""

    status: int = 200
    payload: bytes = b""
    reset: str | None = None
    calls: int = 0

    async def send(
        self, call: str, method: str, url: Any, headers: Any, data: Any, params: Any
    ) -> Answer:
        if call == "auth.token":
            return Answer(200, b'{"code":0,"tenant_access_token":"t-seam","expire":7200}')
        self.calls += 1
        if self.calls > 50:
            raise AssertionError(f"runaway: more than 50 requests ({call})")
        return Answer(self.status, self.payload, None, self.reset)

    async def close(self) -> None:
        pass


def _seam_client(wire: _Wire) -> AilyClient:
    """A client whose wire answers with ``wire``'s answer.

    Everything above the exchange is real: the request seam with its retries and token refresh,
    the resources, pagination and RunHandle polling.
    """
    return AilyClient(
        "cli_test",
        "test-secret",
        base_url="http://127.0.0.1:9",
        limiter=None,
        retry=RetryPolicy(
            max_attempts=2, base_delay=0, max_delay=0, max_reset_wait=0, max_quota_wait=10
        ),
        poll_interval=0.5,
        wire=wire,
    )


async def _drain(iterator: Any) -> list[Any]:
    return [item async for item in iterator]


async def _create_and_wait(client: AilyClient) -> Any:
    handle = await client.runs.create(SID, app_id=APP)
    return await handle.wait(timeout=5)


OPERATIONS: dict[str, Callable[[AilyClient], Awaitable[Any]]] = {
    "sessions.create": lambda c: c.sessions.create(),
    "sessions.get": lambda c: c.sessions.get(SID),
    "messages.create": lambda c: c.messages.create(SID, "hello"),
    "messages.get": lambda c: c.messages.get(SID, MID),
    "messages.list": lambda c: _drain(c.messages.list(SID, run_id=RID)),
    "runs.create+wait": _create_and_wait,
    "runs.get": lambda c: c.runs.get(SID, RID),
    "runs.list": lambda c: _drain(c.runs.list(SID)),
    "runs.cancel": lambda c: c.runs.cancel(SID, RID),
    "runs.run": lambda c: c.runs.run("hello", app_id=APP, session_id=SID, timeout=5),
    "skills.start": lambda c: c.skills.start(APP, "skill_echo", input={"q": 1}),
    "skills.get": lambda c: c.skills.get(APP, "skill_echo"),
    "skills.list": lambda c: _drain(c.skills.list(APP)),
    "knowledge.ask": lambda c: c.knowledge.ask(APP, "hello"),
    "data_assets.upload_file": lambda c: c.data_assets.upload_file(APP, b"x", filename="a.txt"),
    "data_assets.create": lambda c: c.data_assets.create(APP, connect_type="c", source_type="s"),
    "data_assets.get": lambda c: c.data_assets.get(APP, "asset_1", with_items=True),
    "data_assets.list": lambda c: _drain(c.data_assets.list(APP, data_asset_ids=["a", "b"])),
    "data_assets.delete": lambda c: c.data_assets.delete(APP, "asset_1"),
    "data_asset_tags.list": lambda c: _drain(c.data_asset_tags.list(APP)),
    "app_stats.list": lambda c: _drain(c.app_stats.list(start_at="1", end_at="2")),
}


@pytest.fixture(scope="module")
def vloop() -> Iterator[VirtualTimeLoop]:
    """One virtual-time loop shared by the examples of a module's property tests."""
    loop = VirtualTimeLoop()
    yield loop
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    op=st.sampled_from(sorted(OPERATIONS)),
    status=STATUSES,
    payload=PAYLOADS,
    reset=RESET_HEADERS,
)
def test_every_call_survives_any_answer(
    vloop: VirtualTimeLoop, op: str, status: int, payload: bytes, reset: str | None
) -> None:
    """Every public call, fed the same hostile answer for each of its requests, returns or
    raises an explaining AilyError (retries, token refresh, paging and polling included)."""

    async def scenario() -> None:
        wire = _Wire(status, payload, reset)
        client = _seam_client(wire)
        error: AilyError | None = None
        try:
            await asyncio.wait_for(OPERATIONS[op](client), timeout=600)
        except AilyError as exc:
            error = exc
        finally:
            await client.close()
        if error is not None:
            calls = {op.split("+")[0], *OPERATIONS, "runs.wait"}
            assert str(error).split(":", 1)[0] in calls, error
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert leftover == []

    vloop.run_until_complete(scenario())


# --------------------------------------------------------------------------- over HTTP


@attrs.define
class _Served:
    loop: VirtualTimeLoop
    fake: FakeAily
    client: AilyClient
    session_id: str
    run_id: str


@pytest.fixture(scope="module")
def served(vloop: VirtualTimeLoop) -> Iterator[_Served]:
    """A FakeAily and a one-attempt client on the module's virtual-time loop."""

    async def start() -> _Served:
        fake = FakeAily(run_duration=3600.0)
        await fake.start()
        client = AilyClient(
            "cli_test",
            "test-secret",
            base_url=fake.url,
            limiter=None,
            retry=RetryPolicy(max_attempts=1),
            poll_interval=0.5,
        )
        session = await client.sessions.create()
        handle = await client.runs.create(session.id, app_id=APP)
        return _Served(vloop, fake, client, session.id, handle.id)

    served = vloop.run_until_complete(start())
    yield served
    vloop.run_until_complete(served.client.close())
    vloop.run_until_complete(served.fake.close())


HTTP_OPERATIONS: dict[str, Callable[[_Served], Awaitable[Any]]] = {
    "sessions.create": lambda s: s.client.sessions.create(),
    "runs.get": lambda s: s.client.runs.get(s.session_id, s.run_id),
    "runs.list": lambda s: _drain(s.client.runs.list(s.session_id)),
    "messages.list": lambda s: _drain(s.client.messages.list(s.session_id)),
    "skills.start": lambda s: s.client.skills.start(APP, "skill_echo"),
    "skills.get": lambda s: s.client.skills.get(APP, "skill_echo"),
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    route=st.sampled_from(sorted(HTTP_OPERATIONS)),
    status=st.sampled_from([200, 201, 302, 400, 401, 403, 404, 418, 429, 500, 502, 503]),
    payload=PAYLOADS,
    reset=RESET_HEADERS,
)
def test_hostile_answers_over_http(
    served: _Served, route: str, status: int, payload: bytes, reset: str | None
) -> None:
    """A hostile answer served by FakeAily (real headers, HTML content type, redirects) ends the
    call with a result or an explaining AilyError."""

    async def scenario() -> None:
        headers = {"x-ogw-ratelimit-reset": reset} if reset is not None else None
        served.fake.inject(route, status=status, body=payload, headers=headers)
        error: AilyError | None = None
        try:
            await asyncio.wait_for(HTTP_OPERATIONS[route](served), timeout=600)
        except AilyError as exc:
            error = exc
        if error is not None:
            _assert_explains(error, route)

    served.loop.run_until_complete(scenario())


@virtual_time
async def test_unknown_status_ends_a_wait_over_http() -> None:
    """A run whose status turns into one the client has never heard of ends the wait, as the
    reference asks; a status of the wrong type ends it with an AilyResponseError."""
    async with (
        FakeAily(run_duration=3600.0) as fake,
        AilyClient(
            "cli_test", "test-secret", base_url=fake.url, limiter=None, poll_interval=0.5
        ) as client,
    ):
        session = await client.sessions.create()
        handle = await client.runs.create(session.id, app_id=APP)
        odd = {"code": 0, "data": {"run": {"id": handle.id, "status": "ARCHIVED_BY_ROBOT"}}}
        fake.inject("runs.get", status=200, body=odd)
        run = await handle.wait(timeout=60)
        assert run.status == RunStatus("ARCHIVED_BY_ROBOT")
        assert run.status.is_terminal

        session = await client.sessions.create()
        handle = await client.runs.create(session.id, app_id=APP)
        wrong = {"code": 0, "data": {"run": {"id": handle.id, "status": ["COMPLETED"]}}}
        fake.inject("runs.get", status=200, body=wrong)
        with pytest.raises(AilyResponseError, match=r"runs\.get: could not read Run.*status"):
            await handle.wait(timeout=60)


@pytest.mark.parametrize("reset", ["inf", "1e308", "1e12", "nan", "-3", "soon"])
@virtual_time
async def test_hostile_rate_limit_reset_never_stalls_the_client(reset: str) -> None:
    """A 429 whose ``x-ogw-ratelimit-reset`` is infinite, enormous, NaN, negative or not a number
    waits at most ``max_reset_wait`` and leaves the limiter usable."""
    bucket = TokenBucket(50, 1.0)
    async with (
        FakeAily() as fake,
        AilyClient(
            "cli_test",
            "test-secret",
            base_url=fake.url,
            limiter=bucket,
            retry=RetryPolicy(max_attempts=3, base_delay=0.0, max_reset_wait=5.0),
        ) as client,
    ):
        await client.skills.get(APP, "skill_echo")
        fake.inject("skills.get", status=429, headers={"x-ogw-ratelimit-reset": reset}, times=1)
        loop = asyncio.get_running_loop()
        began = loop.time()
        skill = await asyncio.wait_for(client.skills.get(APP, "skill_echo"), timeout=3600)
        assert skill.id == "skill_echo"
        assert loop.time() - began <= 5.0 + 1.0
        assert bucket.next_grant_in() <= 1.0
        await asyncio.wait_for(bucket.acquire(), timeout=2.0)


# --------------------------------------------------------------------------- hostile input


def _wrong(value: object) -> Any:
    """A value of the wrong type, on purpose (hidden from the type checker)."""
    return value


def _bad(call: Callable[[AilyClient], Any], field: str) -> tuple[Callable[[AilyClient], Any], str]:
    return call, field


BAD_INPUT: dict[str, tuple[Callable[[AilyClient], Any], str]] = {
    # path tricks: an id is never a path
    "session-dotdot": _bad(lambda c: c.sessions.get("session_abc/../x"), "session_id"),
    "session-leading-dotdot": _bad(lambda c: c.sessions.get("../session_abc"), "session_id"),
    "session-pct2F": _bad(lambda c: c.sessions.get("session_abc%2Fx"), "session_id"),
    "session-query": _bad(lambda c: c.sessions.delete("session_abc?x=1"), "session_id"),
    "run-fragment": _bad(lambda c: c.runs.get(SID, "run_abc#frag"), "run_id"),
    "app-dotdot": _bad(lambda c: c.skills.start("spring_x__c/../../admin", "skill_a"), "app_id"),
    "app-pct2F": _bad(lambda c: c.skills.get("spring%2Fx__c", "skill_echo"), "app_id"),
    "skill-slash": _bad(lambda c: c.skills.start(APP, "skill/echo"), "skill_id"),
    "skills-list-dotdot": _bad(lambda c: c.skills.list(".."), "app_id"),
    "messages-list-run-query": _bad(
        lambda c: c.messages.list(SID, run_id="run_abc&page_size=1"), "run_id"
    ),
    # whitespace and control characters
    "session-leading-space": _bad(lambda c: c.sessions.get(" session_abc"), "session_id"),
    "session-trailing-newline": _bad(lambda c: c.sessions.get("session_abc\n"), "session_id"),
    "run-nul": _bad(lambda c: c.runs.cancel(SID, "run_abc\x00"), "run_id"),
    "skill-tab": _bad(lambda c: c.skills.get(APP, "skill_\techo"), "skill_id"),
    "biz-user-crlf": _bad(
        lambda c: c.runs.create(SID, app_id=APP, biz_user_id="u1\r\nX-Evil: 1"), "biz_user_id"
    ),
    "biz-user-nul": _bad(lambda c: c.sessions.create(biz_user_id="u1\x00"), "biz_user_id"),
    "content-empty": _bad(lambda c: c.messages.create(SID, ""), "content"),
    # unicode tricks
    "session-cyrillic-s": _bad(lambda c: c.sessions.get("\u0455ession_abc"), "session_id"),
    "session-fullwidth": _bad(lambda c: c.sessions.get("session_\uff41\uff42"), "session_id"),
    "session-zero-width": _bad(lambda c: c.sessions.get("session_abc\u200b"), "session_id"),
    "message-excluded-letters": _bad(lambda c: c.messages.get(SID, "message_ilo"), "message_id"),
    "skill-cyrillic-a": _bad(lambda c: c.skills.start(APP, "skill_\u0430"), "skill_id"),
    "app-rtl-override": _bad(lambda c: c.skills.get("spring\u202e_x__c", "skill_a"), "app_id"),
    "content-lone-surrogate": _bad(lambda c: c.messages.create(SID, "hi \ud800"), "body"),
    # types: None where required, bools as ints, bytes, huge ints
    "session-none": _bad(lambda c: c.sessions.get(_wrong(None)), "session_id"),
    "session-int": _bad(lambda c: c.sessions.get(_wrong(123)), "session_id"),
    "session-bytes": _bad(lambda c: c.sessions.get(_wrong(b"session_abc")), "session_id"),
    "content-none": _bad(lambda c: c.messages.create(SID, _wrong(None)), "content"),
    "app-id-none": _bad(lambda c: c.runs.create(SID, app_id=_wrong(None)), "app_id"),
    "content-bool": _bad(lambda c: c.messages.create(SID, _wrong(True)), "content"),
    "page-size-true": _bad(lambda c: c.messages.list(SID, page_size=True), "page_size"),
    "page-size-huge": _bad(lambda c: c.runs.list(SID, page_size=10**100), "page_size"),
    "page-size-float": _bad(lambda c: c.skills.list(APP, page_size=_wrong(20.0)), "page_size"),
    "file-ids-string": _bad(lambda c: c.messages.create(SID, "hi", file_ids="file_1"), "file_ids"),
    "files-none-item": _bad(
        lambda c: c.skills.start(APP, "skill_a", files=[_wrong(None)]), "files[0]"
    ),
    "mentions-unserialisable": _bad(
        lambda c: c.messages.create(SID, "hi", mentions=[{"who": object()}]), "body"
    ),
    # lengths
    "run-id-too-long": _bad(lambda c: c.runs.get(SID, "run_" + "a" * 29), "run_id"),
    "session-id-too-long": _bad(lambda c: c.sessions.get("session_" + "a" * 25), "session_id"),
    "content-too-long": _bad(lambda c: c.messages.create(SID, "x" * 61441), "content"),
    "idempotent-id-too-long": _bad(
        lambda c: c.messages.create(SID, "hi", idempotent_id="k" * 65), "idempotent_id"
    ),
    "query-too-long": _bad(lambda c: c.skills.start(APP, "skill_a", query="q" * 40961), "query"),
    "files-too-many": _bad(
        lambda c: c.skills.start(APP, "skill_a", files=["file_1"] * 33), "files"
    ),
    "biz-user-too-long-for-create-run": _bad(
        lambda c: c.runs.create(SID, app_id=APP, biz_user_id="u" * 65), "biz_user_id"
    ),
    # JSON strings that are not JSON
    "metadata-not-json": _bad(
        lambda c: c.runs.create(SID, app_id=APP, metadata="{'single': 'quotes'}"), "metadata"
    ),
    "input-truncated-json": _bad(
        lambda c: c.skills.start(APP, "skill_a", input='{"a": 1'), "input"
    ),
    "input-nested-too-deep": _bad(
        lambda c: c.skills.start(APP, "skill_a", input="[" * 5000 + "]" * 5000), "input"
    ),
    "variables-nan-string": _bad(
        lambda c: c.skills.start(APP, "skill_a", variables="NaN"), "variables"
    ),
    "metadata-infinity-value": _bad(
        lambda c: c.sessions.create(metadata={"x": float("inf")}), "metadata"
    ),
    "input-nan-value": _bad(
        lambda c: c.skills.start(APP, "skill_a", input={"x": float("nan")}), "input"
    ),
    "metadata-bytes": _bad(lambda c: c.sessions.update(SID, metadata=_wrong(b"{}")), "metadata"),
    "skill-input-without-skill": _bad(
        lambda c: c.runs.create(SID, app_id=APP, skill_input={"a": 1}), "skill_input"
    ),
    "run-metadata-too-long": _bad(
        lambda c: c.runs.create(SID, app_id=APP, metadata={"k": "v" * 300}), "metadata"
    ),
    "run-via-run-dotdot-session": _bad(
        lambda c: c.runs.run("hi", app_id=APP, session_id="session_a/../b"), "session_id"
    ),
}


async def _invoke(call: Callable[[AilyClient], Any], client: AilyClient) -> None:
    """Call, then await the coroutine or take the first item of the iterator it returns."""
    result = call(client)
    if inspect.isawaitable(result):
        await result
    elif hasattr(result, "__anext__"):
        await result.__anext__()


@pytest.mark.parametrize(("call", "field"), list(BAD_INPUT.values()), ids=list(BAD_INPUT))
async def test_hostile_input_is_refused_before_any_request(
    fake: FakeAily, client: AilyClient, call: Callable[[AilyClient], Any], field: str
) -> None:
    """Each hostile argument raises an AilyValidationError naming the field, and nothing is sent
    (not even a token request)."""
    with pytest.raises(AilyValidationError) as info:
        await _invoke(call, client)
    assert info.value.field == field
    assert field in str(info.value)
    assert str(info.value).split(":", 1)[0] in set(ROUTES)
    assert fake.requests == []
