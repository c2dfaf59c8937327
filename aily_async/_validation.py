"""Client-side checks of the API's documented rules, run before any request is sent.

Each check raises :class:`AilyValidationError` (a ``ValueError``) naming the call, the field and
the rule. Ids that go into URL paths are checked against their pattern (or a safe character set
when the API documents none); every pattern admits only unreserved URL characters, so an id
can never become a path. Ids of the calls whose SDK gives no format at all (data assets,
agents) are refused only when path-like and are percent-encoded (:func:`path_id`).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from ._errors import AilyValidationError

_ID_ALPHABET = "[0-9a-hjkmnp-z]"
SESSION_ID = re.compile(rf"session_{_ID_ALPHABET}{{1,24}}")
RUN_ID = re.compile(rf"run_{_ID_ALPHABET}{{1,28}}")
MESSAGE_ID = re.compile(rf"message_{_ID_ALPHABET}{{1,24}}")
# App and skill ids have no documented pattern; allow what real ids use, nothing path-like.
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+")

JsonText = str | Mapping[str, Any] | list[Any]


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_str(call: str, field: str, value: object, *, max_len: int, required: bool) -> None:
    """``value`` must be a ``str`` of at most ``max_len`` characters (non-empty when required)."""
    if not isinstance(value, str):
        raise AilyValidationError(field, "must be a string", call=call, got=type(value).__name__)
    if required and not value:
        raise AilyValidationError(field, "must not be empty", call=call)
    if len(value) > max_len:
        raise AilyValidationError(
            field, f"must be at most {max_len} characters", call=call, got=f"{len(value)}"
        )


def check_id(call: str, field: str, value: object, pattern: re.Pattern[str], max_len: int) -> str:
    """Check an id against its pattern and return it ready for a URL path.

    Every pattern here admits only unreserved URL characters (letters, digits, ``_``, ``-``),
    so an id that matches is its own percent-encoding and can never be a path.
    """
    check_str(call, field, value, max_len=max_len, required=True)
    assert isinstance(value, str)
    if not pattern.fullmatch(value):
        raise AilyValidationError(
            field, f"must match {pattern.pattern}", call=call, got=_show(value)
        )
    return value


def session_id(call: str, value: object, field: str = "session_id") -> str:
    """A session id (``session_…``, at most 32 characters), encoded for a path."""
    return check_id(call, field, value, SESSION_ID, 32)


def run_id(call: str, value: object, field: str = "run_id") -> str:
    """A run id (``run_…``), encoded for a path."""
    return check_id(call, field, value, RUN_ID, 32)


def message_id(call: str, value: object, field: str = "message_id") -> str:
    """A message id (``message_…``), encoded for a path."""
    return check_id(call, field, value, MESSAGE_ID, 32)


def app_id(call: str, value: object, field: str = "app_id") -> str:
    """An Aily app id (``spring_…__c``, at most 64 characters), encoded for a path."""
    return check_id(call, field, value, _SAFE_SEGMENT, 64)


def skill_id(call: str, value: object, field: str = "skill_id") -> str:
    """A skill id (``skill_…``, at most 32 characters), encoded for a path."""
    return check_id(call, field, value, _SAFE_SEGMENT, 32)


def path_id(call: str, field: str, value: object) -> str:
    """An id the API gives no format for (a data asset's, an agent's...), percent-encoded for
    a path: a non-empty string with no ``/``, whitespace or control character, not ``.`` or
    ``..``. Every other character is encoded, so the id stays one path segment."""
    if not isinstance(value, str):
        raise AilyValidationError(field, "must be a string", call=call, got=type(value).__name__)
    if not value:
        raise AilyValidationError(field, "must not be empty", call=call)
    if value in (".", ".."):
        raise AilyValidationError(field, "must not be '.' or '..'", call=call)
    for ch in value:
        if ch == "/" or ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs"):
            raise AilyValidationError(
                field,
                "must not contain '/', whitespace or control characters",
                call=call,
                got=_show(value),
            )
    return quote(value, safe="")


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_text(call: str, field: str, value: object, *, max_len: int) -> str:
    """A field the API takes as a JSON string: a dict/list is serialised, a string must parse."""
    if isinstance(value, Mapping | list):
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise AilyValidationError(
                field, f"must be JSON-serialisable ({exc})", call=call
            ) from None
    elif isinstance(value, str):
        text = value
        try:
            json.loads(text, parse_constant=_not_json)  # NaN/Infinity are not JSON
        except (ValueError, RecursionError):
            raise AilyValidationError(
                field, "must be a JSON string (or a dict)", call=call, got=_show(value)
            ) from None
    else:
        raise AilyValidationError(
            field, "must be a dict or a JSON string", call=call, got=type(value).__name__
        )
    if len(text) > max_len:
        raise AilyValidationError(
            field,
            f"must be at most {max_len} characters as JSON",
            call=call,
            got=f"{len(text)}",
        )
    return text


def str_list(
    call: str, field: str, value: object, *, max_items: int, max_len: int = 256
) -> list[str]:
    """A list of non-empty strings, at most ``max_items`` long."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise AilyValidationError(
            field, "must be a list of strings", call=call, got=type(value).__name__
        )
    items = list(value)
    if len(items) > max_items:
        raise AilyValidationError(
            field, f"must hold at most {max_items} items", call=call, got=f"{len(items)}"
        )
    for index, item in enumerate(items):
        check_str(call, f"{field}[{index}]", item, max_len=max_len, required=True)
    return items


def page_size(call: str, value: object) -> int:
    """A page size: an int from 1 to 100."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100:
        raise AilyValidationError(
            "page_size", "must be an int from 1 to 100", call=call, got=_show(value)
        )
    return value


def text(call: str, field: str, value: object, *, required: bool = True) -> str:
    """A string (non-empty when required), for fields whose length the API does not document."""
    if not isinstance(value, str):
        raise AilyValidationError(field, "must be a string", call=call, got=type(value).__name__)
    if required and not value:
        raise AilyValidationError(field, "must not be empty", call=call)
    return value


def text_list(call: str, field: str, value: object) -> list[str]:
    """A list of non-empty strings, for lists whose size the API does not document."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise AilyValidationError(
            field, "must be a list of strings", call=call, got=type(value).__name__
        )
    items = list(value)
    for index, item in enumerate(items):
        text(call, f"{field}[{index}]", item)
    return items


def flag(call: str, field: str, value: object) -> bool:
    """A ``bool`` (not a truthy value of another type)."""
    if not isinstance(value, bool):
        raise AilyValidationError(field, "must be True or False", call=call, got=_show(value))
    return value


def positive_int(call: str, field: str, value: object) -> int:
    """An ``int`` of at least 1 (a page size whose maximum the API does not document)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise AilyValidationError(
            field, "must be an int of at least 1", call=call, got=_show(value)
        )
    return value


def biz_user_id(call: str, value: object, *, max_len: int) -> str:
    """The optional ``X-Aily-BizUserID`` header value."""
    check_str(call, "biz_user_id", value, max_len=max_len, required=False)
    assert isinstance(value, str)
    if any(ch in value for ch in "\r\n\x00"):
        raise AilyValidationError("biz_user_id", "must not contain line breaks", call=call)
    return value


def seconds(call: str, field: str, value: object) -> float:
    """A positive, finite number of seconds (a ``timeout``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value > 0
        or value == float("inf")
    ):
        raise AilyValidationError(
            field, "must be a number of seconds > 0", call=call, got=_show(value)
        )
    return float(value)
