"""Test helpers for Aily apps: :class:`FakeAily`, a local server speaking the Aily OpenAPI.

Start one per test and point any client at :attr:`FakeAily.url`::

    from aily_async.testing import FakeAily, RunPlan

    async def test_answer() -> None:
        async with FakeAily(run_script=RunPlan(duration=0.05)) as fake:
            ...  # drive your app against fake.url
            assert fake.created_runs == 1

This package is standalone: it imports nothing else from ``aily_async``.
"""

from ._agent_models import ChatPlan, ChatRequest, ChatScript, RecordedAttachment
from ._agents_state import FakeAgents
from ._assets_state import FakeKnowledge, RecordedUpload
from ._fake import FakeAily
from ._models import (
    ACTIVE_RUN_STATUSES,
    AUTH_ROUTE,
    ROUTES,
    DropWhen,
    FakeApiError,
    FakeSkill,
    Faults,
    RecordedRequest,
    RunPlan,
    RunRequest,
    RunScript,
    SkillHandler,
    SkillRequest,
    SkillResult,
)
from ._ratelimit import DOCUMENTED_LIMITS, RateLimitConfig
from ._serve import build_parser, main, serve, server_options

__all__ = [
    "ACTIVE_RUN_STATUSES",
    "AUTH_ROUTE",
    "DOCUMENTED_LIMITS",
    "ROUTES",
    "ChatPlan",
    "ChatRequest",
    "ChatScript",
    "DropWhen",
    "FakeAgents",
    "FakeAily",
    "FakeApiError",
    "FakeKnowledge",
    "FakeSkill",
    "Faults",
    "RateLimitConfig",
    "RecordedAttachment",
    "RecordedRequest",
    "RecordedUpload",
    "RunPlan",
    "RunRequest",
    "RunScript",
    "SkillHandler",
    "SkillRequest",
    "SkillResult",
    "build_parser",
    "main",
    "serve",
    "server_options",
]
