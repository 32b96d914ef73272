"""Runtime pricing against the real store: concurrent changes from two nodes' services never lose an
update (compare-and-set on the version), and every instance converges on the last one."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo import AsyncMongoClient

from billing.creators import CreatorPolicy, Creators
from billing.ledger import Ledger
from billing.pricing import Pricing
from billing.runtime_pricing import RuntimePricing
from config.errors import Conflict


async def test_concurrent_changes_lose_nothing(base_env: dict[str, str]) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(base_env["MONGO_URL"])
    db = client[base_env["MONGO_DB"]]
    nodes = []
    for _ in range(2):
        pricing = Pricing()
        nodes.append((pricing, RuntimePricing(db, pricing, Creators(db, pricing, CreatorPolicy()), Ledger(db))))
    try:
        async def change(n: int) -> int | None:
            try:
                return int((await nodes[n % 2][1].update({"message": n + 2}, actor="t"))[1]["version"])
            except Conflict:
                return None

        results = await asyncio.gather(*(change(n) for n in range(6)))
        won = sorted(v for v in results if v is not None)
        assert won == list(range(1, len(won) + 1))  # each success made exactly the next version
        for _pricing, runtime in nodes:
            await runtime.refresh()
            assert runtime.version == len(won)
        assert nodes[0][0].message == nodes[1][0].message
        stored = await db["pricing_config"].find_one({"_id": "current"})
        assert stored is not None and stored["message"] == nodes[0][0].message
    finally:
        await client.close()
