"""Pagination of list answers: ``page_size``, opaque ``page_token`` cursors and ``has_more``.

A list endpoint hands over its entries sorted by a numeric key; a page token holds the key
of the last entry sent, so a page stays correct when entries are added or removed meanwhile.
"""

from __future__ import annotations

import base64
import bisect
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._wire import invalid

__all__ = ["Entry", "paged"]

_DEFAULT_PAGE_SIZE = 20
_MAX_PAGE_SIZE = 100

#: One listed item: its sort key and how to render it (only done for the page sent).
Entry = tuple[tuple[float, ...], Callable[[], Any]]


def _encode_token(kind: str, key: tuple[float, ...]) -> str:
    raw = json.dumps([kind, list(key)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, kind: str) -> tuple[float, ...]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = json.loads(raw)
    except ValueError:
        raise invalid("page_token", "is malformed") from None
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or decoded[0] != kind
        or not isinstance(decoded[1], list)
        or not all(isinstance(part, (int, float)) for part in decoded[1])
    ):
        raise invalid("page_token", "is malformed")
    return tuple(decoded[1])


def _page_size(query: Mapping[str, str]) -> int:
    raw = query.get("page_size", "")
    if not raw:
        return _DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise invalid("page_size", "must be an integer") from None
    if not 1 <= size <= _MAX_PAGE_SIZE:
        raise invalid("page_size", f"must be between 1 and {_MAX_PAGE_SIZE}")
    return size


def paged(query: Mapping[str, str], kind: str, entries: Sequence[Entry]) -> dict[str, Any]:
    """Cut the page ``query`` asks for out of ``entries`` (sorted by key) and wrap it.

    Returns ``{kind: [...], "has_more": bool}`` plus ``"page_token"`` when more follow.
    """
    size = _page_size(query)
    token = query.get("page_token", "")
    start = 0
    if token:
        cursor = _decode_token(token, kind)
        start = bisect.bisect_right([key for key, _ in entries], cursor)
    chunk = entries[start : start + size]
    has_more = start + size < len(entries)
    data: dict[str, Any] = {kind: [render() for _, render in chunk], "has_more": has_more}
    if has_more and chunk:
        data["page_token"] = _encode_token(kind, chunk[-1][0])
    return data
