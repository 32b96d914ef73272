"""Wallet and ledger over REST, and `wallet:updated` reaching every device on every node."""

from __future__ import annotations

import asyncio

import pytest

from server.app import LEDGER
from tests.billing.api import Api
from tests.support.apps import RunningApp, make_settings, running_app
from tests.support.clients import connect, token_for


async def test_new_wallet_has_the_signup_bonus(app_server: RunningApp) -> None:
    api = Api(app_server, "wal-ann")
    status, body = await api.get("/api/wallet")
    assert status == 200
    assert body == {"balance": 10, "held": 0, "available": 10}
    status, body = await api.get("/api/wallet/ledger")
    assert status == 200
    assert [(e["kind"], e["delta"], e["balance_after"]) for e in body["entries"]] == [("signup_bonus", 10, 10)]
    assert body["next"] is None


async def test_wallet_shows_holds(app_server: RunningApp) -> None:
    ledger = app_server.app[LEDGER]
    await ledger.hold("wal-hal", 4, "call:h1:hold", ref="h1")
    status, body = await Api(app_server, "wal-hal").get("/api/wallet")
    assert status == 200 and body == {"balance": 10, "held": 4, "available": 6}


async def test_ledger_is_newest_first_and_cursor_paginated(app_server: RunningApp) -> None:
    ledger = app_server.app[LEDGER]
    for n in range(7):
        await ledger.credit("wal-bo", n + 1, f"admin:wal-bo:{n}", "admin")
    api = Api(app_server, "wal-bo")
    pages = await api.pages("/api/wallet/ledger", 3)
    seen = [e["id"] for page in pages for e in page]
    assert len(pages) == 3
    assert seen == [f"admin:wal-bo:{n}" for n in reversed(range(7))] + ["signup:wal-bo"]
    _, body = await api.get("/api/wallet/ledger?limit=1")
    assert body["entries"][0]["balance_after"] == 10 + sum(range(1, 8))


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "before=notanumber"])
async def test_bad_ledger_queries_are_400(app_server: RunningApp, query: str) -> None:
    status, body = await Api(app_server, "wal-cy").get(f"/api/wallet/ledger?{query}")
    assert status == 400 and body["error"]["code"] == "invalid_payload"


async def test_wallet_needs_a_token(app_server: RunningApp) -> None:
    api = Api(app_server, "wal-di")
    status, body = await api.get("/api/wallet", auth=False)
    assert status == 401 and body["error"]["code"] == "auth_missing"


async def test_every_device_gets_wallet_updated(app_server: RunningApp, clients) -> None:
    phone = await clients(app_server, "wal-ed")
    tablet = await clients(app_server, "wal-ed", namespaces=["/presence"])
    api = Api(app_server, "wal-ed")
    opened = asyncio.create_task(tablet.next("/presence", "wallet:updated"))
    assert await api.balance() == 10  # opening the wallet grants the signup bonus: an update too
    bonus = {"balance": 10, "delta": 10, "reason": "signup_bonus", "held": 0, "available": 10, "ref": None}
    assert await opened == bonus
    got = [asyncio.create_task(phone.next(ns, "wallet:updated")) for ns in ("/chat", "/presence", "/call")]
    got.append(asyncio.create_task(tablet.next("/presence", "wallet:updated")))
    status, body = await api.buy("small")
    assert status == 201
    expected = {"balance": 60, "delta": 50, "reason": "purchase", "held": 0, "available": 60,
                "ref": body["purchase_id"]}
    assert await asyncio.gather(*got) == [expected] * 4
    await asyncio.sleep(0.1)
    assert phone.received("/chat", "wallet:updated") == [bonus, expected]  # once per device and namespace


@pytest.fixture
def env(base_env: dict[str, str], redis_url: str) -> dict[str, str]:
    return {**base_env, "REDIS_URL": redis_url}


async def test_wallet_updated_reaches_a_device_on_another_node(env: dict[str, str]) -> None:
    async with running_app(make_settings({**env, "PAIRLY_NODE_ID": "A"})) as a, \
            running_app(make_settings({**env, "PAIRLY_NODE_ID": "B"})) as b:
        api = Api(a, "wal-fa")
        assert await api.balance() == 10  # wallet opened before the device connects
        device = await connect(b.url, "wal-fa", token_for(b.settings, "wal-fa"), ["/chat", "/call"])
        update = asyncio.create_task(device.next("/call", "wallet:updated"))
        await asyncio.sleep(0.1)  # node B subscribes to the user's channel asynchronously to the connect
        status, body = await api.buy("medium")
        assert status == 201 and body["status"] == "succeeded" and body["balance"] == 130
        event = await update
        assert event["balance"] == 130 and event["delta"] == 120 and event["reason"] == "purchase"
        await device.close()
