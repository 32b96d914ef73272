"""What the call domain needs from the outside world, as small protocols (the server wires them):
delivering events, who is connected, which nodes are alive, blocks, push, rates and rate limits."""

from __future__ import annotations

from typing import Any, Protocol

from config.settings import RateLimit


class CallEvents(Protocol):
    async def to_user(self, user: str, event: str, data: Any, *, skip_sid: str | None = None) -> None:
        """To every `/call` device of `user`, on any node."""

    async def to_device(self, node: str, sid: str, event: str, data: Any) -> None:
        """To one `/call` socket, on the node that holds it."""


class Devices(Protocol):
    async def count(self, user: str) -> int:
        """Live `/call` sockets of `user` on every node (sockets of dead nodes not counted)."""

    async def sids(self, user: str) -> set[str]:
        """The live `/call` socket ids of `user`."""


class Nodes(Protocol):
    """Node liveness for taking over calls of a node that died. One node, no Redis: no one else."""

    async def register(self, node: str) -> None: ...
    async def dead(self) -> list[str]: ...
    async def forget(self, node: str) -> None: ...


class Blocks(Protocol):
    async def either_blocked(self, a: str, b: str) -> bool: ...


class Push(Protocol):
    @property
    def enabled(self) -> bool: ...

    def notify(self, job_id: str, user: str, kind: str, data: dict[str, Any]) -> bool: ...


class Limiter(Protocol):
    async def take(self, user_id: str, event: str, rate: RateLimit) -> float: ...
