"""Where a queued batch lives in Redis: its header, one entry per item, and its events.

For a batch named ``NAME`` (under ``prefix``, ``"aily:batch"`` by default):

* ``PREFIX:NAME:batch``: the header, the same line a checkpoint file starts with
  (``{"checkpoint": "aily_async.batch", "batch": {"kind": ..., "app_id": ...}}``): a batch
  enqueued again under the same name must be the same batch;
* ``PREFIX:NAME:items``: a hash from each item's key (as JSON: ``3``, ``"a"``) to its
  :class:`Entry`: the record a checkpoint would hold for it (``BatchResult.to_record()``, or
  the pending record of a run item) with the job that wrote it and its state;
* ``PREFIX:NAME:events``: a stream of ``started`` / ``deferred`` / ``done`` events (key, job,
  worker), what the enqueuing process follows to report results as they finish.

Every key expires ``ttl`` seconds after its last write. An item's job id is
``PREFIX:NAME:KEY`` (the key as JSON), so enqueuing an item twice is one job.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, Literal, cast

import attrs
from redis.asyncio import Redis

from .._errors import CheckpointError
from ..batch._checkpoint import FORMAT, Key, describe, dumps

__all__ = ["DEFAULT_PREFIX", "DEFAULT_TTL", "BatchStore", "Entry", "State", "key_json"]

DEFAULT_PREFIX = "aily:batch"
#: Seconds a batch's keys live after their last write (7 days).
DEFAULT_TTL = 7 * 24 * 3600.0
#: Events kept per batch (approximately); older ones are trimmed (results stay in the hash).
MAX_EVENTS = 100_000

#: ``"pending"``: a run item's pending record (what finds its run); ``"sending"``: a skill
#: call may be in the air; ``"done"``: the item's final record (``ok`` true or false).
State = Literal["pending", "sending", "done"]


def key_json(key: Key) -> str:
    """An item key as the JSON text that names it in Redis (``3`` and ``"3"`` differ)."""
    return dumps(key)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@attrs.frozen
class Entry:
    """What Redis holds of one item: its ``record``, the ``job`` (enqueue token) that wrote
    it, and its ``state``."""

    job: str
    state: State
    record: Mapping[str, Any]

    @property
    def done(self) -> bool:
        """True for a final record."""
        return self.state == "done"

    @property
    def ok(self) -> bool:
        """True for a final record of success."""
        return self.done and self.record.get("ok") is True

    @property
    def pending(self) -> Mapping[str, Any] | None:
        """What finds the item's run, if the record keeps it."""
        pending = self.record.get("pending")
        return pending if isinstance(pending, Mapping) else None

    def dumps(self) -> str:
        """The entry as one JSON text."""
        return dumps({"job": self.job, "state": self.state, "record": self.record})

    @classmethod
    def loads(cls, raw: Any) -> Entry | None:
        """An entry read back (``None`` for nothing, or for what is not an entry)."""
        if raw is None:
            return None
        try:
            data = json.loads(_text(raw))
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("state") not in ("pending", "sending", "done"):
            return None
        record = data.get("record")
        job = str(data.get("job", ""))
        return cls(job, data["state"], record if isinstance(record, dict) else {})


@attrs.frozen
class Event:
    """One event of a batch's stream: ``kind`` is ``started``, ``deferred`` or ``done``."""

    id: str
    key: str
    kind: str
    job: str
    worker: str


