"""Typed, frozen views of what the Aily API answers.

All models are built by one cattrs converter (:data:`converter`, the package's own). Unknown
fields in an answer are ignored, missing optional fields take their defaults, millisecond
timestamps arrive as strings or ints and become :class:`Millis` (an ``int`` with a
``.datetime`` view). Numbers and booleans are read from JSON values or from strings (``"12"``,
``"1.5"``, ``"false"``), string maps from objects (``null``: empty); :func:`nullable` lets
``null`` stand for an absent nested object.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import math
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, ClassValidationError

__all__ = [
    "Message",
    "Millis",
    "Run",
    "RunError",
    "RunResult",
    "RunStatus",
    "Sender",
    "Session",
    "Skill",
    "SkillResult",
]


class Millis(int):
    """A millisecond epoch timestamp: an ``int``, with :attr:`datetime` for a UTC view."""

    __slots__ = ()

    @property
    def datetime(self) -> _dt.datetime:
        """The timestamp as an aware UTC :class:`datetime.datetime`."""
        return _dt.datetime.fromtimestamp(self / 1000, tz=_dt.timezone.utc)


class RunStatus(str, enum.Enum):
    """The status of a run. Unknown values from the server become terminal pseudo-members."""

    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    REQUIRES_MESSAGE = "REQUIRES_MESSAGE"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    @classmethod
    def _missing_(cls, value: object) -> RunStatus:
        # The service may grow new statuses: keep them, and treat them as terminal.
        member = str.__new__(cls, str(value))
        member._name_ = str(value)
        member._value_ = str(value)
        return member

    @property
    def is_active(self) -> bool:
        """True while the run may still change: QUEUED, IN_PROGRESS, REQUIRES_MESSAGE."""
        return self in _ACTIVE

    @property
    def is_terminal(self) -> bool:
        """True once the run has ended (any status that is not active, unknown ones included)."""
        return self not in _ACTIVE

    def __str__(self) -> str:
        return str(self.value)


_ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.IN_PROGRESS, RunStatus.REQUIRES_MESSAGE})


def _parse_json_field(value: str | None) -> Any:
    if value is None or value == "":
        return None
    return json.loads(value)


@attrs.frozen
class Session:
    """An Aily session: one conversation between a user and an Aily app."""

    id: str
    created_at: Millis | None = None
    modified_at: Millis | None = None
    created_by: str | None = None
    channel_context: str | None = None
    metadata: str | None = None

    def metadata_json(self) -> Any:
        """``metadata`` parsed as JSON (``None`` when empty)."""
        return _parse_json_field(self.metadata)


@attrs.frozen
class Sender:
    """Who wrote a message; ``sender_type`` is ``USER`` or ``ASSISTANT``."""

    entity_id: str | None = None
    identity_provider: str | None = None
    sender_type: str | None = None
    aily_id: str | None = None


@attrs.frozen
class Message:
    """A message in a session, from the user or from the app (``sender.sender_type``)."""

    id: str
    session_id: str | None = None
    run_id: str | None = None
    content_type: str | None = None
    content: str | None = None
    plain_text: str | None = None
    files: tuple[Any, ...] = ()
    quote_message_id: str | None = None
    sender: Sender | None = None
    mentions: tuple[Any, ...] = ()
    created_at: Millis | None = None
    status: str | None = None
    reasoning_content: str | None = None

    @property
    def is_assistant(self) -> bool:
        """True when the app wrote this message."""
        return self.sender is not None and self.sender.sender_type == "ASSISTANT"

    @property
    def text(self) -> str:
        """The message's text: ``content``, falling back to ``plain_text``."""
        return self.content or self.plain_text or ""


@attrs.frozen
class RunError:
    """Why a run failed."""

    code: str | None = None
    message: str | None = None


