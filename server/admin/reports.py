"""The moderation queue: message reports (`chat_reports`, written by `message:report`) with the
message and a few messages of context, and their resolution.

Resolving applies one action — `dismiss`, `delete_message` (for everyone), `warn` (a notice to the
reported user), `ban` (the reported user) — and then marks the report resolved with a compare-and-set.
Idempotent: resolving a resolved report with the same action answers the stored resolution and does
nothing again; with another action it is a `conflict`. The action runs before the mark, so a failure
leaves the report open to be resolved again (each action is itself safe to repeat).

A report's stored id joins the message id and the reporter with a control character; the API shows
it base64url-encoded so it fits in a URL path.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from config.errors import Conflict, InvalidPayload, NotFound
from server.admin.audit import jsonable
from server.chat.model import public as public_message

Doc = dict[str, Any]
ACTIONS = ("dismiss", "delete_message", "warn", "ban")
STATUSES = ("open", "resolved")
DEFAULT_WARNING = "A message of yours was reported and reviewed by our moderators. Please follow the rules."


def public_id(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def raw_id(public: str) -> str:
    try:
        return base64.urlsafe_b64decode(public + "=" * (-len(public) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise NotFound("no such report") from None


def report_summary(r: Doc) -> Doc:
    out: Doc = {"id": public_id(r["_id"]), "message_id": r["message_id"], "reporter": r["reporter"],
                "reported": r["reported"], "reason": r.get("reason"), "status": r.get("status", "open"),
                "at": jsonable(r.get("at"))}
    if r.get("resolution") is not None:
        out["resolution"] = jsonable(r["resolution"])
    return out


@dataclass(frozen=True, slots=True)
class Resolution:
    action: str
    by: str
    reason: str | None = None
    text: str | None = None
    until: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Effects:
    """What resolving can do, as calls into the services that own it."""

    delete_message: Callable[[str], Awaitable[Any]]
    warn: Callable[[str, str], Awaitable[Any]]
    ban: Callable[[str, str, dt.datetime | None], Awaitable[Any]]


class Moderation:
    def __init__(self, db: AsyncDatabase[Doc], effects: Effects, *, context: int = 3) -> None:
        self._reports = db["chat_reports"]
        self._messages = db["chat_messages"]
        self._effects = effects
        self._context = context

    async def listing(self, *, status: str | None, reported: str | None, reporter: str | None,
                      before: str | None, limit: int) -> tuple[list[Doc], str | None]:
        """Reports newest first with their message and context; the cursor is `<at ms>:<id>` of the last."""
        query: Doc = {}
        if status is not None:
            query["status"] = status
        for name, value in (("reported", reported), ("reporter", reporter)):
            if value is not None:
                query[name] = value
        if before is not None:
            at, rid = _cursor(before)
            query["$or"] = [{"at": {"$lt": at}}, {"at": at, "_id": {"$lt": rid}}]
        docs = await self._reports.find(query).sort([("at", -1), ("_id", -1)]).limit(limit + 1).to_list()
        more = len(docs) > limit
        docs = docs[:limit]
        items = [await self._with_message(d) for d in docs]
        nxt = None
        if more and docs:
            last = docs[-1]
            at = last["at"] if last["at"].tzinfo else last["at"].replace(tzinfo=dt.UTC)
            nxt = f"{round(at.timestamp() * 1000)}:{public_id(last['_id'])}"  # stored times are in ms
        return items, nxt

    async def get(self, report_id: str) -> Doc:
        doc = await self._reports.find_one({"_id": raw_id(report_id)})
        if doc is None:
            raise NotFound("no such report")
        return doc

    async def _with_message(self, report: Doc) -> Doc:
        out = report_summary(report)
        message = await self._messages.find_one({"_id": report["message_id"]})
        # The message as it is now (deleted ones show so), else the copy taken when it was reported.
        out["message"] = public_message(message) if message else jsonable(report.get("message"))
        out["context"] = await self._context_of(message) if message else []
        return out

    async def _context_of(self, message: Doc) -> list[Doc]:
        cid, mid = message["cid"], message["_id"]
        older = await self._messages.find({"cid": cid, "_id": {"$lt": mid}}).sort("_id", -1) \
            .limit(self._context).to_list()
        newer = await self._messages.find({"cid": cid, "_id": {"$gt": mid}}).sort("_id", 1) \
            .limit(self._context).to_list()
        return [public_message(m) for m in [*reversed(older), *newer]]

    async def resolve(self, report_id: str, res: Resolution) -> tuple[Doc, Doc, bool]:
        """(report before, report after, whether this call resolved it — False for a replay)."""
        if res.action not in ACTIONS:
            raise InvalidPayload(f"action must be one of {', '.join(ACTIONS)}")
        report = await self.get(report_id)
        done = report.get("resolution")
        if report.get("status") == "resolved" and done is not None:
            if done.get("action") != res.action:
                raise Conflict(f"report already resolved with {done.get('action')}")
            return report_summary(report), report_summary(report), False
        if res.action == "ban" and not (res.reason or "").strip():
            raise InvalidPayload("a ban needs a reason")
        await self._act(report, res)
        resolution = {"action": res.action, "by": res.by, "at": dt.datetime.now(dt.UTC), "reason": res.reason}
        result = await self._reports.update_one({"_id": report["_id"], "status": {"$ne": "resolved"}},
                                                {"$set": {"status": "resolved", "resolution": resolution}})
        after = await self.get(report_id)
        if result.modified_count == 0:  # resolved concurrently: answer what won
            return await self.resolve(report_id, res)
        return report_summary(report), report_summary(after), True

    async def _act(self, report: Doc, res: Resolution) -> None:
        if res.action == "delete_message":
            await self._effects.delete_message(report["message_id"])
        elif res.action == "warn":
            await self._effects.warn(report["reported"], res.text or DEFAULT_WARNING)
        elif res.action == "ban":
            await self._effects.ban(report["reported"], res.reason or "", res.until)


def _cursor(raw: str) -> tuple[dt.datetime, str]:
    at, sep, rid = raw.partition(":")
    try:
        stamp = dt.datetime.fromtimestamp(int(at) / 1000, dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidPayload("bad cursor") from None
    if not sep:
        raise InvalidPayload("bad cursor")
    try:
        return stamp, raw_id(rid)
    except NotFound:
        raise InvalidPayload("bad cursor") from None
