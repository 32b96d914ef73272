"""The shared presence state: what a store must offer (one process, or every node through Redis).

Writes are compare-and-set on the record's version, so the transition rules live once, in Python
(`server.presence.model`), and concurrent nodes never lose each other's changes: a writer whose
version is stale re-reads and re-applies its transition.

Each node also keeps an index of the users it holds devices (or a pending grace) for, so when it
dies the survivors know whose records to clean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from server.presence.model import Record


@dataclass(frozen=True, slots=True)
class Write:
    user: str
    record: Record  # version = the version it replaces + 1
    index: tuple[Literal["+", "-"], str] | None = None  # add the user to / remove from a node's index
    expire_s: float | None = None  # drop the record this long after the write (offline records)

    @property
    def expected(self) -> int:
        return self.record.version - 1


class PresenceStore(Protocol):
    async def load(self, users: Sequence[str]) -> list[Record | None]:
        """Current records, `None` for users the store holds nothing about."""
        ...

    async def save(self, writes: Sequence[Write]) -> list[bool]:
        """Apply each write whose expected version still matches; False where it did not."""
        ...

    async def beat(self, node: str, now: float, ttl_s: float) -> None:
        """This node is alive for `ttl_s` more seconds."""
        ...

    async def dead_nodes(self) -> dict[str, float]:
        """Nodes whose liveness expired, with the time of their last beat."""
        ...

    async def claim(self, node: str, holder: str, ttl_s: float) -> bool:
        """Take the right to clean up after dead `node` for `ttl_s` (one survivor does it)."""
        ...

    async def node_users(self, node: str) -> list[str]: ...

    async def forget_node(self, node: str) -> bool:
        """Drop a cleaned-up node once its index is empty; False if users are still listed."""
        ...
