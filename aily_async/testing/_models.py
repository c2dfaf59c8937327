"""Public value types of the fake server: run plans, skill requests, faults, the request log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal, TypeAlias

import attrs
from multidict import CIMultiDictProxy

__all__ = [
    "ACTIVE_RUN_STATUSES",
    "AUTH_ROUTE",
    "ROUTES",
    "DropWhen",
    "FakeApiError",
    "FakeSkill",
    "Faults",
    "RecordedRequest",
    "RunPlan",
    "RunRequest",
    "RunScript",
    "SkillHandler",
    "SkillRequest",
    "SkillResult",
]

#: Route keys of the Aily endpoints, as used by rate limits, ``inject`` and the request log.
ROUTES: tuple[str, ...] = (
    "sessions.create",
    "sessions.get",
    "sessions.update",
    "sessions.delete",
    "messages.create",
    "messages.get",
    "messages.list",
    "runs.create",
    "runs.get",
    "runs.list",
    "runs.cancel",
    "skills.start",
    "skills.get",
    "skills.list",
    "knowledge.ask",
    "data_assets.create",
    "data_assets.list",
    "data_assets.get",
    "data_assets.delete",
    "data_assets.upload_file",
    "data_asset_tags.list",
    "app_stats.list",
    "agents.sessions.create",
    "agents.sessions.get",
    "agents.sessions.list",
    "agents.sessions.delete",
    "agents.chats.create",
    "agents.chats.get",
    "agents.artifacts.get",
    "agents.attachments.create",
    "agents.check_visibility",
)

#: Route key of the tenant token endpoint (never rate limited; faulted only when asked).
AUTH_ROUTE = "auth"

#: Run statuses during which a session may not start another run.
ACTIVE_RUN_STATUSES: frozenset[str] = frozenset({"QUEUED", "IN_PROGRESS", "REQUIRES_MESSAGE"})


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _terminal_outcome(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value or value in ACTIVE_RUN_STATUSES:
        raise ValueError(f"{attribute.name} must be a terminal run status, got {value!r}")


@attrs.frozen(kw_only=True)
class RunPlan:
    """How one run behaves over time, decided when the run is created.

    A run stays ``QUEUED`` for ``queued`` seconds, then ``IN_PROGRESS`` for ``duration``
    seconds, then ends with ``outcome`` (``COMPLETED``, ``FAILED``, ``EXPIRED``, or any other
    terminal status a client should cope with).

    With ``requires_message=True`` the run enters ``REQUIRES_MESSAGE`` after half of
    ``duration`` and stays there until a new user message is posted to the session; it then
    runs for the remaining half. Its answer is written during that second half only.

    ``answer`` is the assistant's reply; ``None`` means the default: ``"Echo: "`` plus the
    latest user message, or a JSON echo of ``skill_input`` when the run names a skill and
    gives an input. ``error`` is the ``(code, message)`` pair reported when ``outcome`` is
    ``FAILED``.

    ``placeholder`` (default ``None``) is a text such as ``"…thinking…"`` that the partial
    answer (listed with ``with_partial_message=true``) shows during the first third of the
    writing time; the answer then replaces it, growing from its start (it is never appended
    to the placeholder), and the finished answer holds the answer alone. Without a
    placeholder the partial answer grows from empty over the whole writing time.
    """

    queued: float = attrs.field(default=0.05, validator=_non_negative)
    duration: float = attrs.field(default=0.3, validator=_non_negative)
    outcome: str = attrs.field(default="COMPLETED", validator=_terminal_outcome)
    requires_message: bool = False
    answer: str | None = None
    error: tuple[str, str] = ("sp_ec_sm_900101", "技能不存在或已删除")
    placeholder: str | None = None


@attrs.frozen(kw_only=True)
class RunRequest:
    """What a ``run_script`` sees when a run is created.

    ``last_user_message`` is the content of the latest user message in the session, or
    ``None`` when the session has none.
    """

    session_id: str
    app_id: str
    skill_id: str | None
    skill_input: str | None
    metadata: str | None
    last_user_message: str | None
    biz_user_id: str | None = None


@attrs.frozen(kw_only=True)
class SkillRequest:
    """What a ``skill_handler`` sees when a skill is started (raw strings as sent)."""

    app_id: str
    skill_id: str
    query: str | None
    files: tuple[str, ...]
    variables: str | None
    input: str | None
    biz_user_id: str | None = None


#: A skill handler returns the ``output`` JSON string, or ``(output, status)``.
SkillResult: TypeAlias = "str | tuple[str, str]"
#: Computes start-skill answers; may be sync or async.
SkillHandler: TypeAlias = Callable[[SkillRequest], "SkillResult | Awaitable[SkillResult]"]
#: Plans each run from its request.
RunScript: TypeAlias = Callable[[RunRequest], RunPlan]
#: When an injected drop closes the connection: before handling, or after it took effect.
DropWhen: TypeAlias = Literal["before", "after"]


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class FakeSkill:
    """One entry of the fake's skill catalogue (``GET /apps/:app_id/skills``)."""

    id: str
    label: str = ""
    description: str = ""
    samples: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    input_schema: str = "{}"
    output_schema: str = "{}"

    def to_wire(self) -> dict[str, Any]:
        """Return the skill as the API sends it."""
        return {
            "id": self.id,
            "label": self.label,
            "description": self.description,
            "samples": list(self.samples),
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
        }


