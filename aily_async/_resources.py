"""The plain resources, ``client.sessions``, ``client.messages`` and ``client.skills``, and
what every resource shares.

Resources are thin: they check arguments, build the path and body, and hand the call to the
transport; they turn ``data`` into models (:func:`model`, :func:`structure`) and walk list
calls page by page (:func:`pages`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import cattrs
from multidict import MultiDict

from . import _validation as v
from ._errors import AilyResponseError, AilyValidationError
from ._models import Message, Session, Skill, SkillResult, converter
from ._transport import Transport

__all__ = ["Messages", "Resource", "Sessions", "Skills", "model", "pages", "structure"]

M = TypeVar("M")

# Sessions document no length rule for these JSON strings; keep a generous sanity bound.
_SESSION_JSON_MAX = 65536


def model(call: str, data: Mapping[str, Any], key: str, cls: type[M]) -> M:
    """``data[key]`` as a ``cls`` model, or :class:`AilyResponseError` saying what is wrong."""
    raw = data.get(key)
    if not isinstance(raw, Mapping):
        raise AilyResponseError(
            f"the answer's data.{key} is {type(raw).__name__}, expected an object", call=call
        )
    return structure(call, raw, cls, f"data.{key}")


def structure(call: str, raw: Any, cls: type[M], where: str) -> M:
    """``raw`` as a ``cls`` model; a failure names the path (``where``) of the bad field."""
    try:
        return converter.structure(raw, cls)
    except Exception as exc:
        details = "; ".join(cattrs.transform_error(exc, path=where)) or str(exc)
        raise AilyResponseError(f"could not read {cls.__name__}: {details}", call=call) from None


def pages(
    transport: Transport,
    call: str,
    path: str,
    key: str,
    cls: type[M],
    params: Mapping[str, str],
    biz_user_id: str | None = None,
    token_key: str = "page_token",
    timeout: float | None = None,
) -> AsyncIterator[M]:
    """Walk every page of a list call, yielding models (``params`` may repeat a key: a
    ``MultiDict``). The next page's token is read at ``token_key`` of the answer (else at
    ``page_token``) and sent back as ``page_token``. ``timeout`` bounds each page's request
    (checked now, before anything is sent)."""
    if timeout is not None:
        timeout = v.seconds(call, "timeout", timeout)
    return _walk(transport, call, path, key, cls, params, biz_user_id, token_key, timeout)


async def _walk(
    transport: Transport,
    call: str,
    path: str,
    key: str,
    cls: type[M],
    params: Mapping[str, str],
    biz_user_id: str | None,
    token_key: str,
    timeout: float | None,
) -> AsyncIterator[M]:
    token: str | None = None
    seen: set[str] = set()
    while True:
        query = MultiDict(params)
        if token:
            query["page_token"] = token
        data = await transport.request(
            call, "GET", path, params=query, biz_user_id=biz_user_id, timeout=timeout
        )
        items = data.get(key) or []
        if not isinstance(items, list):
            raise AilyResponseError(f"data.{key} is not a list", call=call)
        for index, raw in enumerate(items):
            yield structure(call, raw, cls, f"data.{key}[{index}]")
        token = data.get(token_key) or data.get("page_token") or None
        if not data.get("has_more") or not token:
            return
        if not isinstance(token, str) or token in seen:
            raise AilyResponseError(
                "the service repeated a page token (pagination loop)", call=call
            )
        seen.add(token)


class Resource:
    """A group of calls over the transport."""

    __slots__ = ("_transport",)

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class Sessions(Resource):
    """Sessions: one conversation between a user and an Aily app."""

    __slots__ = ()

    async def create(
        self,
        metadata: str | Mapping[str, Any] | None = None,
        channel_context: str | Mapping[str, Any] | None = None,
        *,
        biz_user_id: str | None = None,
        timeout: float | None = None,
    ) -> Session:
        """Create a session. ``metadata``/``channel_context``: a dict or a JSON string."""
        call = "sessions.create"
        body = _session_body(call, metadata, channel_context)
        data = await self._transport.request(
            call,
            "POST",
            "/sessions",
            body=body,
            safety="unsafe",
            biz_user_id=biz_user_id,
            timeout=timeout,
        )
        return model(call, data, "session", Session)

    async def get(
        self, session_id: str, *, biz_user_id: str | None = None, timeout: float | None = None
    ) -> Session:
        """Fetch a session."""
        call = "sessions.get"
        sid = v.session_id(call, session_id)
        data = await self._transport.request(
            call, "GET", f"/sessions/{sid}", biz_user_id=biz_user_id, timeout=timeout
        )
        return model(call, data, "session", Session)

    async def update(
        self,
        session_id: str,
        *,
        metadata: str | Mapping[str, Any] | None = None,
        channel_context: str | Mapping[str, Any] | None = None,
        biz_user_id: str | None = None,
        timeout: float | None = None,
    ) -> Session:
        """Update a session's ``metadata`` and/or ``channel_context``."""
        call = "sessions.update"
        sid = v.session_id(call, session_id)
        body = _session_body(call, metadata, channel_context)
        data = await self._transport.request(
            call,
            "PUT",
            f"/sessions/{sid}",
            body=body,
            safety="unsafe",
            biz_user_id=biz_user_id,
            timeout=timeout,
        )
        return model(call, data, "session", Session)

    async def delete(
        self, session_id: str, *, biz_user_id: str | None = None, timeout: float | None = None
    ) -> None:
        """Delete a session. Deleting is harmless to repeat, so it is retried; a retry answered
        "not found" after an attempt that may have landed counts as done."""
        call = "sessions.delete"
        sid = v.session_id(call, session_id)
        await self._transport.request(
            call,
            "DELETE",
            f"/sessions/{sid}",
            biz_user_id=biz_user_id,
            done_if_gone=True,
            timeout=timeout,
        )


