"""Presence state in this process: one node without Redis. Same contract as the Redis store."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from server.presence.model import Record
from server.presence.store import Write


class LocalPresenceStore:
    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._expires: dict[str, float] = {}
        self._index: dict[str, set[str]] = {}

    async def load(self, users: Sequence[str]) -> list[Record | None]:
        return [self._records.get(user) for user in users]

    async def save(self, writes: Sequence[Write]) -> list[bool]:
        results: list[bool] = []
        for w in writes:
            current = self._records.get(w.user)
            if (current.version if current else 0) != w.expected:
                results.append(False)
                continue
            self._records[w.user] = replace(w.record, devices=dict(w.record.devices))
            if w.expire_s is not None:
                self._expires[w.user] = time.monotonic() + w.expire_s
            else:
                self._expires.pop(w.user, None)
            if w.index is not None:
                op, node = w.index
                if op == "+":
                    self._index.setdefault(node, set()).add(w.user)
                else:
                    users = self._index.get(node)
                    if users is not None:
                        users.discard(w.user)
                        if not users:
                            del self._index[node]
            results.append(True)
        return results

    async def beat(self, node: str, now: float, ttl_s: float) -> None:
        """One node never sees itself die; the beat is the moment to drop expired offline records."""
        clock = time.monotonic()
        for user in [u for u, at in self._expires.items() if at <= clock]:
            del self._expires[user]
            self._records.pop(user, None)

    async def dead_nodes(self) -> dict[str, float]:
        return {}

    async def claim(self, node: str, holder: str, ttl_s: float) -> bool:
        return True

    async def node_users(self, node: str) -> list[str]:
        return sorted(self._index.get(node, ()))

    async def forget_node(self, node: str) -> bool:
        return not self._index.get(node)
