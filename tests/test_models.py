"""Models: decoding answers through the private converter, tolerantly and with paths."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import cattrs
import pytest

from aily_async import (
    AilyClient,
    AilyResponseError,
    Message,
    Millis,
    Run,
    RunError,
    RunStatus,
    Sender,
    Session,
    Skill,
    SkillResult,
)
from aily_async._models import converter
from aily_async.testing import FakeAily

STAMP = 1711975665710
STAMP_UTC = dt.datetime(2024, 4, 1, 12, 47, 45, 710000, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("raw", [str(STAMP), STAMP, f" {STAMP} ", float(STAMP)])
def test_timestamps_become_millis(raw: object) -> None:
    """A millisecond timestamp sent as a string or a number becomes a Millis int."""
    run = converter.structure({"id": "run_1", "created_at": raw}, Run)
    assert type(run.created_at) is Millis
    assert run.created_at == STAMP
    assert run.created_at.datetime == STAMP_UTC


@pytest.mark.parametrize("raw", ["0", 0, "", None])
def test_unset_timestamps_are_none(raw: object) -> None:
    """The service's "0" (not started yet), an empty string or null mean no timestamp."""
    run = converter.structure({"id": "run_1", "started_at": raw, "ended_at": raw}, Run)
    assert run.started_at is None
    assert run.ended_at is None
    assert run.duration is None


@pytest.mark.parametrize("raw", ["yesterday", True, [1], "1.5e3"])
def test_bad_timestamps_are_rejected(raw: object) -> None:
    """A timestamp that is not a whole number of milliseconds fails to decode."""
    with pytest.raises(cattrs.ClassValidationError) as info:
        converter.structure({"id": "run_1", "created_at": raw}, Run)
    assert cattrs.transform_error(info.value) == [
        "invalid value for type, expected aily_async.Millis | None @ $.created_at"
    ]


def test_millis_is_an_int_with_a_utc_datetime() -> None:
    """Millis compares and computes like an int and converts to an aware UTC datetime."""
    stamp = Millis(STAMP)
    assert stamp + 1 == STAMP + 1
    assert stamp.datetime.tzinfo is dt.timezone.utc
    assert stamp.datetime.timestamp() == STAMP / 1000


@pytest.mark.parametrize(
    ("status", "active"),
    [
        ("QUEUED", True),
        ("IN_PROGRESS", True),
        ("REQUIRES_MESSAGE", True),
        ("COMPLETED", False),
        ("FAILED", False),
        ("CANCELLED", False),
        ("EXPIRED", False),
    ],
)
def test_known_statuses(status: str, active: bool) -> None:
    """The seven documented statuses are members, active or terminal as documented."""
    member = RunStatus(status)
    assert member is RunStatus[status]
    assert member.is_active is active
    assert member.is_terminal is not active
    assert member == status
    assert str(member) == status


def test_unknown_status_is_terminal_and_kept() -> None:
    """A status the client does not know decodes without error, keeps its value, is terminal."""
    run = converter.structure({"id": "run_1", "status": "ARCHIVED"}, Run)
    assert run.status.value == "ARCHIVED"
    assert run.status == "ARCHIVED"
    assert run.status.is_terminal
    assert not run.status.is_active
    assert "ARCHIVED" in repr(run)


def test_unknown_fields_are_ignored() -> None:
    """Fields the models do not know (new API fields) are ignored, everywhere."""
    message = converter.structure(
        {
            "id": "message_1",
            "brand_new": {"x": 1},
            "sender": {"sender_type": "ASSISTANT", "avatar": "https://x"},
            "created_at": "1711975665710",
        },
        Message,
    )
    assert message.id == "message_1"
    assert message.sender == Sender(sender_type="ASSISTANT")
    assert message.is_assistant
    run = converter.structure({"id": "run_1", "error": {"code": "e1", "trace": "..."}}, Run)
    assert run.error == RunError(code="e1")


def test_missing_optional_fields_take_defaults() -> None:
    """An answer holding only an id decodes, optional fields take their defaults."""
    run = converter.structure({"id": "run_1"}, Run)
    assert run == Run(id="run_1")
    assert run.status is RunStatus.QUEUED
    message = converter.structure({"id": "message_1", "sender": None, "files": None}, Message)
    assert message.sender is None
    assert message.files == ()
    assert message.text == ""


def test_empty_nested_objects_are_none() -> None:
    """An empty or null error/sender object means "absent", as the service sends them."""
    run = converter.structure({"id": "run_1", "error": {}}, Run)
    assert run.error is None