class BatchStore:
    """The Redis keys of one queued batch (see the module docs); ``redis`` is a
    ``redis.asyncio`` client (arq's pool is one)."""

    __slots__ = ("_events", "_header", "_items", "_prefix", "_ttl_ms", "name", "redis")

    def __init__(
        self, redis: Redis, name: str, *, prefix: str = DEFAULT_PREFIX, ttl: float = DEFAULT_TTL
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a queued batch needs a name (a non-empty string), got {name!r}")
        if not ttl > 0 or not math.isfinite(ttl):
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        self.redis = redis
        self.name = name
        self._prefix = prefix
        base = f"{prefix}:{name}"
        self._header = f"{base}:batch"
        self._items = f"{base}:items"
        self._events = f"{base}:events"
        self._ttl_ms = math.ceil(ttl * 1000)

    def job_id(self, key: str) -> str:
        """The queue's job id of the item whose key (as JSON) is ``key``."""
        return f"{self._prefix}:{self.name}:{key}"

    # -- the header -------------------------------------------------------------------------

    async def claim(self, identity: Mapping[str, Any]) -> None:
        """Make ``identity`` the batch's header, or check it is the header already there.

        Raises :class:`CheckpointError` if the name holds another batch."""
        header = dumps({"checkpoint": FORMAT, "batch": dict(identity)})
        if await self.redis.set(self._header, header, nx=True, px=self._ttl_ms):
            return
        theirs = await self.header()
        ours = json.loads(header)
        if theirs is None:  # expired between the two calls: take it
            await self.redis.set(self._header, header, px=self._ttl_ms)
            return
        if theirs != ours:
            batch = theirs.get("batch")
            shown = describe(batch) if isinstance(batch, dict) else dumps(theirs)
            raise CheckpointError(
                f"queued batch {self.name!r} belongs to another batch ({shown}), not to this "
                f"one ({describe(ours['batch'])}); nothing was enqueued: use another name"
            )
        await self.redis.pexpire(self._header, self._ttl_ms)

    async def header(self) -> dict[str, Any] | None:
        """The batch's header, if it has one."""
        raw = await self.redis.get(self._header)
        if raw is None:
            return None
        data = json.loads(_text(raw))
        return data if isinstance(data, dict) else None

    # -- items --------------------------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        """The entry of the item ``key`` (JSON), if any."""
        raw = await cast("Awaitable[Any]", self.redis.hget(self._items, key))
        return Entry.loads(raw)

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """The entries of ``keys`` (JSON), in that order."""
        if not keys:
            return []
        raw = await cast("Awaitable[list[Any]]", self.redis.hmget(self._items, list(keys)))
        return [Entry.loads(value) for value in raw]

    async def put(self, key: str, entry: Entry | None) -> None:
        """Write (or, with ``None``, delete) the entry of the item ``key``."""
        async with self.redis.pipeline(transaction=True) as pipe:
            if entry is None:
                pipe.hdel(self._items, key)
            else:
                pipe.hset(self._items, key, entry.dumps())
            pipe.pexpire(self._items, self._ttl_ms)
            pipe.pexpire(self._header, self._ttl_ms)
            await pipe.execute()

    async def finish(self, key: str, entry: Entry, worker: str) -> None:
        """Write the item's final entry and its ``done`` event, atomically."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._items, key, entry.dumps())
            pipe.xadd(self._events, self._fields(key, "done", entry.job, worker),
                      maxlen=MAX_EVENTS, approximate=True)  # fmt: skip
            for name in (self._items, self._events, self._header):
                pipe.pexpire(name, self._ttl_ms)
            await pipe.execute()

    async def entries(self) -> AsyncIterator[tuple[str, Entry]]:
        """Every item entry of the batch (in no order)."""
        async for field, value in self.redis.hscan_iter(self._items):
            entry = Entry.loads(value)
            if entry is not None:
                yield _text(field), entry

    # -- events -------------------------------------------------------------------------------

    @staticmethod
    def _fields(key: str, kind: str, job: str, worker: str) -> dict[Any, Any]:
        return {"key": key, "event": kind, "job": job, "worker": worker}

    async def event(self, key: str, kind: str, job: str, worker: str) -> None:
        """Add a ``started`` or ``deferred`` event of the item ``key``."""
        await self.redis.xadd(
            self._events,
            self._fields(key, kind, job, worker),
            maxlen=MAX_EVENTS,
            approximate=True,
        )

    async def last_event(self) -> str:
        """The id of the latest event (``"0-0"`` when there is none)."""
        latest = await self.redis.xrevrange(self._events, count=1)
        return _text(latest[0][0]) if latest else "0-0"

    async def events(self, after: str, *, block: float, count: int = 1000) -> list[Event]:
        """Events after the id ``after``, waiting up to ``block`` seconds for the first."""
        answer = await self.redis.xread(
            {self._events: after}, count=count, block=max(1, round(block * 1000))
        )
        found: list[Event] = []
        for _stream, entries in answer or []:
            for event_id, fields in entries:
                data = {_text(name): _text(value) for name, value in fields.items()}
                found.append(
                    Event(
                        _text(event_id),
                        data.get("key", ""),
                        data.get("event", ""),
                        data.get("job", ""),
                        data.get("worker", ""),
                    )
                )
        return found
