"""Operator notices: `system:notice {id, text, level, at}` to one user's devices or to everyone, live,
on every namespace (PROTOCOL.md, account events). Across nodes through the Socket.IO manager: to a
user's room (routed to the nodes holding the user), or a broadcast that every node relays."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import socketio

from config.errors import InvalidPayload
from server.notify import Notifier

LEVELS = ("info", "warning")
EVENT = "system:notice"


class Notices:
    def __init__(self, sio: socketio.AsyncServer, notifier: Notifier, namespaces: Sequence[str], *,
                 max_text: int = 2000) -> None:
        self._sio = sio
        self._notifier = notifier
        self._namespaces = tuple(namespaces)
        self.max_text = max_text

    async def send(self, text: str, level: str = "info", user: str | None = None) -> dict[str, Any]:
        if not text.strip() or len(text) > self.max_text:
            raise InvalidPayload(f"text must be 1..{self.max_text} characters")
        if level not in LEVELS:
            raise InvalidPayload(f"level must be one of {', '.join(LEVELS)}")
        notice = {"id": uuid.uuid4().hex, "text": text, "level": level, "at": dt.datetime.now(dt.UTC).isoformat()}
        if user is not None:
            await self._notifier.to_user(user, EVENT, notice, namespaces=self._namespaces)
        else:
            for namespace in self._namespaces:
                await self._sio.emit(EVENT, notice, namespace=namespace)
        return notice
