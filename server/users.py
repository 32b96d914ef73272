"""User records seen on connect: display name, roles, first/last seen, bans, token cut-off."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from server.auth import Identity

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class UserStatus:
    banned: bool
    tokens_valid_after: float | None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UserStore:
    # A device joins three namespaces at once and apps reconnect often: `seen` writes a user at most
    # once per this many seconds per node.
    SEEN_EVERY_S = 30.0

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._users = db["users"]
        self._last_seen_write: dict[str, float] = {}
        # Upserts waiting for the flush running now: a connect storm (10,000 devices reconnecting)
        # becomes a few bulk writes instead of one task and one round trip per user (docs/memory.md).
        self._pending: dict[str, tuple[Identity, dt.datetime]] = {}
        self._flushing = False

    async def status(self, user_id: str) -> UserStatus:
        doc = await self._users.find_one(
            {"_id": user_id}, projection={"banned": 1, "banned_until": 1, "tokens_valid_after": 1}
        )
        if doc is None:
            return UserStatus(banned=False, tokens_valid_after=None)
        after = doc.get("tokens_valid_after")
        until = doc.get("banned_until")
        if isinstance(until, dt.datetime) and until.tzinfo is None:
            until = until.replace(tzinfo=dt.UTC)
        return UserStatus(
            banned=bool(doc.get("banned")) and not (isinstance(until, dt.datetime) and until <= _now()),
            tokens_valid_after=after.timestamp() if isinstance(after, dt.datetime) else None,
        )

    async def seen(self, identity: Identity) -> None:
        mono = time.monotonic()
        if mono - self._last_seen_write.get(identity.user_id, -self.SEEN_EVERY_S) < self.SEEN_EVERY_S:
            return
        if len(self._last_seen_write) > 100_000:
            self._last_seen_write.clear()
        self._last_seen_write[identity.user_id] = mono
        self._pending[identity.user_id] = (identity, _now())
        if self._flushing:
            return  # the flush in progress takes it in its next batch
        self._flushing = True
        try:
            while self._pending:
                batch, self._pending = self._pending, {}
                await self._users.bulk_write([_seen_update(i, at) for i, at in batch.values()], ordered=False)
        finally:
            self._flushing = False

    async def get(self, user_id: str) -> Doc | None:
        return await self._users.find_one({"_id": user_id})

    async def set_banned(self, user_id: str, banned: bool, reason: str | None = None, *,
                         until: dt.datetime | None = None) -> None:
        """Ban (until `until`, or for good) or lift a ban. An expired ban lifts itself at the next check."""
        await self._users.update_one(
            {"_id": user_id},
            {"$set": {"banned": banned, "ban_reason": reason, "banned_until": until if banned else None,
                      "ban_changed_at": _now()}},
            upsert=True,
        )

    async def revoke_all_tokens(self, user_id: str, at: dt.datetime | None = None) -> None:
        """Tokens issued before `at` (default now) stop working for this user."""
        await self._users.update_one(
            {"_id": user_id}, {"$set": {"tokens_valid_after": at or _now()}}, upsert=True
        )


def _seen_update(identity: Identity, now: dt.datetime) -> UpdateOne:
    update: Doc = {"$set": {"roles": list(identity.roles), "last_seen": now}, "$setOnInsert": {"first_seen": now}}
    if identity.name:
        update["$set"]["name"] = identity.name
    return UpdateOne({"_id": identity.user_id}, update, upsert=True)


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    await db["users"].create_index("last_seen")
    await db["revoked_tokens"].create_index("expires_at", expireAfterSeconds=0)
