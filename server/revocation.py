"""The `jti` deny-list, in MongoDB (a TTL index drops entries once the token would have expired anyway).

The store is the only copy and answers every check: a Redis copy would have to be consulted before the
store anyway (an entry missing from a restarted Redis must not let a revoked token in), so it would
add a round trip and save none. Live sockets are cut off by `server.sessions`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase


class RevocationStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._coll = db["revoked_tokens"]

    async def revoke(self, jti: str, expires_at: float) -> None:
        expiry = dt.datetime.fromtimestamp(expires_at, dt.UTC) + dt.timedelta(seconds=60)
        await self._coll.update_one({"_id": jti}, {"$set": {"expires_at": expiry}}, upsert=True)

    async def is_revoked(self, jti: str) -> bool:
        return await self._coll.find_one({"_id": jti}, projection={"_id": 1}) is not None
