"""Operators' view of users: search with cursor pagination, and one user's full picture.

Search runs over `users` (id prefix, name, banned, last seen range) in id order; a balance range is
checked against the wallets (`ledger_accounts`) of each chunk of users read, so a balance filter may
scan up to `scan_max` users for one page and then return a shorter page with a cursor to go on —
portable across MongoDB and the embedded store, whose `$lookup` on a computed key is not usable.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from billing import accounts
from billing.ledger import Ledger
from config.errors import NotFound
from server.admin.audit import jsonable
from server.admin.reports import report_summary

Doc = dict[str, Any]
# (namespace, user) -> {sid: node}
Where = Callable[[str, str], Awaitable[dict[str, str]]]
Presence = Callable[[str], Awaitable[Doc]]
CallHistory = Callable[[str, int], Awaitable[list[Doc]]]

_CHUNK = 200
_DETAIL_ITEMS = 20


@dataclass(frozen=True, slots=True)
class UserFilter:
    id_prefix: str | None = None
    name: str | None = None
    banned: bool | None = None
    balance_min: int | None = None
    balance_max: int | None = None
    seen_after: dt.datetime | None = None
    seen_before: dt.datetime | None = None

    def query(self, now: dt.datetime) -> Doc:
        q: Doc = {}
        if self.id_prefix:
            q["_id"] = {"$regex": "^" + re.escape(self.id_prefix)}
        if self.name:
            q["name"] = {"$regex": re.escape(self.name), "$options": "i"}
        if self.banned is not None:
            active = {"banned": True, "$or": [{"banned_until": None}, {"banned_until": {"$gt": now}}]}
            q.update(active if self.banned else {"$nor": [active]})
        if self.seen_after or self.seen_before:
            q["last_seen"] = {**({"$gte": self.seen_after} if self.seen_after else {}),
                              **({"$lt": self.seen_before} if self.seen_before else {})}
        return q

    def balance_ok(self, balance: int) -> bool:
        return (self.balance_min is None or balance >= self.balance_min) and (
            self.balance_max is None or balance <= self.balance_max)


class AdminUsers:
    def __init__(self, db: AsyncDatabase[Doc], ledger: Ledger, *, where: Where, namespaces: Sequence[str],
                 presence: Presence, call_history: CallHistory, scan_max: int = 5000) -> None:
        self._users = db["users"]
        self._wallets = db["ledger_accounts"]
        self._reports = db["chat_reports"]
        self._ledger = ledger
        self._where = where
        self._namespaces = tuple(namespaces)
        self._presence = presence
        self._call_history = call_history
        self._scan_max = scan_max

    async def search(self, f: UserFilter, *, after: str | None, limit: int) -> tuple[list[Doc], str | None]:
        """Users in id order after `after`; (page, cursor of the next page or None)."""
        base = f.query(dt.datetime.now(dt.UTC))
        found: list[Doc] = []
        last = after
        scanned = 0
        balance_filtered = f.balance_min is not None or f.balance_max is not None
        while True:
            query = {**base, **({"_id": {**base.get("_id", {}), "$gt": last}} if last is not None else {})}
            chunk = await self._users.find(query).sort("_id", 1).limit(_CHUNK if balance_filtered else limit + 1) \
                .to_list()
            balances = await self._balances([d["_id"] for d in chunk])
            for doc in chunk:
                last = doc["_id"]
                scanned += 1
                if f.balance_ok(balances.get(doc["_id"], 0)):
                    found.append(_summary(doc, balances.get(doc["_id"])))
                    if len(found) > limit:
                        return found[:limit], found[limit - 1]["id"]
            if not balance_filtered or len(chunk) < _CHUNK:
                return found, None
            if scanned >= self._scan_max:  # a shorter page: the cursor continues the scan
                return found, last

    async def _balances(self, users: list[str]) -> dict[str, int]:
        if not users:
            return {}
        ids = [accounts.wallet(u) for u in users]
        out: dict[str, int] = {}
        async for d in self._wallets.find({"_id": {"$in": ids}}, {"balance": 1, "held": 1}):
            out[d["_id"][len("wallet:"):]] = int(d["balance"]) + int(d.get("held", 0))
        return out

    async def profile(self, user: str) -> Doc:
        """The user's record; NotFound for a user never seen (no record, no wallet)."""
        doc = await self._users.find_one({"_id": user})
        if doc is None and await self._ledger.peek_wallet(user) is None:
            raise NotFound("no such user")
        return _profile(doc or {"_id": user})

    async def detail(self, user: str) -> Doc:
        profile = await self.profile(user)
        wallet = await self._ledger.peek_wallet(user)
        entries, _ = await self._ledger.entries(user, limit=_DETAIL_ITEMS)
        account = accounts.wallet(user)
        by = await self._reports.find({"reporter": user}).sort("at", -1).limit(_DETAIL_ITEMS).to_list()
        against = await self._reports.find({"reported": user}).sort("at", -1).limit(_DETAIL_ITEMS).to_list()
        connections = [{"namespace": ns, "sid": sid, "node": node}
                       for ns in self._namespaces for sid, node in sorted((await self._where(ns, user)).items())]
        return {
            "profile": profile,
            "wallet": None if wallet is None else {"balance": wallet.balance, "held": wallet.held,
                                                   "available": wallet.available},
            "ledger": [e.view(account) for e in entries],
            "calls": await self._call_history(user, _DETAIL_ITEMS),
            "reports_by": [report_summary(r) for r in by],
            "reports_against": [report_summary(r) for r in against],
            "connections": connections,
            "presence": await self._presence(user),
        }


def _profile(doc: Doc) -> Doc:
    until = doc.get("banned_until")
    if isinstance(until, dt.datetime) and until.tzinfo is None:
        until = until.replace(tzinfo=dt.UTC)
    banned = bool(doc.get("banned")) and not (isinstance(until, dt.datetime) and until <= dt.datetime.now(dt.UTC))
    out: Doc = jsonable({k: doc.get(k) for k in ("name", "roles", "first_seen", "last_seen", "ban_reason",
                                                 "banned_until", "tokens_valid_after")})
    return {"id": doc["_id"], **out, "banned": banned}


def _summary(doc: Doc, balance: int | None) -> Doc:
    return {**_profile(doc), "balance": balance}

