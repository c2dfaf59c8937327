"""aily_async: an asyncio-native client for the Feishu/Lark Aily OpenAPI.

::

    async with AilyClient(app_id, app_secret) as client:
        session = await client.sessions.create()
        await client.messages.create(session.id, "What's on my calendar?")
        run = await (await client.runs.create(session.id, app_id="spring_…__c"))
"""

from ._client import DEFAULT_LIMITS, FEISHU_HOST, LARK_HOST, AilyClient
from ._errors import (
    AilyAPIError,
    AilyAuthError,
    AilyClosedError,
    AilyConnectionError,
    AilyError,
    AilyInvalidParamsError,
    AilyNotFoundError,
    AilyPermissionError,
    AilyRateLimiterError,
    AilyRateLimitError,
    AilyResponseError,
    AilyServerError,
    AilyTimeoutError,
    AilyTransportError,
    AilyValidationError,
    CheckpointError,
    LimiterTimeout,
    RunFailedError,
    RunWaitTimeout,
)
from ._hooks import EventHooks, RequestEvent, ResponseEvent, RetryEvent
from ._limiter import (
    DOCUMENTED_QUOTAS,
    LimiterSet,
    LimiterState,
    Limits,
    RateLimiter,
    TokenBucket,
)
from ._models import (
    Message,
    Millis,
    Run,
    RunError,
    RunResult,
    RunStatus,
    Sender,
    Session,
    Skill,
    SkillResult,
)
from ._polling import DurationStats, PollPolicy
from ._retry import RetryPolicy
from ._run_handle import RunHandle, TextDelta
from ._wire import Answer, Wire
from .batch import Batch, BatchProgress, BatchResult, BatchRun, ProgressBar

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_LIMITS",
    "DOCUMENTED_QUOTAS",
    "FEISHU_HOST",
    "LARK_HOST",
    "AilyAPIError",
    "AilyAuthError",
    "AilyClient",
    "AilyClosedError",
    "AilyConnectionError",
    "AilyError",
    "AilyInvalidParamsError",
    "AilyNotFoundError",
    "AilyPermissionError",
    "AilyRateLimitError",
    "AilyRateLimiterError",
    "AilyResponseError",
    "AilyServerError",
    "AilyTimeoutError",
    "AilyTransportError",
    "AilyValidationError",
    "Answer",
    "Batch",
    "BatchProgress",
    "BatchResult",
    "BatchRun",
    "CheckpointError",
    "DurationStats",
    "EventHooks",
    "LimiterSet",
    "LimiterState",
    "LimiterTimeout",
    "Limits",
    "Message",
    "Millis",
    "PollPolicy",
    "ProgressBar",
    "RateLimiter",
    "RequestEvent",
    "ResponseEvent",
    "RetryEvent",
    "RetryPolicy",
    "Run",
    "RunError",
    "RunFailedError",
    "RunHandle",
    "RunResult",
    "RunStatus",
    "RunWaitTimeout",
    "Sender",
    "Session",
    "Skill",
    "SkillResult",
    "TextDelta",
    "TokenBucket",
    "Wire",
    "__version__",
]
