"""The admin audit log: one entry per mutating admin action, appended and never updated or deleted.

`admin_audit` documents: `_id` (an ObjectId), actor, role, action,
target, before, after, reason, request_id, at, and `key` for actions that are idempotent by a key of
their own (a credit adjustment's idempotency key, a report's resolution): replaying such an action
appends nothing, because the key is unique. This class has no update or delete on purpose — the only
writes are `insert_one`; the REST API exposes reading only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from config.errors import InvalidPayload

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: the operator's user id, the role they act in, and the HTTP request id."""

    user: str
    role: str
    request_id: str | None


class AuditLog:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._coll = db["admin_audit"]

    async def append(self, actor: Actor, action: str, target: str, *, before: Any = None, after: Any = None,
                     reason: str | None = None, key: str | None = None) -> Doc | None:
        """Append one entry; None when an entry with this `key` exists already (a replayed action)."""
        # `at` at the store's resolution (ms), so the cursor built from it matches the stored value.
        now = dt.datetime.now(dt.UTC)
        doc: Doc = {"_id": ObjectId(), "actor": actor.user, "role": actor.role, "action": action,
                    "target": target, "before": before, "after": after, "reason": reason,
                    "request_id": actor.request_id, "at": now.replace(microsecond=now.microsecond // 1000 * 1000)}
        if key is not None:
            doc["key"] = key
        try:
            await self._coll.insert_one(doc)
        except DuplicateKeyError:
            return None
        return doc

    async def find(self, *, actor: str | None = None, target: str | None = None, action: str | None = None,
                   since: dt.datetime | None = None, until: dt.datetime | None = None,
                   before: str | None = None, limit: int = 50) -> tuple[list[Doc], str | None]:
        """Entries newest first by time (entries come from several nodes: an ObjectId orders only within
        a second across processes), filtered; the cursor is `<at in ms>:<id>` of the last entry."""
        query: Doc = {}
        for name, value in (("actor", actor), ("target", target), ("action", action)):
            if value is not None:
                query[name] = value
        if since is not None or until is not None:
            query["at"] = {**({"$gte": since} if since else {}), **({"$lt": until} if until else {})}
        if before is not None:
            at, oid = _cursor(before)
            query["$or"] = [{"at": {"$lt": at}}, {"at": at, "_id": {"$lt": oid}}]
        docs = await self._coll.find(query).sort([("at", -1), ("_id", -1)]).limit(limit + 1).to_list()
        more = len(docs) > limit
        docs = docs[:limit]
        return [public(d) for d in docs], (_cursor_of(docs[-1]) if more and docs else None)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _cursor_of(doc: Doc) -> str:
    return f"{round(_utc(doc['at']).timestamp() * 1000)}:{doc['_id']}"


def _cursor(raw: str) -> tuple[dt.datetime, ObjectId]:
    ms, _, oid = raw.partition(":")
    try:
        return dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC), ObjectId(oid)
    except (ValueError, OverflowError, OSError, InvalidId):
        raise InvalidPayload("bad cursor") from None


def public(doc: Doc) -> Doc:
    out: Doc = jsonable({k: v for k, v in doc.items() if k not in ("_id", "key")})
    out["id"] = str(doc["_id"])
    return out


def jsonable(value: Any) -> Any:
    """Store documents as JSON: datetimes as ISO 8601 (UTC), ObjectIds as strings."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    coll = db["admin_audit"]
    await coll.create_index("key", unique=True, partialFilterExpression={"key": {"$exists": True}})
    await coll.create_index([("at", -1), ("_id", -1)])
    await coll.create_index([("actor", 1), ("at", -1)])
    await coll.create_index([("target", 1), ("at", -1)])
