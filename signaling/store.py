"""Call records and per-user call slots in MongoDB. Every state change is a compare-and-set, so any
node may act on any call and concurrent actions resolve to exactly one winner.

`call_slots` holds one document per user who is in a call or ringing (`_id` = user): taking a slot
is an insert, so "busy" is decided by the store's unique `_id` across nodes. A slot left behind by a
crash is recognised by its call (settled or missing) and taken over.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from config.errors import Forbidden, NotFound
from signaling.model import ACCEPTED, ENDED, OPEN, RINGING, Doc, role_of


class CallStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.calls = db["calls"]
        self.slots = db["call_slots"]

    # -- records -------------------------------------------------------------------------------------
    async def insert(self, doc: Doc) -> None:
        await self.calls.insert_one(doc)

    async def get(self, call_id: str) -> Doc | None:
        return await self.calls.find_one({"_id": call_id})

    async def party_call(self, user: str, call_id: str) -> tuple[Doc, str]:
        """The call and `user`'s role in it; NotFound, or Forbidden for someone else's call."""
        doc = await self.get(call_id)
        if doc is None:
            raise NotFound("no such call")
        role = role_of(doc, user)
        if role is None:
            raise Forbidden("you are not a party to this call")
        return doc, role

    async def accept(self, call_id: str, sid: str, node: str, at: dt.datetime) -> Doc | None:
        return await self.calls.find_one_and_update(
            {"_id": call_id, "state": RINGING},
            {"$set": {"state": ACCEPTED, "accepted_at": at, "dev.callee": {"sid": sid, "node": node},
                      "owner": node}, "$push": {"nodes": node}},
            return_document=ReturnDocument.AFTER)

    async def end(self, call_id: str, reason: str, states: Iterable[str], node: str, at: dt.datetime) -> Doc | None:
        """Move an open call to `ended`; None when it was not in one of `states` (someone else won)."""
        return await self.calls.find_one_and_update(
            {"_id": call_id, "state": {"$in": list(states)}},
            {"$set": {"state": ENDED, "reason": reason, "ended_at": at, "owner": node}},
            return_document=ReturnDocument.AFTER)

    async def finish(self, call_id: str, totals: Doc) -> None:
        """Record the settled figures; the call leaves the owner/nodes indexes."""
        await self.calls.update_one({"_id": call_id, "settled": False},
                                    {"$set": {**totals, "settled": True}, "$unset": {"owner": "", "nodes": ""}})

    async def set_media(self, call_id: str, media: str, minute: int, at: dt.datetime) -> Doc | None:
        return await self.calls.find_one_and_update(
            {"_id": call_id, "state": ACCEPTED},
            {"$set": {"media": media}, "$push": {"media_changes": {"at": at, "media": media, "minute": minute}}},
            return_document=ReturnDocument.AFTER)

    async def bind_device(self, call_id: str, role: str, old_sid: str | None, sid: str, node: str) -> bool:
        """Move a party's part of the call to a new device (a reconnect); CAS on the old device."""
        result = await self.calls.update_one(
            {"_id": call_id, "state": {"$in": list(OPEN)}, f"dev.{role}.sid": old_sid},
            {"$set": {f"dev.{role}": {"sid": sid, "node": node}}, "$push": {"nodes": node}})
        return result.modified_count == 1

    async def count_ice(self, call_id: str, role: str, limit: int) -> bool:
        """Count one ICE candidate of a party; False once the party has sent `limit`."""
        result = await self.calls.update_one({"_id": call_id, f"ice.{role}": {"$not": {"$gte": limit}}},
                                             {"$inc": {f"ice.{role}": 1}})
        return result.modified_count == 1

    async def adopt(self, call_id: str, dead: str, node: str) -> Doc | None:
        return await self.calls.find_one_and_update(
            {"_id": call_id, "owner": dead}, {"$set": {"owner": node}}, return_document=ReturnDocument.AFTER)

    async def tick_view(self, ids: list[str]) -> dict[str, Doc]:
        """What the ticking owner needs to know before charging a minute: one read for a batch."""
        cursor = self.calls.find({"_id": {"$in": ids}}, {"state": 1, "media": 1, "owner": 1})
        return {d["_id"]: d async for d in cursor}

    def touching(self, node: str) -> AsyncIterator[Doc]:
        """Unsettled calls owned by `node`, or with a party's device on it."""
        return self.calls.find({"$or": [{"owner": node}, {"nodes": node}], "settled": False})

    def unsettled(self) -> AsyncIterator[Doc]:
        return self.calls.find({"settled": False})

    async def history(self, user: str, before: str | None, limit: int) -> list[Doc]:
        query: Doc = {"parties": user}
        if before is not None:
            query["_id"] = {"$lt": before}
        return await self.calls.find(query).sort("_id", -1).limit(limit).to_list()

    async def active(self, limit: int = 1000) -> list[Doc]:
        return await self.calls.find({"state": {"$in": list(OPEN)}}).sort("_id", -1).limit(limit).to_list()

    # -- slots -------------------------------------------------------------------------------------
    async def take_slot(self, user: str, call_id: str, at: dt.datetime) -> bool:
        """Claim `user` for `call_id`; False when the user is in (or ringing in) another live call."""
        for _ in range(2):
            try:
                await self.slots.insert_one({"_id": user, "call": call_id, "at": at})
                return True
            except DuplicateKeyError:
                held = await self.slots.find_one({"_id": user})
                if held is None:
                    continue
                if held["call"] == call_id:
                    return True
                owner = await self.calls.find_one({"_id": held["call"]}, {"settled": 1})
                if owner is not None and not owner.get("settled"):
                    return False
                # A slot a crash left behind (its call is settled or was never stored): free it.
                await self.slots.delete_one({"_id": user, "call": held["call"]})
        return False

    async def free_slots(self, users: Iterable[str], call_id: str) -> None:
        await self.slots.delete_many({"_id": {"$in": list(users)}, "call": call_id})

    async def slot(self, user: str) -> str | None:
        doc = await self.slots.find_one({"_id": user})
        return None if doc is None else str(doc["call"])



async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    await db["calls"].create_index([("parties", 1), ("_id", -1)])
    await db["calls"].create_index("owner", sparse=True)
    await db["calls"].create_index("nodes", sparse=True)
    await db["calls"].create_index([("state", 1), ("_id", -1)])