def test_run_fields_and_duration() -> None:
    """A full run answer decodes every field; duration is ended_at - created_at in seconds."""
    run = converter.structure(
        {
            "id": "run_1",
            "session_id": "session_1",
            "app_id": "spring_x__c",
            "status": "FAILED",
            "created_at": "1711975665710",
            "started_at": "1711975665810",
            "ended_at": "1711975667210",
            "error": {"code": "sp_ec_sm_900101", "message": "no such skill"},
            "metadata": '{"trace": "abc"}',
        },
        Run,
    )
    assert run.status is RunStatus.FAILED
    assert run.duration == pytest.approx(1.5)
    assert run.error == RunError(code="sp_ec_sm_900101", message="no such skill")
    assert run.metadata_json() == {"trace": "abc"}
    assert "FAILED" in repr(run)
    assert "sp_ec_sm_900101" in repr(run)


def test_session_and_skill_json_views() -> None:
    """JSON-string fields stay strings, with helpers that parse them (empty means None)."""
    session = converter.structure({"id": "session_1", "metadata": '{"a": 1}'}, Session)
    assert session.metadata == '{"a": 1}'
    assert session.metadata_json() == {"a": 1}
    assert (
        converter.structure({"id": "session_1", "metadata": ""}, Session).metadata_json() is None
    )
    skill = converter.structure(
        {"id": "skill_1", "samples": ["a", "b"], "input_schema": '{"type": "object"}'}, Skill
    )
    assert skill.samples == ("a", "b")
    assert skill.input_schema_json() == {"type": "object"}
    assert skill.output_schema_json() is None


def test_skill_result_json() -> None:
    """SkillResult keeps output as sent and json() parses it; empty output is None."""
    result = converter.structure({"output": '{"answer": 42}', "status": "success"}, SkillResult)
    assert result.output == '{"answer": 42}'
    assert result.json() == {"answer": 42}
    assert SkillResult(output="").json() is None
    with pytest.raises(ValueError):  # noqa: PT011 - json.JSONDecodeError is a ValueError
        SkillResult(output="not json").json()


@pytest.mark.parametrize("model", [Session, Message, Run, RunError, Sender, Skill, SkillResult])
def test_models_are_frozen(model: type[Any]) -> None:
    """Every model is a frozen attrs class."""
    assert attrs.has(model)
    factory: Any = model
    instance = factory(id="x") if "id" in attrs.fields_dict(model) else factory()
    field = attrs.fields(model)[0].name
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(instance, field, "y")


def test_wrong_types_fail_with_a_path() -> None:
    """A field of the wrong type fails to decode (ids must be strings, lists must be lists)."""
    with pytest.raises(cattrs.ClassValidationError) as info:
        converter.structure({"id": {"nested": True}}, Run)
    assert cattrs.transform_error(info.value)[0].endswith("@ $.id")
    with pytest.raises(cattrs.ClassValidationError) as info:
        converter.structure({"id": "message_1", "files": "a"}, Message)
    assert cattrs.transform_error(info.value)[0].endswith("@ $.files")


async def test_odd_answer_decodes_end_to_end(client: AilyClient, fake: FakeAily) -> None:
    """A run answer with int timestamps, an unknown status and extra fields reaches the caller
    as a typed Run."""
    fake.inject(
        "runs.get",
        status=200,
        body={
            "code": 0,
            "msg": "success",
            "data": {
                "run": {
                    "id": "run_abc",
                    "session_id": "session_abc",
                    "status": "PAUSED_FOR_LUNCH",
                    "created_at": STAMP,
                    "ended_at": str(STAMP + 2000),
                    "shiny_new_field": [1, 2, 3],
                }
            },
        },
    )
    run = await client.runs.get("session_abc", "run_abc")
    assert run.status.is_terminal
    assert run.status.value == "PAUSED_FOR_LUNCH"
    assert run.created_at == STAMP
    assert run.duration == pytest.approx(2.0)


async def test_undecodable_answer_names_the_path(client: AilyClient, fake: FakeAily) -> None:
    """An answer that cannot be decoded raises AilyResponseError naming the call and the field
    path."""
    fake.inject(
        "runs.get",
        status=200,
        body={
            "code": 0,
            "msg": "success",
            "data": {"run": {"id": "run_abc", "created_at": "soon"}},
        },
    )
    with pytest.raises(AilyResponseError) as info:
        await client.runs.get("session_abc", "run_abc")
    text = str(info.value)
    assert text.startswith("runs.get: ")
    assert "data.run" in text
    assert "created_at" in text
