"""Conversation views, written off the ack path and repaired after a crash.

Each stored message moves both parties' views (`chat_conversations`: `last_id` with `$max`). That
write is not needed for the ack, so sends only `offer` their message to a `GroupCommit` that
coalesces a few milliseconds of messages into one upsert per (user, peer). A process killed before
its flush leaves views behind their messages; to find those messages, each process keeps a mark
(`chat_view_marks`: its id tag, `low` — no message of its still waiting for its views is older — and
a heartbeat), refreshed every `mark_every_s`. A mark whose heartbeat is older than `stale_after_s`
(or, with `exclusive`, every other process's mark at start-up) belongs to a dead process: any node
re-applies the views of that process's messages from `low` on (ids carry the process tag), hands
them to `on_repaired` (re-delivery: their recipients may never have got `message:new`; clients
de-duplicate by id) and drops the mark.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog
from pymongo.errors import PyMongoError

from billing.group_commit import GroupCommit, Pending
from server.chat.ids import ID_LENGTH
from server.chat.model import Doc
from server.chat.store import ChatStore

log = structlog.get_logger(__name__)

Repaired = Callable[[Sequence[Doc]], Awaitable[None]]
_BARRIER: Doc = {}
# A send can sit in the ledger's batch (retries included) this long before its view is offered.
_IN_FLIGHT_S = 30.0


def id_at(unix_s: float) -> str:
    """The smallest message id that can be created at `unix_s`."""
    return f"{int(unix_s * 1000):012x}".ljust(ID_LENGTH, "0")


class ViewFlusher:
    def __init__(self, store: ChatStore, tag: str, *, exclusive: bool, linger_s: float = 0.02,
                 mark_every_s: float = 5.0, stale_after_s: float = 15.0, on_repaired: Repaired | None = None) -> None:
        self._store = store
        self._tag = tag
        self._exclusive = exclusive
        self._stale_after_s = stale_after_s
        self._on_repaired = on_repaired
        self.writer = secrets.token_hex(8)
        self._waiting: set[str] = set()
        self._started = False
        self._engine: GroupCommit[Doc, None] = GroupCommit(
            "chat-views", self._commit, max_batch=5000, linger_s=linger_s, recover=self._beat,
            recover_every_s=mark_every_s)

    def set_listener(self, on_repaired: Repaired | None) -> None:
        self._on_repaired = on_repaired

    async def start(self) -> None:
        await self._engine.start()  # writes our mark, repairs what dead processes left
        self._started = True

    async def stop(self) -> None:
        await self._engine.stop()
        with contextlib.suppress(PyMongoError):
            await self._store.drop_view_mark(self.writer)

    def offer(self, doc: Doc) -> None:
        self._waiting.add(doc["_id"])
        self._engine.offer(doc)

    async def settled(self) -> None:
        """Return once every view offered before this call is written (read-your-writes for
        `conversation:list` on this node; free when nothing is waiting)."""
        if self._waiting:
            await self._engine.submit(_BARRIER)

    async def _commit(self, batch: list[Pending[Doc, None]]) -> None:
        docs = [p.item for p in batch if p.item is not _BARRIER]
        if docs:
            await self._store.touch_views(docs)
        for doc in docs:
            self._waiting.discard(doc["_id"])
        for p in batch:
            p.resolve(None)

    async def _beat(self) -> None:
        low = min([id_at(time.time() - _IN_FLIGHT_S), *self._waiting])
        await self._store.set_view_mark(self.writer, self._tag, low)
        await self.repair(everyone_else=self._exclusive and not self._started)

    async def repair(self, *, everyone_else: bool = False) -> int:
        """Re-apply the views of dead processes' messages; returns how many messages were repaired."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self._stale_after_s)
        repaired = 0
        for mark in await self._store.dead_view_marks(self.writer, None if everyone_else else cutoff):
            docs = [d for d in await self._store.messages_from(mark["low"]) if d["_id"].endswith(mark["tag"])]
            if docs:
                await self._store.touch_views(docs)
                if self._on_repaired is not None:
                    try:
                        await self._on_repaired(docs)
                    except Exception:
                        log.exception("chat_views_repair_listener_failed")
            await self._store.drop_view_mark(mark["_id"], beat=mark.get("beat"))
            repaired += len(docs)
            log.info("chat_views_repaired", writer=mark["_id"], messages=len(docs))
        return repaired
