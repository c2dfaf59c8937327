"""Endpoint handler of knowledge ask: answer a question from an app's FAQ or data assets.

A made-up but deterministic retrieval: an FAQ entry whose question matches (case and spaces
aside) answers first; otherwise the lines of the app's imported assets (those whose import
succeeded, narrowed by ``data_asset_ids`` / ``data_asset_tag_ids``) are scored by the words
they share with the question, and the best one is the answer. Values the SDK does not give
and the fake assumes: ``status`` is ``"SUCCESS"``; ``finish_type`` is ``"FAQ"``, ``"ANSWER"``
or ``"NO_ANSWER"``; without an answer, ``has_answer`` is false and the message still holds a
short apology. CSV assets also report ``sql_data`` and ``chart_dsls``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._assets_state import AssetRecord, AssetStore, normalise_question
from ._clock import Clock
from ._context import Ctx, Handler
from ._handlers_assets import app_of
from ._wire import object_field, str_field, str_list

__all__ = ["KnowledgeHandlers"]

NO_ANSWER = "Sorry, the knowledge base has no answer to that."
_WORD = re.compile(r"\w+")
_MAX_CHUNKS = 3


def _words(text: str) -> set[str]:
    # Latin words, and each CJK character on its own (no spaces between Chinese words).
    words = set()
    for word in _WORD.findall(text.lower()):
        words.add(word)
        words.update(ch for ch in word if "\u4e00" <= ch <= "\u9fff")
    return words


class KnowledgeHandlers:
    """Handler of the ``knowledge.ask`` route."""

    def __init__(self, store: AssetStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def routes(self) -> dict[str, Handler]:
        """Map each route key this class serves to its handler."""
        return {"knowledge.ask": self.ask}

    def _assets(
        self, app_id: str, now: float, ids: list[str], tags: list[str]
    ) -> list[AssetRecord]:
        return [
            asset
            for asset in self._store.app_assets(app_id)
            if asset.usable(now)
            and (not ids or asset.id in ids)
            and (not tags or set(tags) & set(asset.tag_ids))
        ]

    async def ask(self, ctx: Ctx) -> dict[str, Any]:
        """``POST /apps/{app}/knowledges/ask``."""
        app_id = app_of(ctx, self._store, self._clock)
        message = object_field(ctx.body, "message", label="message")
        question = str_field(message, "content", label="message.content", required=True) or ""
        ids = str_list(ctx.body, "data_asset_ids", label="data_asset_ids", max_items=10_000)
        tags = str_list(
            ctx.body, "data_asset_tag_ids", label="data_asset_tag_ids", max_items=10_000
        )
        faq = self._store.faq.get((app_id, normalise_question(question)))
        if faq is not None:
            return _answer(faq[1], "FAQ", faq_result={"question": faq[0], "answer": faq[1]})
        asked = _words(question)
        scored: list[tuple[int, int, str, AssetRecord]] = []
        for asset in self._assets(app_id, ctx.now, ids, tags):
            for index, line in enumerate(asset.content.splitlines()):
                score = len(asked & _words(line))
                if score and line.strip():
                    scored.append((score, -index, line.strip(), asset))
        if not scored:
            return _answer(NO_ANSWER, "NO_ANSWER", has_answer=False)
        scored.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
        best = scored[:_MAX_CHUNKS]
        process: dict[str, Any] = {"chunks": [line for _, _, line, _ in best]}
        tables = {asset.title: asset for _, _, _, asset in best if asset.mime_type == "text/csv"}
        if tables:
            process["sql_data"] = [f'SELECT * FROM "{title}"' for title in tables]
            process["chart_dsls"] = [
                json.dumps({"type": "table", "source": title}) for title in tables
            ]
        return _answer(best[0][2], "ANSWER", process_data=process)


def _answer(
    text: str,
    finish_type: str,
    *,
    has_answer: bool = True,
    faq_result: dict[str, str] | None = None,
    process_data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status": "SUCCESS",
        "finish_type": finish_type,
        "message": {"content": text},
        "has_answer": has_answer,
        "process_data": process_data or {"chunks": [], "sql_data": [], "chart_dsls": []},
    }
    if faq_result is not None:
        data["faq_result"] = faq_result
    return data
