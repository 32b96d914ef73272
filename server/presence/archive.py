"""Durable presence facts in MongoDB, collection `presence`: `{_id: user, last_seen, mode}`.

`last_seen` is written behind: offline transitions are buffered and flushed by the node's sweep in
one unordered bulk write (`$max`, so a late flush never moves it back). Reads see the buffer too.
`mode` (an explicit away/invisible) is written at once: it is rare and must survive reconnects.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import structlog
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from server.presence.model import MODES, Mode, Record

log = structlog.get_logger(__name__)
Doc = dict[str, Any]


def _dt(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


class PresenceArchive:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._coll = db["presence"]
        self._pending: dict[str, float] = {}

    def last_seen_at(self, user: str, ts: float) -> None:
        """Queue `user`'s last seen for the next flush."""
        self._pending[user] = max(ts, self._pending.get(user, ts))

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        ops = [UpdateOne({"_id": u}, {"$max": {"last_seen": _dt(ts)}}, upsert=True) for u, ts in batch.items()]
        try:
            await self._coll.bulk_write(ops, ordered=False)
        except Exception:
            for user, ts in batch.items():  # keep them for the next flush
                self.last_seen_at(user, ts)
            raise

    async def last_seen(self, users: Iterable[str]) -> dict[str, float]:
        wanted = list(users)
        found: dict[str, float] = {}
        missing = []
        for user in wanted:
            if user in self._pending:
                found[user] = self._pending[user]
            else:
                missing.append(user)
        if missing:
            async for doc in self._coll.find({"_id": {"$in": missing}}, {"last_seen": 1}):
                at = doc.get("last_seen")
                if isinstance(at, dt.datetime):
                    found[doc["_id"]] = at.timestamp()
        return found

    async def seeds(self, users: Iterable[str]) -> dict[str, Record]:
        """Starting records for users the shared store has forgotten: their explicit mode and last seen."""
        wanted = list(users)
        if not wanted:
            return {}
        out: dict[str, Record] = {}
        async for doc in self._coll.find({"_id": {"$in": wanted}}, {"mode": 1, "last_seen": 1}):
            at = doc.get("last_seen")
            mode: Mode = next((m for m in MODES if m == doc.get("mode")), "auto")
            out[doc["_id"]] = Record(mode=mode, last_seen=at.timestamp() if isinstance(at, dt.datetime) else None)
        for user in wanted:
            if user in self._pending:
                seed = out.get(user, Record())
                out[user] = replace(seed, last_seen=max(self._pending[user], seed.last_seen or 0.0))
        return out

    async def set_mode(self, user: str, mode: Mode) -> None:
        await self._coll.update_one({"_id": user}, {"$set": {"mode": mode}}, upsert=True)


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    # Lookups are by _id; this one serves "who was seen since" queries (retention, admin views).
    await db["presence"].create_index("last_seen")
