"""`/chat` namespace (PROTOCOL.md): thin — validate, call the chat service, ack, deliver.

Connect auth, caps, payload size and per-event rate limits come from `BaseNamespace`; the domain
logic is in `server.chat`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.chat import validate
from server.chat.model import public
from server.chat.service import ChatService
from server.core import Core
from server.namespaces.base import Ack, BaseNamespace, Caller, Handler


class ChatNamespace(BaseNamespace):
    droppable = frozenset({"typing"})

    def __init__(self, namespace: str, core: Core, service: ChatService) -> None:
        self.service = service
        self._chat = service.settings
        super().__init__(namespace, core)

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "message:send": self._send,
            "message:delivered": self._delivered,
            "conversation:read": self._read,
            "typing": self._typing,
            "conversation:history": self._history,
            "conversation:list": self._list,
            "sync": self._sync,
            "message:edit": self._edit,
            "message:delete": self._delete,
            "user:block": self._block,
            "user:unblock": self._unblock,
            "message:report": self._report,
        }

    async def _send(self, caller: Caller, data: Any) -> Ack:
        req = validate.send(data, max_text=self._chat.max_text, max_client_id=self._chat.max_client_id)
        result = await self.service.send(caller.user_id, req)
        if result.delivered_now:
            # Runs after this handler returns, i.e. after the ack has been handed to the transport.
            self.core.background.spawn(self.service.deliver(result.doc, caller.sid), name="chat-deliver")
        return {"message": public(result.doc), "balance": result.balance, "price": result.price}

    async def _delivered(self, caller: Caller, data: Any) -> None:
        await self.service.delivered(caller.user_id, validate.ids(data))

    async def _read(self, caller: Caller, data: Any) -> Ack:
        peer, up_to = validate.read(data)
        return await self.service.read(caller.user_id, peer, up_to)

    async def _typing(self, caller: Caller, data: Any) -> None:
        to, state = validate.typing(data)
        await self.service.typing(caller.user_id, to, state)

    async def _history(self, caller: Caller, data: Any) -> Ack:
        peer, before, limit = validate.history(data, self._chat.history_max)
        return await self.service.history(caller.user_id, peer, before, limit)

    async def _list(self, caller: Caller, data: Any) -> Ack:
        before, limit = validate.listing(data, self._chat.history_max)
        return await self.service.conversations(caller.user_id, before, limit)

    async def _sync(self, caller: Caller, data: Any) -> Ack:
        since, limit = validate.sync(data, self._chat.sync_page)
        return await self.service.sync(caller.user_id, since, limit)

    async def _edit(self, caller: Caller, data: Any) -> Ack:
        message_id, text = validate.edit(data, self._chat.max_text)
        return await self.service.edit(caller.user_id, message_id, text)

    async def _delete(self, caller: Caller, data: Any) -> None:
        message_id, scope = validate.delete(data)
        await self.service.delete(caller.user_id, message_id, scope)

    async def _block(self, caller: Caller, data: Any) -> None:
        await self.service.block(caller.user_id, validate.other_user(data))

    async def _unblock(self, caller: Caller, data: Any) -> None:
        await self.service.unblock(caller.user_id, validate.other_user(data))

    async def _report(self, caller: Caller, data: Any) -> Ack:
        message_id, reason = validate.report(data, self._chat.max_report_reason)
        return await self.service.report(caller.user_id, message_id, reason)
