"""What becomes of an input: an item to do, or a result at once (a bad or duplicate key, or
an item the checkpoint holds as done).

An item the checkpoint holds as pending, or as failed with a pending part (its effect may
still be going, or hold the answer), carries that part for its work to adopt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from ._checkpoint import Checkpoint, Key, is_key
from ._inputs import KeyFunction
from ._items import Item
from ._results import BatchResult, restored

__all__ = ["Admission", "item_key"]

T = TypeVar("T")


def item_key(
    index: int, raw: Any, key_fn: KeyFunction | None, seen: set[Key]
) -> Key | BatchResult[Any]:
    """Input ``raw``'s key (noted in ``seen``), or its failure: a bad or duplicate key."""
    try:
        key = index if key_fn is None else key_fn(raw)
        if not is_key(key):
            raise TypeError(f"key() must return a str or an int, got {type(key).__name__}")
    except Exception as exc:
        return BatchResult(index, index, raw, error=exc)
    if key in seen:
        duplicate = ValueError(f"duplicate key {key!r} (input #{index}): keys must be unique")
        return BatchResult(index, key, raw, error=duplicate)
    seen.add(key)
    return key


class Admission(Generic[T]):
    """Admits a batch's inputs one by one, against the records of its checkpoint."""

    __slots__ = ("_checkpoint", "_decode", "_effect", "_key_fn", "_restored", "_seen")

    def __init__(
        self,
        key: KeyFunction | None,
        decode: Callable[[Any], T],
        checkpoint: Checkpoint | None,
        effect: str | None,
    ) -> None:
        self._key_fn = key
        self._decode = decode
        self._checkpoint = checkpoint
        self._effect = effect
        self._seen: set[Key] = set()
        self._restored: dict[Key, dict[str, Any]] = {}

    def open(self) -> None:
        """Open the checkpoint (if any) and read what it holds."""
        if self._checkpoint is not None:
            self._restored = self._checkpoint.open()

    def admit(self, index: int, raw: Any) -> Item | BatchResult[T]:
        """The item input ``raw`` (number ``index``) becomes, or its result at once."""
        key = item_key(index, raw, self._key_fn, self._seen)
        if isinstance(key, BatchResult):
            return key
        record = self._restored.get(key)
        pending: Mapping[str, Any] | None = None
        if record is not None:
            done = restored(record, index, key, raw, self._decode)
            if done is not None:
                return done
            if isinstance(record.get("pending"), dict):
                pending = record["pending"]
        return Item(self._checkpoint, index, key, raw, pending, self._effect)
