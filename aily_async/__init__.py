"""aily_async: an asyncio-native client for the Feishu/Lark Aily OpenAPI.

::

    async with AilyClient(app_id, app_secret) as client:
        session = await client.sessions.create()
        await client.messages.create(session.id, "What's on my calendar?")
        run = await (await client.runs.create(session.id, app_id="spring_…__c"))
"""

from ._agent_chat import AgentChatHandle
from ._agent_models import (
    AGENT_CHAT_TERMINAL_STATUSES,
    AgentArtifact,
    AgentChat,
    AgentChatEvent,
    AgentChatPart,
    AgentChatTurn,
    AgentSession,
)
from ._agent_stream import AgentChatStream
from ._app_stats import AppOwner, AppStat
from ._client import DEFAULT_LIMITS, FEISHU_HOST, LARK_HOST, AilyClient
from ._data_asset_models import (
    DataAsset,
    DataAssetFile,
    DataAssetItem,
    DataAssetResource,
    DataAssetTag,
    KnowledgeChunkSetting,
    KnowledgeFile,
    KnowledgeHelpdesk,
    KnowledgeImportSetting,
    KnowledgeLarkDoc,
    KnowledgeWikiSpace,
    KnowledgeWikiSubDoc,
)
from ._errors import (
    AgentChatWaitTimeout,
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
    DeadlineExceeded,
    LimiterTimeout,
    RunFailedError,
    RunWaitTimeout,
)
from ._hooks import (
    CallEndEvent,
    CallStartEvent,
    EventHooks,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
)
from ._knowledge import KnowledgeAnswer, KnowledgeFaq, KnowledgeProcess
from ._limiter import (
    DOCUMENTED_QUOTAS,
    LimiterSet,
    LimiterState,
    Limits,
    QuotaFeedback,
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
from ._uploads import FileSource
from ._wire import Answer, Wire
from .batch import Batch, BatchProgress, BatchResult, BatchRun, ProgressBar

__version__ = "0.2.0.dev0"

__all__ = [
    "AGENT_CHAT_TERMINAL_STATUSES",
    "DEFAULT_LIMITS",
    "DOCUMENTED_QUOTAS",
    "FEISHU_HOST",
    "LARK_HOST",
    "AgentArtifact",
    "AgentChat",
    "AgentChatEvent",
    "AgentChatHandle",
    "AgentChatPart",
    "AgentChatStream",
    "AgentChatTurn",
    "AgentChatWaitTimeout",
    "AgentSession",
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
    "AppOwner",
    "AppStat",
    "Batch",
    "BatchProgress",
    "BatchResult",
    "BatchRun",
    "CallEndEvent",
    "CallStartEvent",
    "CheckpointError",
    "DataAsset",
    "DataAssetFile",
    "DataAssetItem",
    "DataAssetResource",
    "DataAssetTag",
    "DeadlineExceeded",
    "DurationStats",
    "EventHooks",
    "FileSource",
    "KnowledgeAnswer",
    "KnowledgeChunkSetting",
    "KnowledgeFaq",
    "KnowledgeFile",
    "KnowledgeHelpdesk",
    "KnowledgeImportSetting",
    "KnowledgeLarkDoc",
    "KnowledgeProcess",
    "KnowledgeWikiSpace",
    "KnowledgeWikiSubDoc",
    "LimiterSet",
    "LimiterState",
    "LimiterTimeout",
    "Limits",
    "Message",
    "Millis",
    "PollPolicy",
    "ProgressBar",
    "QuotaFeedback",
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

# Last: every public class says ``aily_async.<Name>`` (tracebacks, reprs, pickles).
from ._public import publish as _publish

_publish(__name__, globals(), __all__)
del _publish
