"""A real node killed with SIGKILL in the middle of purchases: after a restart every purchase a client
tried is granted exactly once (retrying with its idempotency key), and the ledger reconciles."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from pymongo import AsyncMongoClient

from billing.ledger import Ledger
from tests.billing.api import Api
from tests.support.apps import NodeProcess, make_settings

USERS = 12


async def test_purchases_survive_a_sigkilled_node(base_env: dict[str, str], mongo_url: str,
                                                  nodes: Callable[..., list[NodeProcess]]) -> None:
    settings = make_settings(base_env)
    (first,) = await asyncio.to_thread(nodes, 1)
    attempted: dict[str, list[str]] = {f"crash-{u}": [] for u in range(USERS)}
    acked: list[str] = []
    stop = asyncio.Event()
    enough = asyncio.Event()

    async def buyer(user: str) -> None:
        api = Api((first.url, settings), user)
        n = 0
        while not stop.is_set():
            key = f"{user}-purchase-{n}"
            attempted[user].append(key)
            try:
                status, body = await api.buy("small", key=key)
            except (TimeoutError, aiohttp.ClientError):
                return  # the node died under this request
            if status in (200, 201) and body.get("status") == "succeeded":
                acked.append(key)
                if len(acked) >= 40:
                    enough.set()
            n += 1

    buyers = [asyncio.create_task(buyer(u)) for u in attempted]
    await asyncio.wait_for(enough.wait(), 30)
    first.signal(signal.SIGKILL)
    assert await asyncio.to_thread(first.wait, 10) == -signal.SIGKILL
    stop.set()
    await asyncio.gather(*buyers)
    assert len(acked) >= 40

    (second,) = await asyncio.to_thread(nodes, 1)  # same store; start-up is not held up by the crash

    conflicts: list[str] = []

    async def settle(user: str, key: str) -> dict[str, Any]:
        api = Api((second.url, settings), user)
        until = time.monotonic() + 45
        while True:
            status, body = await api.buy("small", key=key)
            if status == 409:
                conflicts.append(key)
            if status != 409 or time.monotonic() > until:  # 409: an entry of the dead node not yet recoverable
                assert status in (200, 201), body
                return body  # type: ignore[no-any-return]
            await asyncio.sleep(0.5)

    results = await asyncio.gather(*(settle(user, key) for user, keys in attempted.items() for key in keys))
    assert all(r["status"] == "succeeded" for r in results)
    for user, keys in attempted.items():
        assert await Api((second.url, settings), user).balance() == 10 + 50 * len(keys), user

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = client[base_env["MONGO_DB"]]
    tried = sum(len(k) for k in attempted.values())
    print(f"acked={len(acked)} attempted={tried} retried_409={len(conflicts)}")
    report = await Ledger(db).audit()
    assert report.ok, report.discrepancies
    async for purchase in db["purchases"].find():
        assert sorted(purchase["applied"]) == sorted(op["key"] for op in purchase["ops"])
        assert [op["kind"] for op in purchase["ops"]] == ["purchase"]
    with contextlib.suppress(Exception):
        await client.close()
