"""Batch fan-out (placeholder, being written)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._client import AilyClient

__all__ = ["Batch"]


class Batch:
    """Batch fan-out of skill calls and runs."""

    __slots__ = ("_client",)

    def __init__(self, client: AilyClient) -> None:
        self._client = client
