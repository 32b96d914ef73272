"""Aborting a dead writer's open transaction.

A process killed between a batch transaction's first write and its commit leaves the transaction
open in the store, holding its documents: until the store gives up on it (MongoDB's and
SecantusDB's transaction lifetime, 60 s by default) every other write to those accounts conflicts.
So each ledger process records the store sessions it runs transactions on (one small document per
process, written only when the driver hands it a session it has not used before) and beats every
`beat_every_s`. A process that stops beating for `stale_after_s` is dead: any other process
`killSessions` its sessions — the store aborts the open transaction at once — and removes its record.
With `exclusive` (one node, no Redis: no other writer can be alive) the record of every other
process is dead at start-up, so a restart after `kill -9` frees the accounts before serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
from typing import Any

import structlog
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

log = structlog.get_logger(__name__)

Doc = dict[str, Any]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class WriterSessions:
    def __init__(self, db: AsyncDatabase[Doc], *, exclusive: bool, beat_every_s: float = 5.0,
                 stale_after_s: float = 15.0) -> None:
        self._coll = db["ledger_writers"]
        self._admin = db.client.admin
        self._exclusive = exclusive
        self._beat_every_s = beat_every_s
        self._stale_after_s = stale_after_s
        self.writer_id = secrets.token_hex(8)
        self._known: set[bytes] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.sweep(everyone_else=self._exclusive)
        self._task = asyncio.create_task(self._loop(), name="ledger-writers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(PyMongoError):
            await self._coll.delete_one({"_id": self.writer_id})

    async def register(self, session: AsyncClientSession) -> None:
        """Record `session` before its first transactional write (once per pooled session)."""
        lsid = session.session_id
        raw = bytes(lsid["id"])
        if raw in self._known:
            return
        await self._coll.update_one({"_id": self.writer_id},
                                    {"$addToSet": {"lsids": lsid}, "$set": {"beat": _now()}}, upsert=True)
        self._known.add(raw)

    async def sweep(self, *, everyone_else: bool = False) -> int:
        """Kill the sessions of writers that stopped beating (all others with `everyone_else`)."""
        query: Doc = {"_id": {"$ne": self.writer_id}}
        if not everyone_else:
            query["beat"] = {"$lt": _now() - dt.timedelta(seconds=self._stale_after_s)}
        killed = 0
        async for doc in self._coll.find(query):
            lsids = doc.get("lsids") or []
            if lsids:
                try:
                    await self._admin.command("killSessions", lsids)
                except PyMongoError as exc:
                    log.warning("ledger_writer_kill_failed", writer=doc["_id"], error=str(exc))
                    continue
            await self._coll.delete_one({"_id": doc["_id"], "beat": doc.get("beat")})
            killed += 1
            log.info("ledger_dead_writer_sessions_killed", writer=doc["_id"], sessions=len(lsids))
        return killed

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._beat_every_s)
            try:
                if self._known:
                    await self._coll.update_one({"_id": self.writer_id}, {"$set": {"beat": _now()}})
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ledger_writers_beat_failed")
