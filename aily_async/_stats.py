"""Request counters of one client: requests, retries and 429s, per call."""

from __future__ import annotations

__all__ = ["Stats"]


class Stats:
    """Request counters of one client (what the demo and benchmarks report)."""

    __slots__ = ("by_call", "rate_limited", "requests", "retries")

    def __init__(self) -> None:
        self.requests = 0
        self.retries = 0
        self.rate_limited = 0
        self.by_call: dict[str, int] = {}

    def count(self, call: str) -> None:
        """Count one request of ``call``."""
        self.requests += 1
        self.by_call[call] = self.by_call.get(call, 0) + 1

    def __repr__(self) -> str:
        return (
            f"Stats(requests={self.requests}, retries={self.retries}, "
            f"rate_limited={self.rate_limited})"
        )
