"""The batch front end, ``client.batch``: what a skill, run or mapped item's work is.

:meth:`Batch.skills` starts a skill per input, :meth:`Batch.runs` asks an app each input (a
message, a run, its answer), :meth:`Batch.map` awaits any function per input; each returns a
:class:`BatchRun` that does the items.

A run item's work is :class:`~aily_async.batch._run_items.RunWork`. Each batch names what
defines it (its kind, app, skill...): the header of its checkpoint, checked on a restart.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol, TypeVar

from .._models import RunResult, SkillResult, converter
from .._polling import PollPolicy
from .._resources import Skills
from ._engine import BatchRun, Limiters
from ._inputs import (
    RUN_FIELDS,
    SKILL_FIELDS,
    Inputs,
    KeyOption,
    key_option,
    run_batch,
    skill_batch,
    skill_call,
)
from ._items import Item, Worker
from ._progress import ProgressOption
from ._run_items import RunClient, RunWork

__all__ = ["Batch", "BatchClient"]

T = TypeVar("T")


class BatchClient(Limiters, RunClient, Protocol):
    """What a batch needs of the client (``AilyClient`` is one)."""

    skills: Skills


def _decode_skill(raw: Any) -> SkillResult:
    return converter.structure(raw, SkillResult)


def _decode_run(raw: Any) -> RunResult:
    return converter.structure(raw, RunResult)


def _as_is(raw: Any) -> Any:
    return raw


class Batch:
    """Batch fan-out of skill calls and runs: ``client.batch.skills(...)``,
    ``client.batch.runs(...)``, ``client.batch.map(...)``.

    Each returns a :class:`BatchRun`: ``await`` it for a list of :class:`BatchResult` in input
    order, or ``async for`` over it (inside ``async with``) for results as they finish
    (``ordered=True``: in input order). Options shared by all three:

    * ``concurrency``: items worked on at once (each under the client's rate limiter);
    * ``key``: each input's checkpoint key (default: its index): a function of the input, or
      the name of a field of dict inputs (that field is not sent, unless it is a call argument
      such as ``query`` or ``message``);
    * ``progress``: ``True`` for a progress bar on stderr, or a callback taking a
      :class:`BatchProgress` after each item;
    * ``checkpoint``: a JSON Lines file of finished items; a batch started again with it skips
      what is done (a file of another batch is refused, see "Checkpoints" in the package docs);
    * ``grace``: seconds that items already underway get to finish when the batch is stopped.
    """

    __slots__ = ("_client",)

    def __init__(self, client: BatchClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<Batch of {self._client!r}>"

    def skills(
        self,
        app_id: str,
        skill_id: str,
        inputs: Inputs,
        *,
        concurrency: int = 16,
        ordered: bool = False,
        key: KeyOption = None,
        progress: ProgressOption = None,
        checkpoint: str | os.PathLike[str] | None = None,
        grace: float = 5.0,
        biz_user_id: str | None = None,
    ) -> BatchRun[SkillResult]:
        """Start skill ``skill_id`` of app ``app_id`` once per input.

        An input is a query string, or a dict of :meth:`Skills.start` arguments (``query``,
        ``input``, ``files``, ``variables``, ``biz_user_id``). Each value is a
        :class:`SkillResult`.
        """
        identity = skill_batch("batch.skills", app_id, skill_id, biz_user_id)
        client = self._client
        key_fn, field = key_option(key, keep=SKILL_FIELDS)

        async def work(item: Item, slot: Worker) -> SkillResult:
            args = skill_call(item.input, field, biz_user_id)
            return await client.skills.start(app_id, skill_id, **args)

        return BatchRun(
            client,
            "skills.start",
            work,
            inputs,
            concurrency=concurrency,
            ordered=ordered,
            key=key_fn,
            progress=progress,
            checkpoint=checkpoint,
            grace=grace,
            effect="skills.start",
            decode=_decode_skill,
            identity=identity,
        )

    def runs(
        self,
        app_id: str,
        inputs: Inputs,
        *,
        concurrency: int = 16,
        session: Literal["fresh", "per_worker"] = "fresh",
        skill_id: str | None = None,
        timeout: float | None = None,
        poll: PollPolicy | None = None,
        ordered: bool = False,
        key: KeyOption = None,
        progress: ProgressOption = None,
        checkpoint: str | os.PathLike[str] | None = None,
        grace: float = 5.0,
        biz_user_id: str | None = None,
    ) -> BatchRun[RunResult]:
        """Ask app ``app_id`` each input: send it as a message, create a run, wait for the
        answer. Each value is a :class:`RunResult`; a run that ends other than ``COMPLETED``
        fails its item with :class:`RunFailedError`.

        An input is a message string or a dict with ``message`` and optionally
        ``content_type``, ``skill_id``, ``skill_input``, ``metadata``, ``biz_user_id``.
        ``session``: ``"fresh"`` (a new session per item) or ``"per_worker"`` (one session per
        worker, reused). ``timeout``: seconds an item's run may take before it is cancelled
        and the item fails.
        """
        identity = run_batch("batch.runs", app_id, skill_id, timeout, biz_user_id)
        if session not in ("fresh", "per_worker"):
            raise ValueError(f"session must be 'fresh' or 'per_worker', got {session!r}")
        key_fn, field = key_option(key, keep=(*RUN_FIELDS, "content"))
        work = RunWork(
            self._client,
            app_id,
            field=field,
            reuse=session == "per_worker",
            skill_id=skill_id,
            timeout=timeout,
            poll=poll,
            biz_user_id=biz_user_id,
        )
        return BatchRun(
            self._client,
            "runs",
            work,
            inputs,
            concurrency=concurrency,
            ordered=ordered,
            key=key_fn,
            progress=progress,
            checkpoint=checkpoint,
            grace=grace,
            effect="runs.create",
            decode=_decode_run,
            identity=identity,
        )

    def map(
        self,
        fn: Callable[[Any], Awaitable[T]],
        inputs: Inputs,
        *,
        concurrency: int = 16,
        ordered: bool = False,
        key: KeyOption = None,
        progress: ProgressOption = None,
        checkpoint: str | os.PathLike[str] | None = None,
        grace: float = 5.0,
        decode: Callable[[Any], T] | None = None,
        name: str | None = None,
    ) -> BatchRun[T]:
        """Call ``await fn(input)`` once per input, with everything a batch gives (bounded
        concurrency, per-item errors, progress, checkpointing).

        ``fn`` should make its calls through this client. Values are checkpointed as JSON
        (attrs models are unstructured); on resume they come back as that JSON unless
        ``decode`` rebuilds them. ``grace`` covers items that have sent any request.
        """
        if not callable(fn):
            raise TypeError(f"fn must be an async function, got {fn!r}")
        key_fn, _ = key_option(key)
        name = name or str(getattr(fn, "__name__", "map"))

        async def work(item: Item, slot: Worker) -> T:
            return await fn(item.input)

        return BatchRun(
            self._client,
            name,
            work,
            inputs,
            concurrency=concurrency,
            ordered=ordered,
            key=key_fn,
            progress=progress,
            checkpoint=checkpoint,
            grace=grace,
            effect=None,
            decode=decode or _as_is,
            identity={"kind": "map", "name": name},
        )
