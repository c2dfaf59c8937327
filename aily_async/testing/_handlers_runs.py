"""Endpoint handlers of runs: create (as the run script plans it), get, list and cancel.

A run is stored with its :class:`RunPlan` and creation time; its status and answer are
derived from them whenever it is read (see ``_state``).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from ._clock import Clock
from ._context import Ctx, Handler, check_biz_user, path_id, run_of, session_of
from ._models import ACTIVE_RUN_STATUSES, FakeApiError, RunPlan, RunRequest, RunScript
from ._paging import Entry, paged
from ._state import SESSION_ID_RE, RunRecord, run_wire
from ._store import Store
from ._wire import PARAM_INVALID, str_field

__all__ = ["RunHandlers", "make_run_script"]


def make_run_script(
    run_script: RunPlan | RunScript | None, run_duration: float | None
) -> RunScript:
    """Turn the ``run_script``/``run_duration`` options into a run script."""
    if run_script is None:
        run_script = RunPlan() if run_duration is None else RunPlan(duration=run_duration)
    if isinstance(run_script, RunPlan):
        plan = run_script
        return lambda _request: plan
    return run_script


class RunHandlers:
    """Handlers of the ``runs.*`` routes, over one store."""

    def __init__(self, store: Store, clock: Clock, run_script: RunScript) -> None:
        self._store = store
        self._clock = clock
        self._run_script = run_script

    def routes(self) -> dict[str, Handler]:
        """Map each route key this class serves to its handler."""
        return {
            "runs.create": self.create_run,
            "runs.get": self.get_run,
            "runs.list": self.list_runs,
            "runs.cancel": self.cancel_run,
        }

    async def create_run(self, ctx: Ctx) -> dict[str, Any]:
        """``POST /sessions/{id}/runs``; refused while the session has an active run.

        Without a planned answer, a skill run answers with its input and a plain run echoes
        the session's last user message.
        """
        path_id(ctx, "aily_session_id", SESSION_ID_RE)
        check_biz_user(ctx, 64)
        body = ctx.body
        app_id = str_field(body, "app_id", required=True, max_len=64)
        skill_id = str_field(body, "skill_id", max_len=32) or None
        skill_input = str_field(body, "skill_input", max_len=255, json_string=True)
        metadata = str_field(body, "metadata", max_len=255, json_string=True)
        session = session_of(ctx, self._store)
        assert app_id is not None
        if session.runs:
            last = session.runs[-1]
            status = last.view(ctx.now).status
            if status in ACTIVE_RUN_STATUSES:
                raise FakeApiError(
                    PARAM_INVALID,
                    f"param is invalid: session {session.id} already has an active run "
                    f"{last.id} ({status})",
                    http_status=400,
                )
        request = RunRequest(
            session_id=session.id,
            app_id=app_id,
            skill_id=skill_id,
            skill_input=skill_input,
            metadata=metadata,
            last_user_message=session.messages[-1].content if session.messages else None,
            biz_user_id=ctx.biz_user_id,
        )
        plan = self._run_script(request)
        if not isinstance(plan, RunPlan):
            raise TypeError(f"run_script must return a RunPlan, got {plan!r}")
        answer, echo_reply = plan.answer, False
        if answer is None:
            if skill_id and skill_input:
                answer = json.dumps(json.loads(skill_input), ensure_ascii=False)
            else:
                answer = f"Echo: {request.last_user_message or ''}"
                echo_reply = True
        run = RunRecord(
            id=self._store.new_id("run_"),
            session_id=session.id,
            app_id=app_id,
            skill_id=skill_id,
            skill_input=skill_input,
            metadata=metadata,
            plan=plan,
            answer=answer,
            answer_message_id=self._store.new_id("message_"),
            created=ctx.now,
            seq=self._store.next_seq(),
            answer_seq=self._store.next_seq(),
            echo_reply=echo_reply,
        )
        self._store.add_run(session, run)
        return {"run": run_wire(run, ctx.now, self._clock.ms)}

    async def get_run(self, ctx: Ctx) -> dict[str, Any]:
        """``GET /sessions/{id}/runs/{id}``."""
        session = session_of(ctx, self._store)
        return {"run": run_wire(run_of(ctx, self._store, session), ctx.now, self._clock.ms)}

    async def list_runs(self, ctx: Ctx) -> dict[str, Any]:
        """``GET /sessions/{id}/runs``, newest first."""
        session = session_of(ctx, self._store)
        now = ctx.now
        entries: list[Entry] = [
            ((-run.seq,), partial(run_wire, run, now, self._clock.ms))
            for run in reversed(session.runs)
        ]
        return paged(ctx.request.query, "runs", entries)

    async def cancel_run(self, ctx: Ctx) -> dict[str, Any]:
        """``POST /sessions/{id}/runs/{id}/cancel``; a finished run stays as it is."""
        session = session_of(ctx, self._store)
        run = run_of(ctx, self._store, session)
        if run.view(ctx.now).status in ACTIVE_RUN_STATUSES:
            run.cancelled_at = ctx.now
        return {"run": run_wire(run, ctx.now, self._clock.ms)}
