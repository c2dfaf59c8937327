"""What a batch input may be: the fields of skill and run inputs, their checks, and keys.

A skill input is a query string or a dict of :data:`SKILL_FIELDS`; a run input is a message
string or a dict of :data:`RUN_FIELDS` with a ``message`` (``content`` is accepted for it).
An item's checkpoint key is its index, a function of its input, or a field of a dict input.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import Any

from .. import _validation as v
from .._errors import AilyValidationError
from ._checkpoint import Key

__all__ = [
    "RUN_FIELDS",
    "SKILL_FIELDS",
    "Inputs",
    "KeyFunction",
    "KeyOption",
    "key_option",
    "run_args",
    "run_batch",
    "skill_args",
    "skill_batch",
    "skill_call",
    "without",
]

#: The fields a dict input of ``batch.skills`` may have (the arguments of ``skills.start``).
SKILL_FIELDS = ("query", "input", "files", "variables", "biz_user_id")
#: The fields a dict input of ``batch.runs`` may have (``content`` is also read as ``message``).
RUN_FIELDS = ("message", "content_type", "skill_id", "skill_input", "metadata", "biz_user_id")

#: What a batch accepts as inputs.
Inputs = Iterable[Any] | AsyncIterable[Any]
#: An item's checkpoint key (a str or int, unique in the batch): a function of the input, or
#: the name of a field of dict inputs (taken out of the input before the call).
KeyFunction = Callable[[Any], Key]
KeyOption = KeyFunction | str | None


def skill_args(raw: Any) -> dict[str, Any]:
    """The ``skills.start`` arguments of a skill input."""
    if isinstance(raw, str):
        return {"query": raw}
    if isinstance(raw, Mapping):
        unknown = sorted(str(name) for name in raw if name not in SKILL_FIELDS)
        if unknown:
            raise AilyValidationError(
                "input",
                f"has unknown fields {unknown} (expected: {', '.join(SKILL_FIELDS)})",
                call="batch.skills",
            )
        return dict(raw)
    raise AilyValidationError(
        "input",
        "must be a query string or a dict of skills.start arguments",
        call="batch.skills",
        got=type(raw).__name__,
    )


def skill_call(raw: Any, field: str | None, biz_user_id: str | None) -> dict[str, Any]:
    """The ``skills.start`` arguments of a skill input (key ``field`` dropped), with the
    batch's ``biz_user_id`` unless the input names its own."""
    args = skill_args(without(raw, field))
    if biz_user_id is not None:
        args.setdefault("biz_user_id", biz_user_id)
    return args


def skill_batch(call: str, app_id: str, skill_id: str, biz_user_id: str | None) -> dict[str, Any]:
    """Check a skill batch's arguments; return what defines it (its checkpoint's header,
    the same for ``client.batch`` and ``aily_async.queue``)."""
    v.app_id(call, app_id)
    v.skill_id(call, skill_id)
    kind = "skills.start"
    return {"kind": kind, "app_id": app_id, "skill_id": skill_id, "biz_user_id": biz_user_id}


def run_batch(
    call: str, app_id: str, skill_id: str | None, timeout: float | None, biz_user_id: str | None
) -> dict[str, Any]:
    """Check a run batch's arguments; return what defines it (see :func:`skill_batch`)."""
    v.check_str(call, "app_id", app_id, max_len=64, required=True)
    if skill_id is not None:
        v.check_str(call, "skill_id", skill_id, max_len=32, required=True)
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    return {"kind": "runs", "app_id": app_id, "skill_id": skill_id, "biz_user_id": biz_user_id}


def run_args(raw: Any) -> dict[str, Any]:
    """The fields of a run input, ``message`` included."""
    if isinstance(raw, str):
        return {"message": raw}
    if not isinstance(raw, Mapping):
        raise AilyValidationError(
            "input",
            "must be a message string or a dict with 'message'",
            call="batch.runs",
            got=type(raw).__name__,
        )
    args = dict(raw)
    if "content" in args and "message" not in args:
        args["message"] = args.pop("content")
    unknown = sorted(str(name) for name in args if name not in RUN_FIELDS)
    if unknown:
        raise AilyValidationError(
            "input",
            f"has unknown fields {unknown} (expected: {', '.join(RUN_FIELDS)})",
            call="batch.runs",
        )
    if not isinstance(args.get("message"), str):
        raise AilyValidationError("input.message", "is required (a string)", call="batch.runs")
    return args


def key_option(key: KeyOption, keep: tuple[str, ...] = ()) -> tuple[KeyFunction | None, str | None]:
    """A key function, and the input field to drop before the call (for ``key="field"``,
    unless the field is one of the call's own arguments ``keep``: ``key="query"`` keys by the
    query and still sends it)."""
    if key is None or callable(key):
        return key, None
    if not isinstance(key, str) or not key:
        raise TypeError(f"key must be a function or a field name, got {key!r}")
    field = key

    def of_field(raw: Any) -> Key:
        if not isinstance(raw, Mapping) or field not in raw:
            raise AilyValidationError("input", f"has no key field {field!r}", call="batch")
        value: Key = raw[field]
        return value

    return of_field, (None if field in keep else field)


def without(raw: Any, field: str | None) -> Any:
    """``raw`` without ``field`` (a dict input's key field, not sent)."""
    if field is not None and isinstance(raw, Mapping) and field in raw:
        return {name: value for name, value in raw.items() if name != field}
    return raw
