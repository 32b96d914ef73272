"""`/presence` namespace: validate, call the presence service, return the ack (PROTOCOL.md).

`SocketFanout` is how the transport-free service reaches clients: each watched user W has a room
`p:<W>` in this namespace; a watcher's connection joins it, and a change of W is one emit to that
room, which the routed manager delivers on every node holding a member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import socketio

from server.core import Core
from server.namespaces.base import Ack, BaseNamespace, Caller, Handler
from server.presence import PresenceService
from server.presence.requests import no_fields, status_field, users_field

NAMESPACE = "/presence"
UPDATE = "presence:update"


def watch_room(user: str) -> str:
    return f"p:{user}"


class SocketFanout:
    def __init__(self, sio: socketio.AsyncServer, namespace: str = NAMESPACE) -> None:
        self._sio = sio
        self._ns = namespace

    async def join(self, conn: str, users: Sequence[str]) -> None:
        for user in users:
            await self._sio.enter_room(conn, watch_room(user), namespace=self._ns)

    async def leave(self, conn: str, users: Sequence[str]) -> None:
        for user in users:
            await self._sio.leave_room(conn, watch_room(user), namespace=self._ns)

    async def publish(self, user: str, payload: dict[str, Any]) -> None:
        await self._sio.emit(UPDATE, payload, room=watch_room(user), namespace=self._ns)

    async def send(self, conn: str, payload: dict[str, Any]) -> None:
        await self._sio.emit(UPDATE, payload, to=conn, namespace=self._ns)


class PresenceNamespace(BaseNamespace):
    def __init__(self, namespace: str, core: Core, presence: PresenceService) -> None:
        self.presence = presence
        super().__init__(namespace, core)

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "presence:subscribe": self._subscribe,
            "presence:unsubscribe": self._unsubscribe,
            "presence:set": self._set,
            "presence:heartbeat": self._heartbeat,
        }

    async def connected(self, caller: Caller) -> None:
        await self.presence.connected(caller.sid, caller.user_id)

    async def disconnected(self, caller: Caller, reason: str) -> None:
        await self.presence.disconnected(caller.sid, caller.user_id)

    async def _subscribe(self, caller: Caller, data: Any) -> Ack:
        users = users_field(data, limit=self.presence.config.max_subscribe)
        return {"presence": await self.presence.subscribe(caller.sid, caller.user_id, users)}

    async def _unsubscribe(self, caller: Caller, data: Any) -> None:
        users = users_field(data, limit=self.presence.config.max_subscriptions)
        await self.presence.unsubscribe(caller.sid, users)

    async def _set(self, caller: Caller, data: Any) -> None:
        await self.presence.set_status(caller.user_id, status_field(data))

    async def _heartbeat(self, caller: Caller, data: Any) -> None:
        no_fields(data)
        await self.presence.heartbeat(caller.user_id)
