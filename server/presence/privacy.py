"""Who may see whom: a user who blocked the viewer looks offline to them.

Reads the `blocks` collection that `server.blocks.BlockStore` writes (`{_id: "<blocker>\\x1f<blocked>",
blocker, blocked}`), in the direction BlockStore does not cache: everyone who blocked one viewer, in
one indexed query, for a whole subscribe or REST lookup.

`watch` follows the collection's change stream so a block made after a subscription takes effect on
every node at once: each node moves its own connections of the blocked user out of (or back into)
the blocker's presence room. Change streams need a replica set (MongoDB production target,
SecantusDB); without one the watcher logs a warning and retries, and blocks then apply to new
subscriptions only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase

log = structlog.get_logger(__name__)
Doc = dict[str, Any]
_SEP = "\x1f"

BlockListener = Callable[[str, str, bool], Awaitable[None]]
"""(blocker, blocked, now_blocked)."""


class BlockDirectory:
    def __init__(self, db: AsyncDatabase[Doc], *, retry_s: float = 5.0) -> None:
        self._coll = db["blocks"]
        self._retry_s = retry_s

    async def blockers_of(self, viewer: str) -> frozenset[str]:
        """Everyone who has blocked `viewer`."""
        return frozenset([d["blocker"] async for d in self._coll.find({"blocked": viewer}, {"blocker": 1})])

    async def watch(self, listener: BlockListener, started: asyncio.Event | None = None) -> None:
        """Call `listener` for every block and unblock, until cancelled."""
        pipeline = [{"$match": {"operationType": {"$in": ["insert", "delete"]}}}]
        resume: Any = None
        failures = 0
        while True:
            try:
                async with await self._coll.watch(pipeline, resume_after=resume) as stream:
                    if started is not None:
                        started.set()
                    async for change in stream:
                        resume, failures = change.get("_id"), 0
                        key = change.get("documentKey", {}).get("_id")
                        if not isinstance(key, str) or _SEP not in key:
                            continue
                        blocker, blocked = key.split(_SEP, 1)
                        try:
                            await listener(blocker, blocked, change["operationType"] == "insert")
                        except Exception:
                            log.exception("presence_block_listener_failed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("presence_block_watch_failed", error=str(exc), retry_s=self._retry_s)
                if failures > 1:
                    resume = None  # the resume point itself may be what fails: start afresh
                await asyncio.sleep(self._retry_s)
