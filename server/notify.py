"""Emit to every device of a user, on any node. Domain services get this as a plain callable."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import socketio

from server.rooms import NAMESPACES, user_room


class Notifier:
    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    async def to_user(
        self,
        user_id: str,
        event: str,
        data: Any,
        *,
        namespaces: Iterable[str] = NAMESPACES,
        skip_sid: str | None = None,
    ) -> None:
        room = user_room(user_id)
        for namespace in namespaces:
            await self._sio.emit(event, data, room=room, namespace=namespace, skip_sid=skip_sid)

    async def account_event(self, user_id: str, event: str, data: Any) -> None:
        """Account events (`wallet:updated`, `session:revoked`) go to every namespace."""
        await self.to_user(user_id, event, data)

    async def disconnect_user(self, user_id: str, reason: str) -> None:
        """Tell every device of the user why, then disconnect them on every node."""
        await self.account_event(user_id, "session:revoked", {"reason": reason})
        room = user_room(user_id)
        for namespace in NAMESPACES:
            await self._sio.manager.disconnect_room(room, namespace)
