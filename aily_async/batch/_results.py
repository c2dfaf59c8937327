"""A batch item's result, and its JSON Lines record (what a checkpoint and ``aily batch`` write).

A record is a JSON object::

    {"key": 3, "index": 3, "ok": true, "input": "...", "value": {...}, "elapsed": 0.412}
    {"key": 4, "index": 4, "ok": false, "input": "...", "error": {"type": "...", ...}}

``value`` is the result's value unstructured (attrs models become dicts); ``error`` names the
exception's type and message, and its ``code``, ``http_status`` and ``log_id`` when it has them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from .._errors import CheckpointError
from .._models import converter
from ._checkpoint import Key, to_json

__all__ = ["BatchResult", "error_record", "restored"]

logger = logging.getLogger("aily_async")

T = TypeVar("T")


@attrs.frozen(repr=False)
class BatchResult(Generic[T]):
    """One item of a batch: its ``value``, or the ``error`` it failed with (never both).

    ``index`` is the input's position, ``key`` its checkpoint key (the index unless a ``key``
    function was given), ``elapsed`` the seconds it took, ``resumed`` true when it was read
    from the checkpoint instead of being done again.
    """

    index: int
    key: Key
    input: Any
    value: T | None = None
    error: Exception | None = None
    elapsed: float = 0.0
    resumed: bool = False

    @property
    def ok(self) -> bool:
        """True when the item succeeded."""
        return self.error is None

    def unwrap(self) -> T:
        """The value, or raise the item's error."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]

    def to_record(self) -> dict[str, Any]:
        """The result as one JSON-ready record (the line a checkpoint holds for it): ``key``,
        ``index``, ``ok``, ``input``, then ``value`` (unstructured) or ``error`` (a dict of
        its ``type``, ``message`` and, when known, ``code``, ``http_status``, ``log_id``), and
        ``elapsed`` in seconds."""
        record: dict[str, Any] = {
            "key": self.key,
            "index": self.index,
            "ok": self.ok,
            "input": self.input,
        }
        if self.error is None:
            record["value"] = converter.unstructure(self.value)
        else:
            record["error"] = error_record(self.error)
        record["elapsed"] = round(self.elapsed, 3)
        return record

    def __repr__(self) -> str:
        key = "" if self.key == self.index else f" key={self.key!r}"
        took = "resumed" if self.resumed else f"{self.elapsed:.2f}s"
        if self.error is not None:
            outcome = f"error {type(self.error).__name__}: {_short(str(self.error), 120)}"
        else:
            outcome = f"ok {_short(repr(self.value), 120)}"
        return f"<BatchResult #{self.index}{key} {outcome} {took}>"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_record(error: BaseException) -> dict[str, Any]:
    """What a record says of an error: its type and message, and its API details if any."""
    record: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    for name in ("code", "http_status", "log_id"):
        value = getattr(error, name, None)
        if value is not None:
            record[name] = value
    return record


def restored(
    record: Mapping[str, Any], index: int, key: Key, raw: Any, decode: Callable[[Any], T]
) -> BatchResult[T] | None:
    """What a checkpoint ``record`` of key ``key`` makes of input ``raw``: a result read back
    (``resumed``), a failure (the record is of another input), or ``None`` (do the item)."""
    if "input" in record and record["input"] != to_json(raw):
        error = CheckpointError(
            f"the checkpoint holds a different input under key {key!r}: were the "
            "inputs reordered? Use key= to key items by content, or a new checkpoint"
        )
        return BatchResult(index, key, raw, error=error)
    if record.get("ok") is not True:
        return None
    try:
        value = decode(record.get("value"))
    except Exception:
        logger.warning("checkpoint: cannot read the value of key %r, redoing it", key)
        return None
    elapsed = record.get("elapsed")
    return BatchResult(
        index,
        key,
        raw,
        value=value,
        elapsed=float(elapsed) if isinstance(elapsed, int | float) else 0.0,
        resumed=True,
    )
