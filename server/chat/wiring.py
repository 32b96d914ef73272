"""Builds the chat runtime from the app's shared services (called once by `server.app.create_app`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from billing.creators import Creators
from billing.ledger import Ledger
from server.chat.committer import Committer
from server.chat.config import ChatSettings
from server.chat.ids import IdGenerator
from server.chat.moderation import make_filter
from server.chat.push import PushService
from server.chat.service import ChatService
from server.chat.store import ChatStore
from server.chat.views import ViewFlusher
from server.core import Core


@dataclass
class ChatRuntime:
    settings: ChatSettings
    store: ChatStore
    committer: Committer
    views: ViewFlusher
    push: PushService
    service: ChatService

    def lifecycle(self) -> Any:
        """A cleanup context: start after the ledger, stop (writing queued views) before it."""

        async def ctx(_: web.Application) -> AsyncIterator[None]:
            await self.push.start()
            await self.views.start()
            try:
                yield
            finally:
                await self.views.stop()
                await self.push.stop()

        return ctx


def build_chat(core: Core, ledger: Ledger, creators: Creators) -> ChatRuntime:
    settings = ChatSettings.from_env(core.settings.env())
    store = ChatStore(core.db)
    push = PushService(settings.push)
    ids = IdGenerator()
    # Without Redis this node is the only one (see views.py on repairing a dead process's views).
    views = ViewFlusher(store, ids.tag, exclusive=core.redis is None, linger_s=settings.views_linger_s,
                        mark_every_s=settings.recover_every_s, stale_after_s=settings.recover_after_s)
    committer = Committer(store, ledger, creators, views)
    notifier = core.notifier

    async def emit(user: str, event: str, data: Any, skip_sid: str | None) -> None:
        await notifier.to_user(user, event, data, namespaces=("/chat",), skip_sid=skip_sid)

    async def online(user: str) -> bool:
        # Local decision until presence lands: any /chat connection of the user on any node.
        return await core.connections.count("/chat", user) > 0

    async def is_banned(user: str) -> bool:
        return (await core.users.status(user)).banned

    def spawn(coro: Coroutine[Any, Any, Any], name: str) -> None:
        core.background.spawn(coro, name=name)

    service = ChatService(
        settings=settings, store=store, committer=committer, blocks=core.blocks, is_banned=is_banned,
        text_filter=make_filter(settings.banned_words, settings.banned_patterns, settings.moderation_action),
        push=push, emit=emit, online=online, spawn=spawn, views=views, ids=ids,
    )
    committer.set_listener(service.on_commit)
    views.set_listener(service.on_recovered)
    return ChatRuntime(settings, store, committer, views, push, service)
