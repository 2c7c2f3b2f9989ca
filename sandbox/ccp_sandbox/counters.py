"""Counters that let tests assert "exactly one execution" or "exactly one token grant"."""

from __future__ import annotations

from collections import Counter

GRANTS = ("password", "uma-ticket", "client_credentials", "refresh_token")


class Counters:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: Counter[str] = Counter()
        self.token_grants: Counter[str] = Counter(dict.fromkeys(GRANTS, 0))
        self.executions: Counter[str] = Counter()

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {
            "requests": dict(self.requests),
            "token_grants": dict(self.token_grants),
            "executions": dict(self.executions),
        }