def _session_body(call: str, metadata: object, channel_context: object) -> dict[str, str]:
    body: dict[str, str] = {}
    if metadata is not None:
        body["metadata"] = v.json_text(call, "metadata", metadata, max_len=_SESSION_JSON_MAX)
    if channel_context is not None:
        body["channel_context"] = v.json_text(
            call, "channel_context", channel_context, max_len=_SESSION_JSON_MAX
        )
    return body


class Messages(Resource):
    """Messages in a session."""

    __slots__ = ()

    async def create(
        self,
        session_id: str,
        content: str,
        *,
        content_type: str = "MDX",
        idempotent_id: str | None = None,
        file_ids: Sequence[str] | None = None,
        quote_message_id: str | None = None,
        mentions: Sequence[Mapping[str, Any]] | None = None,
        biz_user_id: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        """Send a message. The ``idempotent_id`` (fresh when not given) is kept across retries,
        so the service never stores the message twice."""
        call = "messages.create"
        sid = v.session_id(call, session_id)
        v.check_str(call, "content", content, max_len=61440, required=True)
        v.check_str(call, "content_type", content_type, max_len=64, required=True)
        if idempotent_id is None:
            idempotent_id = uuid.uuid4().hex
        v.check_str(call, "idempotent_id", idempotent_id, max_len=64, required=True)
        body: dict[str, Any] = {
            "idempotent_id": idempotent_id,
            "content_type": content_type,
            "content": content,
        }
        if file_ids is not None:
            body["file_ids"] = v.str_list(call, "file_ids", file_ids, max_items=32)
        if quote_message_id is not None:
            v.message_id(call, quote_message_id, "quote_message_id")
            body["quote_message_id"] = quote_message_id
        if mentions is not None:
            if (
                isinstance(mentions, str | bytes | Mapping)
                or not isinstance(mentions, Iterable)
                or not all(isinstance(m, Mapping) for m in mentions)
            ):
                raise AilyValidationError("mentions", "must be a list of objects", call=call)
            body["mentions"] = [dict(m) for m in mentions]
        data = await self._transport.request(
            call,
            "POST",
            f"/sessions/{sid}/messages",
            body=body,
            safety="idempotent",
            biz_user_id=biz_user_id,
            timeout=timeout,
        )
        return model(call, data, "message", Message)

    async def get(
        self,
        session_id: str,
        message_id: str,
        *,
        biz_user_id: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        """Fetch one message."""
        call = "messages.get"
        sid = v.session_id(call, session_id)
        mid = v.message_id(call, message_id)
        data = await self._transport.request(
            call,
            "GET",
            f"/sessions/{sid}/messages/{mid}",
            biz_user_id=biz_user_id,
            timeout=timeout,
        )
        return model(call, data, "message", Message)

    def list(
        self,
        session_id: str,
        *,
        run_id: str | None = None,
        with_partial_message: bool = False,
        page_size: int | None = None,
        biz_user_id: str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Message]:
        """Iterate over the session's messages (all pages), optionally those of one run;
        ``with_partial_message`` includes messages still being written. ``timeout`` bounds
        each page's request."""
        call = "messages.list"
        sid = v.session_id(call, session_id)
        params: dict[str, str] = {}
        if run_id is not None:
            v.run_id(call, run_id)
            params["run_id"] = run_id
        if with_partial_message:
            params["with_partial_message"] = "true"
        if page_size is not None:
            params["page_size"] = str(v.page_size(call, page_size))
        path = f"/sessions/{sid}/messages"
        return pages(
            self._transport, call, path, "messages", Message, params, biz_user_id, timeout=timeout
        )


class Skills(Resource):
    """Skills: call one directly, JSON in, JSON out."""

    __slots__ = ()

    async def start(
        self,
        app_id: str,
        skill_id: str,
        *,
        query: str | None = None,
        files: Iterable[str] | None = None,
        variables: str | Mapping[str, Any] | None = None,
        input: str | Mapping[str, Any] | None = None,
        biz_user_id: str | None = None,
        timeout: float | None = None,
    ) -> SkillResult:
        """Start a skill and return its result (``.output`` as sent, ``.json()`` parsed).

        Starting a skill may have effects, so it is retried only when the request certainly did
        not reach the service (refused connection, 429, rejected token).
        """
        call = "skills.start"
        aid = v.app_id(call, app_id)
        kid = v.skill_id(call, skill_id)
        body = _skill_body(call, query, files, variables, input)
        data = await self._transport.request(
            call,
            "POST",
            f"/apps/{aid}/skills/{kid}/start",
            body=body,
            safety="unsafe",
            biz_user_id=biz_user_id,
            timeout=timeout,
        )
        return structure(call, data, SkillResult, "data")

    async def get(
        self,
        app_id: str,
        skill_id: str,
        *,
        biz_user_id: str | None = None,
        timeout: float | None = None,
    ) -> Skill:
        """Describe one skill."""
        call = "skills.get"
        aid = v.app_id(call, app_id)
        kid = v.skill_id(call, skill_id)
        data = await self._transport.request(
            call, "GET", f"/apps/{aid}/skills/{kid}", biz_user_id=biz_user_id, timeout=timeout
        )
        return model(call, data, "skill", Skill)

    def list(
        self,
        app_id: str,
        *,
        page_size: int | None = None,
        biz_user_id: str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Skill]:
        """Iterate over the app's skills (all pages); ``timeout`` bounds each page's request."""
        call = "skills.list"
        aid = v.app_id(call, app_id)
        params = {"page_size": str(v.page_size(call, page_size))} if page_size is not None else {}
        path = f"/apps/{aid}/skills"
        return pages(
            self._transport, call, path, "skills", Skill, params, biz_user_id, timeout=timeout
        )


def _skill_body(
    call: str, query: object, files: object, variables: object, input: object
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    global_variable: dict[str, Any] = {}
    if query is not None:
        v.check_str(call, "query", query, max_len=40960, required=False)
        global_variable["query"] = query
    if files is not None:
        global_variable["files"] = v.str_list(call, "files", files, max_items=32)
    if variables is not None:
        global_variable["channel"] = {
            "variables": v.json_text(call, "variables", variables, max_len=255)
        }
    if global_variable:
        body["global_variable"] = global_variable
    if input is not None:
        body["input"] = v.json_text(call, "input", input, max_len=40960)
    return body