def _rate(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within [0, 1], got {value!r}")


def _delay_range(_: object, attribute: attrs.Attribute[Any], value: tuple[float, float]) -> None:
    low, high = value
    if not 0.0 <= low <= high:
        raise ValueError(f"{attribute.name} must be (low, high) with 0 <= low <= high")


def _routes(value: Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    routes = frozenset(value)
    unknown = routes - {*ROUTES, AUTH_ROUTE}
    if unknown:
        raise ValueError(f"unknown route keys: {sorted(unknown)}")
    return routes


@attrs.frozen(kw_only=True)
class Faults:
    """Random faults the fake injects into its answers.

    Each request on an affected route is dropped with probability ``drop_rate`` (half of the
    drops close the connection before the request is handled, half after it took effect), or
    else answered with a 500/502/503 with probability ``error_rate`` (an HTML body half of the
    time, a JSON ``{"code": 1, "msg": "internal error"}`` body otherwise, never taking effect).
    Independently, every affected request waits a uniform random time within ``delay``.

    ``routes`` limits the faults to some route keys; ``None`` means every Aily endpoint but
    not the token endpoint (add ``"auth"`` to fault that too). ``seed`` makes the sequence of
    faults repeatable.
    """

    error_rate: float = attrs.field(default=0.0, validator=_rate)
    drop_rate: float = attrs.field(default=0.0, validator=_rate)
    delay: tuple[float, float] = attrs.field(default=(0.0, 0.0), validator=_delay_range)
    seed: int | None = None
    routes: frozenset[str] | None = attrs.field(default=None, converter=_routes)

    def __attrs_post_init__(self) -> None:
        if self.error_rate + self.drop_rate > 1.0:
            raise ValueError("error_rate + drop_rate must not exceed 1")

    def applies_to(self, route: str) -> bool:
        """Tell whether requests on ``route`` are subject to these faults."""
        if self.routes is None:
            return route in ROUTES
        return route in self.routes


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """One request the fake received, as kept in ``FakeAily.requests``.

    ``status`` is ``None`` when no answer was sent: the connection was dropped, or the client
    had gone before a held answer was due. ``fault`` names the fault, if any: ``"error"``,
    ``"delay"``, ``"hold"``, ``"drop-before"``, ``"drop-after"`` (injected or random) or
    ``"outage"``.
    ``headers`` hold everything sent except the token itself (``Authorization`` keeps its
    scheme and the token's two-letter prefix, e.g. ``"Bearer t-<redacted>"``). ``json`` is the
    decoded JSON body (with ``app_secret`` redacted), or ``None``. ``time`` is the fake's clock
    when the request arrived.
    """

    method: str
    path: str
    route: str
    query: Mapping[str, str]
    headers: CIMultiDictProxy[str]
    json: Any
    status: int | None
    time: float
    log_id: str
    fault: str | None = None
    biz_user_id: str | None = None


class FakeApiError(Exception):
    """Raise from a ``run_script`` or ``skill_handler`` to answer the call with an API error.

    The fake answers with HTTP ``http_status`` and the envelope
    ``{"code": code, "msg": msg, "data": {}, "error": {"log_id": ...}}``.
    """

    def __init__(
        self,
        code: int,
        msg: str,
        *,
        http_status: int = 400,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status
        self.headers: dict[str, str] = dict(headers or {})
