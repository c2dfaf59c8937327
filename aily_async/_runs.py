"""``client.runs``: create, follow, list and cancel runs, and the whole round trip in one call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from . import _validation as v
from ._errors import AilyError, AilyValidationError, DeadlineExceeded
from ._models import Message, Run, RunResult, converter
from ._polling import DurationStats, PollBudget, PollPolicy
from ._resources import Messages, Resource, Sessions, model, pages
from ._run_handle import RunHandle
from ._transport import Transport

__all__ = ["Runs"]


class Runs(Resource):
    """Runs: the app reading a session and answering it."""

    __slots__ = ("_budget", "_durations", "_messages", "_poll", "_sessions")

    def __init__(
        self,
        transport: Transport,
        *,
        sessions: Sessions,
        messages: Messages,
        poll: PollPolicy,
        durations: DurationStats,
    ) -> None:
        super().__init__(transport)
        self._sessions = sessions
        self._messages = messages
        self._poll = poll
        self._durations = durations
        self._budget = PollBudget()  # the runs.get polls this client's pollers share

    @property
    def poll_policy(self) -> PollPolicy:
        """The default polling policy of run handles."""
        return self._poll

    def _handle(self, run: Run, poll: PollPolicy | None) -> RunHandle:
        return RunHandle(
            run,
            calls=self,
            guard=self._transport,
            policy=poll or self._poll,
            stats=self._durations,
            budget=self._budget,
        )

    async def create(
        self,
        session_id: str,
        *,
        app_id: str,
        skill_id: str | None = None,
        skill_input: str | Mapping[str, Any] | None = None,
        metadata: str | Mapping[str, Any] | None = None,
        poll: PollPolicy | None = None,
        poll_interval: float | None = None,
        biz_user_id: str | None = None,
        timeout: float | None = None,
    ) -> RunHandle:
        """Create a run and return a :class:`RunHandle` (``await`` it for the final run).

        Never creates two runs, and never hands back another create's run: if an attempt fails
        in a way that leaves it unknown whether the run was created (a dropped connection, a
        timeout, a 5xx), the session is looked at before anything is sent again, and a run is
        adopted only if this create could have made it (see :meth:`_find_landed`).
        """
        call = "runs.create"
        sid = v.session_id(call, session_id)
        v.check_str(call, "app_id", app_id, max_len=64, required=True)
        body: dict[str, str] = {"app_id": app_id}
        if skill_id is not None:
            v.check_str(call, "skill_id", skill_id, max_len=32, required=True)
            body["skill_id"] = skill_id
        if skill_input is not None:
            if skill_id is None:
                raise AilyValidationError(
                    "skill_input", "only takes effect with skill_id; give both", call=call
                )
            body["skill_input"] = v.json_text(call, "skill_input", skill_input, max_len=255)
        if metadata is not None:
            body["metadata"] = v.json_text(call, "metadata", metadata, max_len=255)
        if poll_interval is not None:
            poll = PollPolicy(interval=poll_interval) if poll is None else poll
        # Server time the server's clock has certainly passed before the create leaves.
        since_ms = self._transport.server_clock.now_ms()

        async def recover() -> dict[str, Any] | None:
            # What the create would have answered, had its answer not been lost.
            landed = await self._find_landed(session_id, app_id, since_ms)
            return None if landed is None else {"run": converter.unstructure(landed)}

        data = await self._transport.request(
            call,
            "POST",
            f"/sessions/{sid}/runs",
            body=body,
            safety="unsafe",
            biz_user_id=biz_user_id,
            biz_user_id_max=64,
            recover=recover,
            timeout=timeout,
        )
        return self._handle(model(call, data, "run", Run), poll)

    async def _find_landed(
        self, session_id: str, app_id: str, since_ms: int | None
    ) -> Run | None:
        """The run an uncertain create of ``app_id`` left in the session, if any.

        A run this create made was created after every user message the session held when it
        was sent, and after ``since_ms`` (a time the server's clock had passed before the send,
        from its ``Date`` headers). Both are the server's own timestamps, compared with the
        runs' ``created_at``: the local clock is never used, so a skewed clock changes nothing.
        A run older than that bound (the answer to the previous question) is never adopted.
        With no bound known at all, only a run still going is adopted.
        """
        boundary = since_ms
        async for message in self._messages.list(session_id):
            created = message.created_at
            if not message.is_assistant and created is not None:
                boundary = created if boundary is None else max(boundary, created)
        best: Run | None = None
        async for run in self.list(session_id):
            if run.app_id not in (None, "", app_id):
                continue
            created = run.created_at
            if boundary is not None:
                if created is None or created < boundary:
                    continue
            elif not run.status.is_active:
                continue
            if best is None or (created or 0) > (best.created_at or 0):
                best = run
        return best

    async def get(
        self,
        session_id: str,
        run_id: str,
        *,
        biz_user_id: str | None = None,
        timeout: float | None = None,
    ) -> Run:
        """Fetch a run once."""
        call = "runs.get"
        sid = v.session_id(call, session_id)
        rid = v.run_id(call, run_id)
        data = await self._transport.request(
            call, "GET", f"/sessions/{sid}/runs/{rid}", biz_user_id=biz_user_id, timeout=timeout
        )
        return model(call, data, "run", Run)

    def list(
        self,
        session_id: str,
        *,
        page_size: int | None = None,
        biz_user_id: str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Run]:
        """Iterate over the session's runs (all pages); ``timeout`` bounds each page's
        request."""
        call = "runs.list"
        sid = v.session_id(call, session_id)
        params = {"page_size": str(v.page_size(call, page_size))} if page_size is not None else {}
        path = f"/sessions/{sid}/runs"
        return pages(
            self._transport, call, path, "runs", Run, params, biz_user_id, timeout=timeout
        )

    async def cancel(
        self,
        session_id: str,
        run_id: str,
        *,
        biz_user_id: str | None = None,
        timeout: float | None = None,
    ) -> Run:
        """Ask the service to cancel a run; returns the run as the service answered."""
        call = "runs.cancel"
        sid = v.session_id(call, session_id)
        rid = v.run_id(call, run_id)
        data = await self._transport.request(
            call,
            "POST",
            f"/sessions/{sid}/runs/{rid}/cancel",
            biz_user_id=biz_user_id,
            timeout=timeout,
        )
        return model(call, data, "run", Run)

    def messages(
        self,
        session_id: str,
        run_id: str,
        *,
        with_partial_message: bool = False,
        biz_user_id: str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Message]:
        """Iterate over the messages of one run (``messages.list`` with ``run_id``)."""
        return self._messages.list(
            session_id,
            run_id=run_id,
            with_partial_message=with_partial_message,
            biz_user_id=biz_user_id,
            timeout=timeout,
        )

    def attach(self, run: Run, *, poll: PollPolicy | None = None) -> RunHandle:
        """A :class:`RunHandle` for a run you already have (e.g. from ``runs.list``)."""
        if run.session_id is None:
            raise AilyValidationError(
                "run.session_id", "is required to poll a run", call="runs.attach"
            )
        v.session_id("runs.attach", run.session_id, "run.session_id")
        v.run_id("runs.attach", run.id, "run.id")
        return self._handle(run, poll)

    async def run(
        self,
        content: str,
        *,
        app_id: str,
        session_id: str | None = None,
        content_type: str = "MDX",
        skill_id: str | None = None,
        skill_input: str | Mapping[str, Any] | None = None,
        metadata: str | Mapping[str, Any] | None = None,
        timeout: float | None = None,
        poll: PollPolicy | None = None,
        biz_user_id: str | None = None,
    ) -> RunResult:
        """The whole round trip in one await: send ``content`` (to a new session unless
        ``session_id`` is given), create a run, wait for it, return it with its answer.

        ``timeout`` bounds the whole round trip: each step gets what is left of it. Past it,
        :class:`DeadlineExceeded` naming the step it passed in, or :class:`RunWaitTimeout`
        while waiting for the run (which goes on server-side: ``client.runs.attach(exc.run)``
        waits again).
        """
        try:
            return await self._round_trip(
                content,
                app_id=app_id,
                session_id=session_id,
                content_type=content_type,
                skill_id=skill_id,
                skill_input=skill_input,
                metadata=metadata,
                timeout=timeout,
                poll=poll,
                biz_user_id=biz_user_id,
            )
        except DeadlineExceeded as exc:
            if exc.call == "runs.run":
                raise
            raise DeadlineExceeded(
                f"the round trip's timeout of {timeout:g}s ran out: {exc}", call="runs.run"
            ) from exc

    async def _round_trip(
        self,
        content: str,
        *,
        app_id: str,
        session_id: str | None,
        content_type: str,
        skill_id: str | None,
        skill_input: str | Mapping[str, Any] | None,
        metadata: str | Mapping[str, Any] | None,
        timeout: float | None,
        poll: PollPolicy | None,
        biz_user_id: str | None,
    ) -> RunResult:
        call = "runs.run"
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + v.seconds(call, "timeout", timeout)

        def left() -> float | None:
            if deadline is None:
                return None
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"the round trip's timeout of {timeout:g}s passed", call=call
                )
            return remaining

        if session_id is None:
            session_id = (
                await self._sessions.create(biz_user_id=biz_user_id, timeout=left())
            ).id
        await self._messages.create(
            session_id,
            content,
            content_type=content_type,
            biz_user_id=biz_user_id,
            timeout=left(),
        )
        handle = await self.create(
            session_id,
            app_id=app_id,
            skill_id=skill_id,
            skill_input=skill_input,
            metadata=metadata,
            poll=poll,
            biz_user_id=biz_user_id,
            timeout=left(),
        )
        run = await handle.wait(left())
        try:
            answer = await asyncio.wait_for(handle.messages(), left())
        except AilyError:
            raise
        except asyncio.TimeoutError:
            raise DeadlineExceeded(
                f"the round trip's timeout of {timeout:g}s passed reading the answer", call=call
            ) from None
        return RunResult(run, tuple(answer))
