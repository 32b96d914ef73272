"""Who may see whom: a user who blocked the viewer looks offline to them.

Reads the `blocks` collection that `server.blocks.BlockStore` writes (`{blocker, blocked}`), in the
direction BlockStore does not cache: everyone who blocked one viewer, in one indexed query, for a
whole subscribe or REST lookup. Blocks made after a subscription reach presence as
`server.blocks.BlockChange` notifications (`PresenceService.block_changed`), which re-check the pair
here, uncached, so notifications arriving out of order still leave the right state.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

Doc = dict[str, Any]


class BlockDirectory:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._coll = db["blocks"]

    async def blockers_of(self, viewer: str) -> frozenset[str]:
        """Everyone who has blocked `viewer`."""
        return frozenset([d["blocker"] async for d in self._coll.find({"blocked": viewer}, {"blocker": 1})])

    async def is_blocked(self, blocker: str, blocked: str) -> bool:
        """Whether `blocker` has blocked `blocked` now (read from the store, never cached)."""
        return await self._coll.find_one({"blocker": blocker, "blocked": blocked}, {"_id": 1}) is not None
