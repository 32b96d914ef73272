"""The chat service: every `/chat` operation, transport-free. Emits go through an injected callable."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

from config.errors import Blocked, Forbidden, InvalidPayload, NotFound
from config.ttlcache import TtlCache
from server.chat import model, validate
from server.chat.committer import Committer, SendResult
from server.chat.config import ChatSettings
from server.chat.ids import IdGenerator, conversation_id
from server.chat.model import Doc, public
from server.chat.moderation import TextFilter
from server.chat.push import PushService
from server.chat.store import ChatStore
from server.chat.views import ViewFlusher

# (user, event, data, skip_sid): emit to every /chat device of `user` on any node, except `skip_sid`.
Emit = Callable[[str, str, Any, "str | None"], Awaitable[None]]
# Whether a user has at least one connected chat device (decides offline push).
OnlineCheck = Callable[[str], Awaitable[bool]]
Spawn = Callable[[Coroutine[Any, Any, Any], str], None]

_BAN_TTL_S = 5.0
_MAX_CACHE = 100_000


class Blocks(Protocol):
    async def either_blocked(self, a: str, b: str) -> bool: ...
    async def block(self, blocker: str, blocked: str) -> None: ...
    async def unblock(self, blocker: str, blocked: str) -> None: ...


class BanStatus(Protocol):
    async def __call__(self, user: str) -> bool: ...


class ChatService:
    def __init__(self, *, settings: ChatSettings, store: ChatStore, committer: Committer, blocks: Blocks,
                 is_banned: BanStatus, text_filter: TextFilter, push: PushService, emit: Emit,
                 online: OnlineCheck, spawn: Spawn, views: ViewFlusher, ids: IdGenerator | None = None) -> None:
        self.settings = settings
        self._store = store
        self._committer = committer
        self._blocks = blocks
        self._is_banned = is_banned
        self._filter = text_filter
        self._push = push
        self._emit = emit
        self._online = online
        self._spawn = spawn
        self._views = views
        self._ids = ids or IdGenerator()
        self._bans: TtlCache[str, bool] = TtlCache(is_banned, ttl_s=_BAN_TTL_S)
        self._typing: dict[tuple[str, str], tuple[str, float]] = {}

    # -- sending ----------------------------------------------------------------------------------
    async def send(self, sender: str, req: validate.Send) -> SendResult:
        if req.to == sender:
            raise InvalidPayload("cannot message yourself")
        await self._check_pair(sender, req.to)
        text = self._filter.check(req.text)
        doc = model.message_doc(
            message_id=self._ids.next(), cid=conversation_id(sender, req.to), sender=sender, recipient=req.to,
            text=text, client_id=req.client_id, reply_to=req.reply_to, created_at=model.now(),
        )
        return await self._committer.submit(doc)

    async def deliver(self, doc: Doc, skip_sid: str | None) -> None:
        """`message:new` to every device of the recipient and every other device of the sender."""
        m = public(doc)
        await self._emit(doc["to"], "message:new", m, None)
        await self._emit(doc["from"], "message:new", m, skip_sid)

    async def on_commit(self, docs: Sequence[Doc]) -> None:
        """Committer listener: offline push, checked off the send path."""
        if self._push.enabled:
            self._spawn(self._push_offline(list(docs)), "chat-push-check")

    async def on_recovered(self, docs: Sequence[Doc]) -> None:
        """Messages finished by the crash-recovery sweep were never delivered: deliver them now."""
        for doc in docs:
            await self.deliver(doc, None)
        await self.on_commit(docs)

    async def _push_offline(self, docs: list[Doc]) -> None:
        recipients = list({d["to"] for d in docs})
        online = dict(zip(recipients, await asyncio.gather(*(self._online(u) for u in recipients)), strict=True))
        chars = self.settings.push.preview_chars
        for doc in docs:
            if not online[doc["to"]]:
                self._push.notify(f"msg:{doc['_id']}", doc["to"], "message:new", {
                    "message_id": doc["_id"], "conversation_id": doc["cid"], "from": doc["from"],
                    "preview": doc["text"][:chars] if chars else "",
                })

    async def _check_pair(self, sender: str, recipient: str) -> None:
        if await self._banned(sender):
            raise Forbidden("account is banned")
        if await self._blocks.either_blocked(sender, recipient):
            raise Blocked("messaging between these users is blocked")
        if await self._banned(recipient):
            raise Forbidden("recipient is not available")

    async def _banned(self, user: str) -> bool:
        return await self._bans.get(user)

    # -- receipts ---------------------------------------------------------------------------------
    async def delivered(self, user: str, ids: list[str]) -> None:
        at = model.now()
        for sender, changed in (await self._store.mark_delivered(user, ids, at)).items():
            await self._emit(sender, "message:status", {"ids": changed, "status": "delivered", "at": model.iso(at)},
                             None)

    async def read(self, user: str, peer: str, up_to: str) -> dict[str, Any]:
        cid = conversation_id(user, peer)
        target = await self._store.get(up_to)
        if target is None or target["cid"] != cid:
            raise NotFound("up_to: no such message in this conversation")
        at = model.now()
        ids, unread = await self._store.mark_read(user, peer, cid, up_to, at)
        if ids:
            await self._emit(peer, "message:status", {"ids": ids, "status": "read", "at": model.iso(at)}, None)
        await self._emit(user, "conversation:updated", {"with": peer, "unread": unread}, None)
        return {"unread": unread}

    # -- typing -----------------------------------------------------------------------------------
    async def typing(self, user: str, to: str, state: str) -> None:
        """Relay to the recipient's devices; repeated `start`s inside the throttle window are dropped."""
        if to == user:
            return
        key = (user, to)
        now = time.monotonic()
        last = self._typing.get(key)
        throttle = self.settings.typing_throttle_s
        if last is not None and last[0] == state and (state == "stop" or now - last[1] < throttle):
            return
        if last is None and state == "stop":
            return
        # Recorded before the (usually cached) block lookup: events of one sender run concurrently.
        if len(self._typing) > _MAX_CACHE:
            self._typing.clear()
        self._typing[key] = (state, now)
        if await self._blocks.either_blocked(user, to):
            return
        await self._emit(to, "typing", {"from": user, "state": state}, None)

    # -- reading history --------------------------------------------------------------------------
    async def history(self, user: str, peer: str, before: str | None, limit: int) -> dict[str, Any]:
        docs = await self._store.history(conversation_id(user, peer), user, before, limit + 1)
        more = len(docs) > limit
        docs = docs[:limit]
        return {"messages": [public(d) for d in docs], "next_before": docs[-1]["_id"] if more and docs else None}

    async def sync(self, user: str, since: str | None, limit: int) -> dict[str, Any]:
        docs = await self._store.sync(user, since, limit + 1)
        more = len(docs) > limit
        return {"messages": [public(d) for d in docs[:limit]], "more": more}

    async def conversations(self, user: str, before: str | None, limit: int) -> dict[str, Any]:
        await self._views.settled()
        views = [v for v in await self._store.views(user, before, limit + 1) if v.get("last_id")]
        more = len(views) > limit
        views = views[:limit]
        last = await self._store.by_ids(v["last_id"] for v in views)
        unread = await self._store.unread(user, {v["cid"]: str(v.get("read_up_to") or "") for v in views})
        out: list[dict[str, Any]] = []
        for view in views:
            doc = last.get(view["last_id"])
            if doc is None or user in doc.get("hidden_for", ()):
                doc = await self._store.latest_visible(view["cid"], user)
                if doc is None:
                    continue
            out.append({"with": view["peer"], "last_message": public(doc), "unread": unread.get(view["cid"], 0)})
        return {"conversations": out, "next": views[-1]["last_id"] if more and views else None}

    # -- edit, delete -----------------------------------------------------------------------------
    async def edit(self, user: str, message_id: str, text: str) -> dict[str, Any]:
        text = self._filter.check(text)
        at = model.now()
        not_before = at - dt.timedelta(seconds=self.settings.edit_window_s)
        doc = await self._store.edit(message_id, user, text, not_before, at)
        if doc is None:
            current = await self._store.get(message_id)
            if current is None or user not in (current["from"], current["to"]):
                raise NotFound("no such message")
            if current["from"] != user:
                raise Forbidden("only the sender can edit a message")
            if current.get("deleted"):
                raise NotFound("message was deleted")
            raise Forbidden("the edit window has passed")
        m = public(doc)
        await self._emit(doc["to"], "message:updated", m, None)
        await self._emit(doc["from"], "message:updated", m, None)
        return {"message": m}

    async def delete(self, user: str, message_id: str, scope: str) -> None:
        if scope == "me":
            if not await self._store.hide_for(message_id, user):
                raise NotFound("no such message")
            await self._emit(user, "message:deleted", {"id": message_id}, None)
            return
        doc = await self._store.delete_for_everyone(message_id, user, model.now())
        if doc is None:
            current = await self._store.get(message_id)
            if current is None or user not in (current["from"], current["to"]):
                raise NotFound("no such message")
            raise Forbidden("only the sender can delete a message for everyone")
        await self._emit(doc["to"], "message:deleted", {"id": message_id}, None)
        await self._emit(doc["from"], "message:deleted", {"id": message_id}, None)

    async def delete_by_moderator(self, message_id: str) -> Doc:
        """Delete a message for everyone (moderation): both parties' devices get `message:deleted`.
        Idempotent: deleting again changes nothing and tells the devices again."""
        doc = await self._store.delete_by_moderator(message_id, model.now())
        if doc is None:
            raise NotFound("no such message")
        await self._emit(doc["to"], "message:deleted", {"id": message_id}, None)
        await self._emit(doc["from"], "message:deleted", {"id": message_id}, None)
        return doc

    # -- blocking, reports ------------------------------------------------------------------------
    async def block(self, user: str, other: str) -> None:
        if other == user:
            raise InvalidPayload("cannot block yourself")
        await self._blocks.block(user, other)

    async def unblock(self, user: str, other: str) -> None:
        if other == user:
            raise InvalidPayload("cannot unblock yourself")
        await self._blocks.unblock(user, other)

    async def report(self, user: str, message_id: str, reason: str) -> dict[str, Any]:
        doc = await self._store.get(message_id)
        if doc is None or user not in (doc["from"], doc["to"]):
            raise NotFound("no such message")
        await self._store.report(doc, user, reason, model.now())
        return {}
