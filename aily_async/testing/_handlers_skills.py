"""Endpoint handlers of skills: start a skill (via the skill handler), get and list skills.

Every app sees the same skill catalogue. Starting a skill answers at once; by default the
answer echoes the call's input as JSON.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from typing import Any

from ._context import Ctx, Handler, check_biz_user
from ._models import FakeSkill, SkillHandler, SkillRequest
from ._paging import Entry, paged
from ._wire import invalid, not_found, object_field, str_field, str_list

__all__ = ["SkillHandlers", "default_skills", "echo_skill"]


def default_skills() -> list[FakeSkill]:
    """Return the default catalogue: ``skill_echo`` and ``skill_0001`` to ``skill_0004``."""
    skills = [
        FakeSkill(
            id="skill_echo",
            label="Echo",
            description="Answers with its input, as JSON.",
            samples=("hello",),
            input_schema=json.dumps(
                {"type": "object", "properties": {"query": {"type": "string"}}}
            ),
            output_schema=json.dumps({"type": "object"}),
        )
    ]
    skills.extend(
        FakeSkill(
            id=f"skill_{n:04d}",
            label=f"Skill {n}",
            description=f"Fake skill number {n}.",
            samples=(f"sample {n}",),
        )
        for n in range(1, 5)
    )
    return skills


def echo_skill(request: SkillRequest) -> str:
    """The default skill handler: answer with the call's input, as a JSON string."""

    def parsed(raw: str | None) -> Any:
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    return json.dumps(
        {
            "skill_id": request.skill_id,
            "query": request.query or "",
            "files": list(request.files),
            "variables": parsed(request.variables),
            "input": parsed(request.input),
        },
        ensure_ascii=False,
    )


def _skill_path(ctx: Ctx, *, with_skill: bool) -> tuple[str, str]:
    app_id = ctx.request.match_info["app_id"]
    if len(app_id) > 64:
        raise invalid("app_id", "length must be <= 64")
    skill_id = ctx.request.match_info.get("skill_id", "") if with_skill else ""
    if len(skill_id) > 32:
        raise invalid("skill_id", "length must be <= 32")
    return app_id, skill_id


class SkillHandlers:
    """Handlers of the ``skills.*`` routes.

    Args:
        skills: The catalogue (ids or :class:`FakeSkill`); ``None``: :func:`default_skills`.
        skill_handler: Computes start-skill answers; ``None``: :func:`echo_skill`.
    """

    def __init__(
        self, skills: Sequence[FakeSkill | str] | None, skill_handler: SkillHandler | None
    ) -> None:
        catalogue = (
            default_skills()
            if skills is None
            else [
                skill if isinstance(skill, FakeSkill) else FakeSkill(id=skill, label=skill)
                for skill in skills
            ]
        )
        self._skills: dict[str, FakeSkill] = {skill.id: skill for skill in catalogue}
        self._skill_handler = skill_handler

    def routes(self) -> dict[str, Handler]:
        """Map each route key this class serves to its handler."""
        return {
            "skills.start": self.start_skill,
            "skills.get": self.get_skill,
            "skills.list": self.list_skills,
        }

    async def start_skill(self, ctx: Ctx) -> dict[str, Any]:
        """``POST /apps/{app}/skills/{skill}/start``: the skill handler's output and status."""
        app_id, skill_id = _skill_path(ctx, with_skill=True)
        check_biz_user(ctx, 255)
        gv = object_field(ctx.body, "global_variable", label="global_variable")
        query = str_field(gv, "query", label="global_variable.query", max_len=40960)
        files = str_list(gv, "files", label="global_variable.files", max_items=32)
        channel = object_field(gv, "channel", label="global_variable.channel")
        variables = str_field(
            channel,
            "variables",
            label="global_variable.channel.variables",
            max_len=255,
            json_string=True,
        )
        skill_input = str_field(ctx.body, "input", max_len=40960, json_string=True)
        request = SkillRequest(
            app_id=app_id,
            skill_id=skill_id,
            query=query,
            files=tuple(files),
            variables=variables,
            input=skill_input,
            biz_user_id=ctx.biz_user_id,
        )
        if self._skill_handler is None:
            output, status = echo_skill(request), "success"
        else:
            result = self._skill_handler(request)
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, str):
                output, status = result, "success"
            else:
                output, status = result
        return {"output": output, "status": status}

    async def get_skill(self, ctx: Ctx) -> dict[str, Any]:
        """``GET /apps/{app}/skills/{skill}``."""
        _, skill_id = _skill_path(ctx, with_skill=True)
        skill = self._skills.get(skill_id)
        if skill is None:
            raise not_found("skill_id", f"skill {skill_id}")
        return {"skill": skill.to_wire()}

    async def list_skills(self, ctx: Ctx) -> dict[str, Any]:
        """``GET /apps/{app}/skills``, in catalogue order."""
        _skill_path(ctx, with_skill=False)
        entries: list[Entry] = [
            ((float(index),), skill.to_wire) for index, skill in enumerate(self._skills.values())
        ]
        return paged(ctx.request.query, "skills", entries)
