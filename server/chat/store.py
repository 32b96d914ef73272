"""Chat storage: messages, per-user conversation views, view marks, reports (PyMongo async API).

Collections
- `chat_messages`: committed messages only (`_id` = message id), inserted in the same ledger
  transaction as their charge (server/chat/committer.py). Everything here is visible. Resends are
  recognised by the ledger (the send's idempotency key is the ledger entry's key), so there is no
  index on (sender, client_id).
- `chat_conversations`: one view per (user, peer) with `last_id` (newest message, kept with `$max`)
  and `read_up_to` (the user's read pointer, kept with `$max`). Unread counts are not stored: they
  are counted from the messages above the read pointer, exact by construction whatever the
  interleaving of sends and reads across nodes. Written off the ack path (server/chat/views.py).
- `chat_view_marks`: one per running process, for repairing views after a crash (views.py).
- `chat_reports`: one per (message, reporter), for moderators.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from server.chat.model import Doc
from server.chat.model import now as model_now


def view_id(user: str, peer: str) -> str:
    return f"{user}\x1f{peer}"


class ChatStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.messages = db["chat_messages"]
        self.conversations = db["chat_conversations"]
        self.reports = db["chat_reports"]
        self.marks = db["chat_view_marks"]

    # -- sending (see committer.py) and view repair (see views.py) -----------------------------
    async def exists_in(self, message_id: str, cid: str) -> bool:
        """Whether `message_id` is a message of conversation `cid`."""
        return await self.messages.find_one({"_id": message_id, "cid": cid}, {"_id": 1}) is not None

    async def set_view_mark(self, writer: str, tag: str, low: str) -> None:
        await self.marks.update_one({"_id": writer}, {"$set": {"tag": tag, "low": low, "beat": model_now()}},
                                    upsert=True)

    async def dead_view_marks(self, writer: str, beat_before: dt.datetime | None) -> list[Doc]:
        query: Doc = {"_id": {"$ne": writer}}
        if beat_before is not None:
            query["beat"] = {"$lt": beat_before}
        return await self.marks.find(query).to_list()

    async def drop_view_mark(self, writer: str, beat: dt.datetime | None = None) -> None:
        query: Doc = {"_id": writer}
        if beat is not None:
            query["beat"] = beat
        await self.marks.delete_one(query)

    async def messages_from(self, low: str, limit: int = 200_000) -> list[Doc]:
        """Messages with ids from `low` on (an `_id` range scan), oldest first."""
        return await self.messages.find({"_id": {"$gte": low}}).sort("_id", 1).limit(limit).to_list()

    async def touch_views(self, docs: Sequence[Doc]) -> None:
        """Both parties' conversation views move to the newest of `docs` (idempotent: `$max`)."""
        views: dict[str, tuple[str, str, str, str, dt.datetime]] = {}
        for doc in docs:
            for user, peer in ((doc["from"], doc["to"]), (doc["to"], doc["from"])):
                key = view_id(user, peer)
                seen = views.get(key)
                if seen is None or doc["_id"] > seen[3]:
                    views[key] = (user, peer, doc["cid"], doc["_id"], doc["created_at"])
        if views:
            await self.conversations.bulk_write(
                [
                    UpdateOne(
                        {"_id": key},
                        {"$max": {"last_id": last, "last_at": at},
                         "$setOnInsert": {"user": user, "peer": peer, "cid": cid, "read_up_to": ""}},
                        upsert=True,
                    )
                    for key, (user, peer, cid, last, at) in views.items()
                ],
                ordered=False,
            )

    # -- reads ------------------------------------------------------------------------------------
    async def get(self, message_id: str) -> Doc | None:
        return await self.messages.find_one({"_id": message_id})

    async def history(self, cid: str, user: str, before: str | None, limit: int) -> list[Doc]:
        query: Doc = {"cid": cid, "hidden_for": {"$ne": user}}
        if before is not None:
            query["_id"] = {"$lt": before}
        return await self.messages.find(query).sort("_id", -1).limit(limit).to_list()

    async def sync(self, user: str, since: str | None, limit: int) -> list[Doc]:
        query: Doc = {"parties": user, "hidden_for": {"$ne": user}}
        if since is not None:
            query["_id"] = {"$gt": since}
        return await self.messages.find(query).sort("_id", 1).limit(limit).to_list()

    async def views(self, user: str, before: str | None, limit: int) -> list[Doc]:
        query: Doc = {"user": user}
        if before is not None:
            query["last_id"] = {"$lt": before}
        return await self.conversations.find(query).sort("last_id", -1).limit(limit).to_list()

    async def view(self, user: str, peer: str) -> Doc | None:
        return await self.conversations.find_one({"_id": view_id(user, peer)})

    async def by_ids(self, ids: Iterable[str]) -> dict[str, Doc]:
        wanted = list(set(ids))
        if not wanted:
            return {}
        return {d["_id"]: d async for d in self.messages.find({"_id": {"$in": wanted}})}

    async def latest_visible(self, cid: str, user: str) -> Doc | None:
        docs = await self.history(cid, user, None, 1)
        return docs[0] if docs else None

    async def unread(self, user: str, pointers: dict[str, str]) -> dict[str, int]:
        """Unread counts per conversation id: messages to `user` above the read pointer."""
        if not pointers:
            return {}
        pipeline: list[Doc] = [
            {"$match": {"$or": [{"cid": cid, "_id": {"$gt": ptr}} for cid, ptr in pointers.items()],
                        "to": user, "deleted": {"$ne": True}, "hidden_for": {"$ne": user}}},
            {"$group": {"_id": "$cid", "n": {"$sum": 1}}},
        ]
        counts = {cid: 0 for cid in pointers}
        async for row in await self.messages.aggregate(pipeline):
            counts[row["_id"]] = int(row["n"])
        return counts

    # -- receipts ---------------------------------------------------------------------------------
    async def mark_delivered(self, user: str, ids: Sequence[str], at: dt.datetime) -> dict[str, list[str]]:
        """Messages to `user` still `sent` become `delivered`; returns the changed ids per sender."""
        query: Doc = {"_id": {"$in": list(set(ids))}, "to": user, "status": "sent"}
        found = await self.messages.find(query, {"from": 1}).to_list()
        if not found:
            return {}
        await self.messages.update_many(
            {"_id": {"$in": [d["_id"] for d in found]}, "status": "sent"},
            {"$set": {"status": "delivered", "delivered_at": at}},
        )
        by_sender: dict[str, list[str]] = {}
        for doc in sorted(found, key=lambda d: str(d["_id"])):
            by_sender.setdefault(doc["from"], []).append(doc["_id"])
        return by_sender

    async def mark_read(self, user: str, peer: str, cid: str, up_to: str, at: dt.datetime) -> tuple[list[str], int]:
        """Move the read pointer to `up_to` (never back); returns (ids newly read, unread left)."""
        await self.conversations.update_one(
            {"_id": view_id(user, peer)},
            {"$max": {"read_up_to": up_to},
             "$setOnInsert": {"user": user, "peer": peer, "cid": cid, "last_id": ""}},
            upsert=True,
        )
        query: Doc = {"cid": cid, "to": user, "status": {"$ne": "read"}, "_id": {"$lte": up_to}}
        ids = sorted([d["_id"] async for d in self.messages.find(query, {"_id": 1})])
        if ids:
            await self.messages.update_many(
                {"_id": {"$in": ids}, "status": {"$ne": "read"}}, {"$set": {"status": "read", "read_at": at}}
            )
        view = await self.view(user, peer)
        pointer = str(view.get("read_up_to") or "") if view else up_to
        counts = await self.unread(user, {cid: pointer})
        return ids, counts.get(cid, 0)

    # -- edits, deletes, reports ------------------------------------------------------------------
    async def edit(self, message_id: str, sender: str, text: str, not_before: dt.datetime,
                   at: dt.datetime) -> Doc | None:
        return await self.messages.find_one_and_update(
            {"_id": message_id, "from": sender, "deleted": {"$ne": True},
             "created_at": {"$gte": not_before}},
            {"$set": {"text": text, "edited_at": at}},
            return_document=ReturnDocument.AFTER,
        )

    async def hide_for(self, message_id: str, user: str) -> bool:
        result = await self.messages.update_one(
            {"_id": message_id, "parties": user}, {"$addToSet": {"hidden_for": user}}
        )
        return result.matched_count > 0

    async def delete_for_everyone(self, message_id: str, sender: str, at: dt.datetime) -> Doc | None:
        return await self.messages.find_one_and_update(
            {"_id": message_id, "from": sender},
            {"$set": {"deleted": True, "text": "", "deleted_at": at}},
            return_document=ReturnDocument.AFTER,
        )

    async def delete_by_moderator(self, message_id: str, at: dt.datetime) -> Doc | None:
        """Delete for everyone whoever sent it (moderation); the first deletion's time is kept."""
        await self.messages.update_one({"_id": message_id, "deleted": {"$ne": True}},
                                       {"$set": {"deleted": True, "text": "", "deleted_at": at,
                                                 "deleted_by": "moderator"}})
        return await self.get(message_id)

    async def report(self, message: Doc, reporter: str, reason: str, at: dt.datetime) -> str:
        report_id = view_id(message["_id"], reporter)
        other = message["to"] if message["from"] == reporter else message["from"]
        await self.reports.update_one(
            {"_id": report_id},
            {"$setOnInsert": {"message_id": message["_id"], "reporter": reporter, "reported": other,
                              "reason": reason, "at": at, "status": "open",
                              "message": {k: message.get(k) for k in ("from", "to", "text", "created_at", "cid")}}},
            upsert=True,
        )
        return str(message["_id"])


async def ensure_indexes(db: AsyncDatabase[Any]) -> None:
    messages = db["chat_messages"]
    if "ck_1" in await messages.index_information():  # the pre-ledger-key protocol's resend index
        await messages.drop_index("ck_1")
    await messages.create_index([("cid", 1), ("_id", -1)])
    await messages.create_index([("parties", 1), ("_id", 1)])
    await db["chat_conversations"].create_index([("user", 1), ("last_id", -1)])
    await db["chat_reports"].create_index([("status", 1), ("at", -1)])
    await db["chat_reports"].create_index("message_id")
