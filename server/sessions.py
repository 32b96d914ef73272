"""Cutting sessions off: revoking a token (`jti`), revoking every token of a user, banning.

MongoDB is the source of truth — the `revoked_tokens` deny-list and the user's `banned`,
`banned_until` and `tokens_valid_after` — so a cut-off survives any Redis restart, and the operator's
CLI (`python -m server revoke|ban|unban`) needs only the store. Each cut-off also appends an event to
`session_events`; every node polls that collection (`PAIRLY_SESSION_POLL_S`, 0.5 s) and disconnects
its own affected sockets after telling them `session:revoked`. Polling the store rather than Redis
pub/sub reaches every node within one poll with or without Redis, and an event is never missed by a
node that was briefly cut off from Redis.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from config.errors import InvalidPayload
from config.periodic import Periodic
from server.revocation import RevocationStore
from server.users import UserStore

log = structlog.get_logger(__name__)

Doc = dict[str, Any]
# (kind, user or None, jti or None, reason) -> None: disconnect the affected local sockets.
Kick = Callable[[str, str | None, str | None, str], Awaitable[None]]

EVENT_TTL_S = 24 * 3600
_OVERLAP_S = 5.0  # events written by other processes may carry slightly older timestamps


class SessionControl:
    def __init__(self, db: AsyncDatabase[Doc], users: UserStore, revocations: RevocationStore) -> None:
        self._events = db["session_events"]
        self._users = users
        self._revocations = revocations

    async def revoke_token(self, jti: str, expires_at: float | None = None) -> None:
        if not jti or len(jti) > 200:
            raise InvalidPayload("jti must be 1..200 characters")
        # Without a known expiry, keep the entry as long as the longest token lifetime allowed.
        await self._revocations.revoke(jti, expires_at or time.time() + 366 * 24 * 3600)
        await self._announce("jti", jti=jti, reason="token revoked")

    async def revoke_user(self, user: str, reason: str = "sessions revoked") -> None:
        await self._users.revoke_all_tokens(user)
        await self._announce("user", user=user, reason=reason)

    async def ban(self, user: str, reason: str, until: dt.datetime | None = None) -> None:
        if not reason.strip():
            raise InvalidPayload("a ban needs a reason")
        await self._users.set_banned(user, True, reason, until=until)
        await self._announce("ban", user=user, reason="banned")

    async def unban(self, user: str) -> None:
        await self._users.set_banned(user, False, None)

    async def _announce(self, kind: str, *, user: str | None = None, jti: str | None = None, reason: str) -> None:
        await self._events.insert_one({"_id": ObjectId(), "kind": kind, "user": user, "jti": jti, "reason": reason,
                                       "at": dt.datetime.now(dt.UTC)})


class SessionWatcher:
    """Polls `session_events` and hands each new event to `kick` once."""

    def __init__(self, db: AsyncDatabase[Doc], kick: Kick, *, poll_s: float = 0.5) -> None:
        self._events = db["session_events"]
        self._kick = kick
        self._poller = Periodic("session_events_poll", poll_s, self.poll)
        self._seen: dict[Any, float] = {}
        self._since = dt.datetime.now(dt.UTC)

    async def start(self) -> None:
        self._poller.start()

    async def stop(self) -> None:
        await self._poller.stop()

    async def poll(self) -> None:
        since = self._since - dt.timedelta(seconds=_OVERLAP_S)
        started = time.monotonic()
        newest = self._since
        async for event in self._events.find({"at": {"$gte": since}}).sort("at", 1):
            at = event["at"] if event["at"].tzinfo else event["at"].replace(tzinfo=dt.UTC)
            newest = max(newest, at)
            if event["_id"] in self._seen:
                continue
            self._seen[event["_id"]] = started
            try:
                await self._kick(event["kind"], event.get("user"), event.get("jti"), event.get("reason") or "revoked")
            except Exception:
                log.exception("session_kick_failed", kind=event["kind"])
        self._since = newest
        horizon = started - 4 * _OVERLAP_S
        for key in [k for k, t in self._seen.items() if t < horizon]:
            del self._seen[key]


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    await db["session_events"].create_index("at", expireAfterSeconds=EVENT_TTL_S)


class LocalSockets(Protocol):
    """A namespace's live sockets on this node (`BaseNamespace.callers`)."""

    namespace: str
    callers: dict[str, Any]


def local_kicker(sio: Any, namespaces: list[LocalSockets],
                 on_ban: Callable[[str], Awaitable[Any]] | None = None) -> Kick:
    """Disconnect this node's sockets hit by an event: all of a user's, or those opened with a `jti`."""

    async def kick(kind: str, user: str | None, jti: str | None, reason: str) -> None:
        targets = [(ns.namespace, sid) for ns in namespaces for sid, caller in list(ns.callers.items())
                   if (kind == "jti" and jti is not None and caller.identity.jti == jti)
                   or (kind != "jti" and caller.user_id == user)]
        for namespace, sid in targets:
            await sio.emit("session:revoked", {"reason": reason}, to=sid, namespace=namespace)
        for namespace, sid in targets:
            await sio.disconnect(sid, namespace=namespace)
        if targets:
            log.info("sessions_cut", kind=kind, sockets=len(targets))
        if kind == "ban" and user is not None and on_ban is not None:
            await on_ban(user)

    return kick
