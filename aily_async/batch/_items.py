"""What a batch's work function is given: the item to do, and the worker slot doing it.

An item's records go to a :class:`Recorder`: the batch's checkpoint file, or another store
(``aily_async.queue`` keeps them in Redis) that may write asynchronously, which is why a work
function awaits :meth:`Item.flush` before an effect that a record must precede.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from ._checkpoint import Key

__all__ = ["Item", "Recorder", "Work", "Worker"]

T = TypeVar("T")


class Recorder(Protocol):
    """Where an item's records go (a :class:`~aily_async.batch._checkpoint.Checkpoint` is one)."""

    def write(self, record: Mapping[str, Any]) -> None:
        """Record ``record`` (the last record of a key wins)."""
        ...

    async def flush(self) -> None:
        """Return once every record written so far is durable."""
        ...


class Item:
    """One input of a batch on its way through a worker."""

    __slots__ = ("checkpoint", "effect", "index", "input", "key", "live", "pending", "sent")

    def __init__(
        self,
        checkpoint: Recorder | None,
        index: int,
        key: Key,
        input: Any,
        pending: Mapping[str, Any] | None,
        effect: str | None,
    ) -> None:
        self.checkpoint = checkpoint
        self.index = index
        self.key = key
        self.input = input
        #: What an interrupted batch recorded of this item's effect (a run), if anything.
        self.pending = pending
        #: What a restarted batch needs to find this item's effect, while it may still be
        #: going or may hold the answer (``None``: nothing to find). A failure record keeps it.
        self.live: dict[str, Any] | None = None
        self.effect = effect
        #: True once the item's effectful call (skills.start, runs.create) has been sent.
        self.sent = False

    def on_send(self, call: str) -> None:
        """Told of each request the item's work sends (see ``aily_async._hooks.sending``)."""
        if self.effect is None or call == self.effect:
            self.sent = True

    def note_pending(self, info: Mapping[str, Any]) -> None:
        """Checkpoint what a restarted batch needs to find the item's effect (a run that may
        exist, or does), before it counts: a kill from now on leaves it findable."""
        self.live = dict(info)
        if self.checkpoint is not None:
            self.checkpoint.write(
                {"key": self.key, "index": self.index, "input": self.input, "pending": self.live}
            )

    async def flush(self) -> None:
        """Wait until what :meth:`note_pending` recorded is durable (a checkpoint file's
        records are as soon as written; another recorder may still be writing them)."""
        if self.checkpoint is not None:
            await self.checkpoint.flush()

    def settled(self) -> None:
        """The item's effect is known to have ended with nothing to adopt: forget it."""
        self.live = None


class Worker:
    """One of a batch's ``concurrency`` workers, and what it keeps between items."""

    __slots__ = ("item", "number", "session", "stopped")

    def __init__(self, number: int) -> None:
        self.number = number
        self.item: Item | None = None
        #: Set before the batch cancels this worker (any other CancelledError is the item's).
        self.stopped = False
        #: The session a ``per_worker`` run batch keeps between items (``None``: none yet).
        self.session: str | None = None


#: An item's work: its value, or an exception that fails the item.
Work = Callable[[Item, Worker], Awaitable[T]]