@attrs.frozen(repr=False)
class Run:
    """One run of an Aily app on a session."""

    id: str
    session_id: str | None = None
    app_id: str | None = None
    status: RunStatus = attrs.field(default=RunStatus.QUEUED, converter=RunStatus)
    created_at: Millis | None = None
    started_at: Millis | None = None
    ended_at: Millis | None = None
    error: RunError | None = None
    metadata: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from creation to end, once the run has ended."""
        if self.ended_at and self.created_at:
            return max(0.0, (self.ended_at - self.created_at) / 1000)
        return None

    def metadata_json(self) -> Any:
        """``metadata`` parsed as JSON (``None`` when empty)."""
        return _parse_json_field(self.metadata)

    def __repr__(self) -> str:
        parts = [f"id={self.id!r}", f"status={self.status.value}"]
        if self.duration is not None:
            parts.append(f"duration={self.duration:.3f}s")
        if self.error is not None:
            parts.append(f"error={self.error.code}:{self.error.message!r}")
        return f"Run({', '.join(parts)})"


@attrs.frozen
class Skill:
    """A skill of an Aily app (schemas are JSON strings, see :meth:`input_schema_json`)."""

    id: str
    label: str | None = None
    description: str | None = None
    samples: tuple[str, ...] = ()
    input_schema: str | None = None
    output_schema: str | None = None

    def input_schema_json(self) -> Any:
        """``input_schema`` parsed as JSON."""
        return _parse_json_field(self.input_schema)

    def output_schema_json(self) -> Any:
        """``output_schema`` parsed as JSON."""
        return _parse_json_field(self.output_schema)


@attrs.frozen
class SkillResult:
    """What a skill answered: ``output`` is the JSON string as sent, ``json()`` parses it."""

    output: str | None = None
    status: str | None = None

    def json(self) -> Any:
        """``output`` parsed as JSON (``None`` when empty); raises ``ValueError`` if not JSON."""
        return _parse_json_field(self.output)


@attrs.frozen(repr=False)
class RunResult:
    """A finished round trip: the final ``run`` and the app's answer ``messages``."""

    run: Run
    messages: tuple[Message, ...] = ()

    def __repr__(self) -> str:
        text = self.text
        snippet = text if len(text) <= 60 else text[:57] + "..."
        return f"RunResult({self.run!r}, messages={len(self.messages)}, text={snippet!r})"

    @property
    def text(self) -> str:
        """The answer's text: the assistant messages joined by blank lines."""
        return "\n\n".join(m.text for m in self.messages if m.text)

    @property
    def ok(self) -> bool:
        """True when the run completed."""
        return self.run.status.value == "COMPLETED"


def _structure_millis(value: Any, _: type) -> Millis | None:
    if value is None or value == "" or isinstance(value, bool):
        if isinstance(value, bool):
            raise ValueError(f"expected a millisecond timestamp, got {value!r}")
        return None
    if isinstance(value, int):
        return Millis(value) if value else None
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            raise ValueError(f"expected a millisecond timestamp, got {value[:40]!r}")
        number = int(value)
        return Millis(number) if number else None
    if isinstance(value, float) and value.is_integer():
        return Millis(int(value)) if value else None
    raise ValueError(f"expected a millisecond timestamp, got {type(value).__name__}")


def _structure_status(value: Any, _: type) -> RunStatus:
    if not isinstance(value, str):
        raise ValueError(f"expected a status string, got {type(value).__name__}")
    return RunStatus(value)


def _structure_str(value: Any, _: type) -> str:
    # Ids and texts must be strings; numbers are tolerated (some fields are sent either way).
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a string, got {type(value).__name__}")


def _structure_any_tuple(value: Any, _: type) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(value)
    raise ValueError(f"expected a list, got {type(value).__name__}")


def _structure_str_tuple(value: Any, _: type) -> tuple[str, ...]:
    return tuple(_structure_str(item, str) for item in _structure_any_tuple(value, tuple))


def _number_text(value: Any, kind: str) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ValueError(f"expected {kind}, got {type(value).__name__}")


def _structure_int(value: Any, _: type) -> int:
    # Numbers are sent as JSON numbers or as numeric strings, depending on the call.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = _number_text(value, "an integer")
    try:
        return int(text)
    except ValueError:
        number = float(text)  # "12.0"; raises ValueError for anything else
        if not number.is_integer():
            raise ValueError(f"expected an integer, got {text[:40]!r}") from None
        return int(number)


