"""Stopping cleanly: waiting tasks out through cancellation, and cancelling runs left going.

A stopped batch must leave nothing behind: no task of its own, and no run going on
server-side. These helpers finish what they start even when the caller is cancelled meanwhile
(and re-raise the cancellation afterwards); the run helpers never raise an :class:`Exception`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .._run_handle import RunHandle

__all__ = ["CANCEL_TIMEOUT", "cancel_run", "finish_despite_cancel", "settle_create", "wait_all"]

logger = logging.getLogger("aily_async")

#: Seconds a stopped item waits for a run create to answer, or for a run cancel to be confirmed.
CANCEL_TIMEOUT = 10.0


async def wait_all(tasks: list[asyncio.Task[None]]) -> bool:
    """Wait until every task is done, even if cancelled meanwhile; True if we were."""
    interrupted = False
    while True:
        pending = [task for task in tasks if not task.done()]
        if not pending:
            break
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            interrupted = True
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: workers report their errors through the queue
    return interrupted


async def finish_despite_cancel(task: asyncio.Task[None]) -> None:
    """Await ``task`` to its end; if we are cancelled meanwhile, still wait, then re-raise."""
    interrupted = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            interrupted = True
    if interrupted:
        raise asyncio.CancelledError


async def settle_create(create: asyncio.Future[RunHandle], *, sent: bool) -> RunHandle | None:
    """The item was cancelled while creating its run. If the request had not left, cancel it;
    if it had, wait (bounded) for its answer: the run it made, for the caller to cancel, so no
    run of a stopped batch goes on server-side. Never raises an :class:`Exception`."""
    if not sent:
        create.cancel()
    made: list[RunHandle] = []

    async def settle() -> None:
        try:
            made.append(await asyncio.wait_for(create, CANCEL_TIMEOUT))
        except asyncio.CancelledError:
            pass  # never sent: no run was made
        except Exception as exc:
            logger.warning("a stopped batch item's run create did not answer: %s", exc)

    with contextlib.suppress(asyncio.CancelledError):  # the caller re-raises its own
        await finish_despite_cancel(asyncio.get_running_loop().create_task(settle()))
    return made[0] if made else None


async def cancel_run(handle: RunHandle) -> None:
    """Cancel a run server-side and wait (bounded) until it has ended; never raises an
    :class:`Exception` (a session whose run could not be confirmed ended is dropped anyway)."""

    async def cancel() -> None:
        try:
            await asyncio.wait_for(handle.cancel(), CANCEL_TIMEOUT)
        except Exception as exc:
            logger.warning("could not cancel run %s of a stopped batch item: %s", handle.id, exc)

    await finish_despite_cancel(asyncio.get_running_loop().create_task(cancel()))
