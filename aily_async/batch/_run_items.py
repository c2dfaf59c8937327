"""A run batch's item: ask one question in a leased session, recorded so it is asked once.

An item (see "Sessions of a run batch" in the package docs) leases a session with no active
run (its worker's, or a new one) and sends its message. Before its run is created it records,
as pending, the session and the message (id and server time); once created, the run too. A
run it leaves going is cancelled; a failure record keeps the pending part until the run is
known ended with nothing to adopt, so a restarted batch never makes a second run of an item:

* a run known by id is adopted: followed if still going, its answer read if it completed,
  started over if it was cancelled (or is gone);
* without a run id (the batch died while the create was on the wire, or its answer was lost)
  the run is looked up in the recorded session: the first one created at or after the item's
  message (server times only: the message's ``created_at`` against the runs' ``created_at``;
  earlier runs of a reused ``per_worker`` session were created before it). Found, it is
  adopted; not found, the run is created now in that session, after the message already
  there. Should the dead batch's create land meanwhile, the one-active-run rule of a session
  refuses one of the two creates, and a refused create adopts the run that landed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from .._errors import AilyAPIError, AilyNotFoundError, AilyValidationError, RunFailedError
from .._models import Message, Run, RunResult, RunStatus
from .._polling import PollPolicy
from .._resources import Messages, Sessions
from .._run_handle import RunHandle
from .._runs import Runs
from ._inputs import run_args, without
from ._items import Item, Worker
from ._stopping import cancel_run, settle_create

__all__ = ["RunClient", "RunWork"]


class RunClient(Protocol):
    """What a run item needs of the client."""

    sessions: Sessions
    messages: Messages
    runs: Runs


def _message_info(session_id: str, message: Message) -> dict[str, Any]:
    info: dict[str, Any] = {"session_id": session_id, "message_id": message.id}
    if message.created_at is not None:
        info["message_created_at"] = int(message.created_at)
    return info


def _forget_if_over(item: Item, handle: RunHandle) -> None:
    """A run seen ended other than COMPLETED has no answer to adopt: forget it."""
    if handle.done and handle.run.status != RunStatus.COMPLETED:
        item.settled()


def _completed(item: Item, result: RunResult) -> RunResult:
    if not result.ok:
        item.settled()  # a failed run is not adopted: the item is asked again next time
        raise RunFailedError(result)
    return result


class RunWork:
    """The work of a run batch's items (a :data:`aily_async.batch._items.Work`)."""

    __slots__ = ("_app_id", "_biz", "_client", "_field", "_poll", "_reuse", "_skill", "_timeout")

    def __init__(
        self,
        client: RunClient,
        app_id: str,
        *,
        field: str | None,
        reuse: bool,
        skill_id: str | None,
        timeout: float | None,
        poll: PollPolicy | None,
        biz_user_id: str | None,
    ) -> None:
        self._client = client
        self._app_id = app_id
        self._field = field
        self._reuse = reuse
        self._skill = skill_id
        self._timeout = timeout
        self._poll = poll
        self._biz = biz_user_id

    async def __call__(self, item: Item, slot: Worker) -> RunResult:
        client = self._client
        args = run_args(without(item.input, self._field))
        biz = args.get("biz_user_id", self._biz)
        if item.pending is not None:
            adopted = await self._resume(item, item.pending, args)
            if adopted is not None:
                return _completed(item, adopted)
        # Lease a session with no active run: the worker's own (taken out of the slot, so an
        # error drops it) or a new one.
        sid, slot.session = slot.session, None
        if sid is None:
            sid = (await client.sessions.create(biz_user_id=biz)).id
        message = await client.messages.create(
            sid, args["message"], content_type=args.get("content_type", "MDX"), biz_user_id=biz
        )
        item.note_pending(_message_info(sid, message))
        handle = await self._create(item, sid, args)
        result = await self._follow(item, handle)
        if self._reuse:
            slot.session = sid  # its run has ended: the next item may use it
        return _completed(item, result)

    async def _create(self, item: Item, sid: str, args: Mapping[str, Any]) -> RunHandle:
        """Create the item's run in session ``sid`` and record it as pending."""
        await item.flush()  # what finds the run (session, message) is durable before it exists
        # A task of its own: if the item is cancelled while the create is on the wire, its
        # answer is still awaited so the run it made can be cancelled.
        create = asyncio.ensure_future(
            self._client.runs.create(
                sid,
                app_id=self._app_id,
                skill_id=args.get("skill_id", self._skill),
                skill_input=args.get("skill_input"),
                metadata=args.get("metadata"),
                poll=self._poll,
                biz_user_id=args.get("biz_user_id", self._biz),
            )
        )
        try:
            handle = await asyncio.shield(create)
        except asyncio.CancelledError:
            made = await settle_create(create, sent=item.sent)
            if made is not None:  # record it first: a failed cancel leaves it adoptable
                item.note_pending({**(item.live or {}), "session_id": sid, "run_id": made.id})
                await cancel_run(made)
                _forget_if_over(item, made)
            raise
        item.note_pending({**(item.live or {}), "session_id": sid, "run_id": handle.id})
        return handle

    async def _follow(self, item: Item, handle: RunHandle) -> RunResult:
        """Wait for the run's answer; a run left going by any error is cancelled."""
        try:
            return await handle.result(self._timeout)
        except BaseException:
            if not handle.done:
                await cancel_run(handle)
            _forget_if_over(item, handle)
            raise

    async def _resume(
        self, item: Item, pending: Mapping[str, Any], args: Mapping[str, Any]
    ) -> RunResult | None:
        """Finish the item through what an interrupted batch left of it (see the module
        docs), or ``None`` to start it over."""
        sid, rid = pending.get("session_id"), pending.get("run_id")
        if not isinstance(sid, str):
            return None
        item.live = dict(pending)  # findable as before, until known otherwise
        try:
            if isinstance(rid, str):
                run: Run | None = await self._client.runs.get(sid, rid)
            else:
                run = await self._find(sid, pending)
        except (AilyNotFoundError, AilyValidationError):
            item.settled()  # the session, message or run is gone: start over
            return None
        if run is None:
            if not isinstance(pending.get("message_id"), str):
                item.settled()
                return None
            handle = await self._create_again(item, sid, pending, args)
        elif run.status == RunStatus.CANCELLED:
            item.settled()  # the interrupted batch cancelled it on its way out: start over
            return None
        else:
            if not isinstance(rid, str):
                item.note_pending({**pending, "run_id": run.id})
            handle = self._client.runs.attach(run, poll=self._poll)
        item.sent = True
        return await self._follow(item, handle)

    async def _create_again(
        self, item: Item, sid: str, pending: Mapping[str, Any], args: Mapping[str, Any]
    ) -> RunHandle:
        """Create the run of an item whose message is in session ``sid`` but whose run was not
        found there; a refused create adopts a run of the item that landed meanwhile."""
        try:
            return await self._create(item, sid, args)
        except AilyAPIError:
            run = await self._find(sid, pending)
            if run is None or run.status == RunStatus.CANCELLED:
                raise
            item.note_pending({**pending, "run_id": run.id})
            return self._client.runs.attach(run, poll=self._poll)

    async def _find(self, sid: str, pending: Mapping[str, Any]) -> Run | None:
        """The item's run in session ``sid``: the first created at or after its message."""
        mid = pending.get("message_id")
        if not isinstance(mid, str):
            return None
        since = pending.get("message_created_at")
        if not isinstance(since, int):
            since = (await self._client.messages.get(sid, mid)).created_at
        best: Run | None = None
        async for run in self._client.runs.list(sid):
            if since is None:  # the service gave no time: only an active run can be told
                if run.status.is_active:
                    return run
                continue
            if run.created_at is None or run.created_at < since:
                continue
            # Listed newest first: on a tie of milliseconds the one listed later is older.
            if best is None or run.created_at <= (best.created_at or 0):
                best = run
        return best