def _structure_float(value: Any, _: type) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        number = float(_number_text(value, "a number"))
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _structure_bool(value: Any, _: type) -> bool:
    # ``bool("false")`` is True: read the usual spellings, refuse the rest.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if value in (0, 1) and not isinstance(value, float):
        return bool(value)
    raise ValueError(f"expected a boolean, got {type(value).__name__}")


def _structure_str_map(value: Any, _: type) -> dict[str, str]:
    # A string-to-string map (e.g. a label per locale); null is empty, null values are left out.
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    return {str(k): _structure_str(v, str) for k, v in value.items() if v is not None}


def _optional(hook: Any) -> Any:
    def structure(value: Any, typ: type) -> Any:
        return None if value is None or value == "" else hook(value, typ)

    return structure


def _is(expected: Any) -> Any:
    return lambda typ: typ == expected


def _register_nullable(conv: cattrs.Converter, cls: type) -> None:
    hook = conv.get_structure_hook(cls)

    def _nullable(value: Any, typ: type, _hook: Any = hook) -> Any:
        if value is None or value == {}:
            return None
        if not isinstance(value, Mapping):
            raise ValueError(f"expected an object, got {type(value).__name__}")
        return _hook(value, typ)

    conv.register_structure_hook(cls, _nullable)


def wire_field(raw: Mapping[str, Any], key: str, typ: Any, owner: type) -> Any:
    """``raw[key]`` structured as ``typ``, for hand-written hooks of ``owner`` (answers whose
    names differ from the model's): a failure keeps the field's path (``data.key``) for
    :func:`cattrs.transform_error`, as cattrs' own hooks do."""
    try:
        return converter.structure(raw.get(key), typ)
    except Exception as exc:
        note = AttributeValidationNote(f"Structuring {owner.__name__} @ {key}", key, typ)
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]
        raise ClassValidationError(f"While structuring {owner.__name__}", [exc], owner) from None


def empty_if_null(*list_types: Any) -> None:
    """Let ``null`` stand for an empty list of these types (``tuple[Model, ...]``)."""
    for typ in list_types:
        hook = converter.get_structure_hook(typ)

        def _hook(value: Any, t: Any, _hook: Any = hook) -> Any:
            return () if value is None else _hook(value, t)

        converter.register_structure_hook_func(_is(typ), _hook)


def nullable(*classes: type) -> None:
    """Let ``null`` (or ``{}``) stand for an absent nested object of these model classes:
    the field holding one becomes ``None``. Call it once the classes are defined."""
    for cls in classes:
        _register_nullable(converter, cls)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(Millis, _structure_millis)
    conv.register_structure_hook(RunStatus, _structure_status)
    conv.register_structure_hook(str, _structure_str)
    any_tuple, str_tuple = tuple[Any, ...], tuple[str, ...]
    conv.register_structure_hook_func(lambda t: t == any_tuple, _structure_any_tuple)
    conv.register_structure_hook_func(lambda t: t == str_tuple, _structure_str_tuple)
    # Direct hooks for the optional scalars: cheaper than cattrs' generic union dispatch, and
    # run once per field of every answer.
    optional_str, optional_millis = str | None, Millis | None

    def _opt_str(value: Any, _: type) -> str | None:
        return None if value is None else _structure_str(value, str)

    conv.register_structure_hook_func(lambda t: t == optional_str, _opt_str)
    conv.register_structure_hook_func(lambda t: t == optional_millis, _structure_millis)
    # Numbers and booleans as JSON values or as strings; string maps (null is empty).
    for scalar, hook in ((int, _structure_int), (float, _structure_float), (bool, _structure_bool)):
        conv.register_structure_hook(scalar, hook)
        conv.register_structure_hook_func(_is(scalar | None), _optional(hook))
    conv.register_structure_hook_func(_is(dict[str, str]), _structure_str_map)
    # ``null`` for a nested object means "absent".
    for cls in (Sender, RunError):
        _register_nullable(conv, cls)
    return conv


#: The one converter every model is built and unstructured with.
converter = _make_converter()
