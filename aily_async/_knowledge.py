"""``client.knowledge``: ask an Aily app's knowledge (its data assets) a question.

One POST, one JSON answer: nothing streams and nothing is left to poll. The answer's
``status``, ``finish_type`` and the entries of ``process`` are kept as the service sends them
(the SDK lists no values, and does not say whether ``chunks``, ``sql_data`` or ``chart_dsls``
hold JSON: an entry that is not a string is kept as its JSON text). No quota is documented for
the call: it gets the client's default bucket for "every other call" (1000 per minute).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from . import _validation as v
from ._models import converter, nullable, wire_field
from ._resources import Resource, structure

__all__ = ["Knowledge", "KnowledgeAnswer", "KnowledgeFaq", "KnowledgeProcess"]


@attrs.frozen
class KnowledgeFaq:
    """The FAQ entry that answered the question."""

    question: str | None = None
    answer: str | None = None


@attrs.frozen
class KnowledgeProcess:
    """How the answer was made: the retrieved ``chunks``, the ``sql_data`` (SQL or its
    results) and ``chart_dsls`` (chart descriptions), each a string as sent."""

    chunks: tuple[str, ...] = ()
    sql_data: tuple[str, ...] = ()
    chart_dsls: tuple[str, ...] = ()


@attrs.frozen
class KnowledgeAnswer:
    """What the app's knowledge answered: ``text`` (the answer message's content, ``""`` when
    none), whether it ``has_answer``, the ``status`` and ``finish_type`` as sent, the ``faq``
    entry that answered (or ``None``) and the ``process`` behind the answer."""

    text: str = ""
    has_answer: bool | None = None
    status: str | None = None
    finish_type: str | None = None
    faq: KnowledgeFaq | None = None
    process: KnowledgeProcess = KnowledgeProcess()


class Knowledge(Resource):
    """Questions to an Aily app's knowledge base."""

    __slots__ = ()

    async def ask(
        self,
        app_id: str,
        question: str,
        *,
        data_asset_ids: Iterable[str] | None = None,
        data_asset_tag_ids: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> KnowledgeAnswer:
        """Ask ``question``, optionally only of some data assets or of the assets with some
        tags. An answer is work done on the service's side (and may be billed), so a failed
        ask is sent again only when it certainly did not arrive. ``timeout`` (seconds) bounds
        the whole call."""
        call = "knowledge.ask"
        aid = v.app_id(call, app_id)
        body: dict[str, Any] = {"message": {"content": v.text(call, "question", question)}}
        if data_asset_ids is not None:
            body["data_asset_ids"] = v.text_list(call, "data_asset_ids", data_asset_ids)
        if data_asset_tag_ids is not None:
            body["data_asset_tag_ids"] = v.text_list(call, "data_asset_tag_ids", data_asset_tag_ids)
        data = await self._transport.request(
            call,
            "POST",
            f"/apps/{aid}/knowledges/ask",
            body=body,
            safety="unsafe",
            timeout=timeout,
        )
        return structure(call, data, KnowledgeAnswer, "data")


# -- decoding -------------------------------------------------------------------------------


def _texts(value: Any, _: type) -> tuple[str, ...]:
    # Strings as sent; any other JSON value as its JSON text (the SDK says strings).
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return tuple(
        item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
        for item in value
        if item is not None
    )


def _structure_process(value: Any, _: type) -> KnowledgeProcess:
    if value is None:
        return KnowledgeProcess()
    if not isinstance(value, Mapping):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    return KnowledgeProcess(
        chunks=wire_field(value, "chunks", TextList, KnowledgeProcess),
        sql_data=wire_field(value, "sql_data", TextList, KnowledgeProcess),
        chart_dsls=wire_field(value, "chart_dsls", TextList, KnowledgeProcess),
    )


def _structure_answer(value: Any, _: type) -> KnowledgeAnswer:
    # The wire's names: message {content}, faq_result, process_data.
    if not isinstance(value, Mapping):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    message = wire_field(value, "message", AnswerMessage, KnowledgeAnswer)
    return KnowledgeAnswer(
        text=(message.content if message is not None else None) or "",
        has_answer=wire_field(value, "has_answer", bool | None, KnowledgeAnswer),
        status=wire_field(value, "status", str | None, KnowledgeAnswer),
        finish_type=wire_field(value, "finish_type", str | None, KnowledgeAnswer),
        faq=wire_field(value, "faq_result", KnowledgeFaq, KnowledgeAnswer),
        process=wire_field(value, "process_data", KnowledgeProcess, KnowledgeAnswer),
    )


@attrs.frozen
class AnswerMessage:
    """The answer's ``message`` on the wire (its ``content`` becomes ``text``)."""

    content: str | None = None


class TextList(tuple):  # type: ignore[type-arg]
    """Marks the process lists, whose entries are read leniently (see :func:`_texts`)."""


nullable(KnowledgeFaq, AnswerMessage)
converter.register_structure_hook(TextList, _texts)
converter.register_structure_hook(KnowledgeProcess, _structure_process)
converter.register_structure_hook(KnowledgeAnswer, _structure_answer)
