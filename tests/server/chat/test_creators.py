"""Messages to creators: the creator's rate is charged and reported, the payment is split exactly
(creator share by the carry rule, the rest to the platform), the creator hears `earnings:updated` on
every node, and a rate change applies from the next message."""

from __future__ import annotations

import asyncio

import pytest

from billing import accounts
from server.app import LEDGER
from tests.billing.api import Api
from tests.server.chat.conftest import CHAT, send
from tests.support.apps import make_settings, running_app
from tests.support.clients import connect, token_for

CREATOR = {"roles": ["user", "creator"]}


async def test_messages_to_a_creator_pay_their_rate_and_split_exactly(app_server, clients) -> None:
    ledger = app_server.app[LEDGER]
    creator = await clients(app_server, "cr-star", namespaces=[CHAT], **CREATOR)
    fan = await clients(app_server, "cr-fan", namespaces=[CHAT])
    status, _ = await Api(app_server, "cr-star", **CREATOR).put("/api/creator/rates", {"message": 3})
    assert status == 200
    first = asyncio.create_task(creator.next(CHAT, "earnings:updated"))
    ack = await send(fan, "cr-star", "hello")
    assert ack["ok"] and ack["price"] == 3 and ack["balance"] == 10 - 3
    assert await first == {"balance": 1, "delta": 1, "reason": "message", "ref": ack["message"]["id"]}  # 60% of 3
    # Two more at 3: the creator's total is floor(9 * 60 / 100) = 5, the platform has the rest.
    for _ in range(2):
        assert (await send(fan, "cr-star", "more"))["price"] == 3
    assert await ledger.balance(accounts.earnings("cr-star")) == 5
    assert await ledger.balance(accounts.PLATFORM_REVENUE) == 9 - 5
    assert (await ledger.wallet("cr-fan")).balance == 1
    # A message to a non-creator pays the platform price to the platform only.
    ack = await send(fan, "cr-nobody", "hi")
    assert ack["ok"] and ack["price"] == 1 and ack["balance"] == 0
    assert await ledger.balance(accounts.earnings("cr-nobody")) == 0
    report = await ledger.reconcile()
    assert report.ok and report.total == 0


async def test_a_rate_change_applies_to_the_next_message(app_server, clients) -> None:
    creator_api = Api(app_server, "cr-rate", **CREATOR)
    await clients(app_server, "cr-rate", namespaces=[CHAT], **CREATOR)
    fan = await clients(app_server, "cr-payer", namespaces=[CHAT])
    assert (await creator_api.put("/api/creator/rates", {"message": 2}))[0] == 200
    assert (await send(fan, "cr-rate", "a"))["price"] == 2
    assert (await creator_api.put("/api/creator/rates", {"message": 5}))[0] == 200
    ack = await send(fan, "cr-rate", "b")
    assert ack["price"] == 5 and ack["balance"] == 10 - 2 - 5
    # Not enough left for the creator's rate: refused, nothing charged, nothing stored.
    refused = await send(fan, "cr-rate", "c")
    assert refused["error"]["code"] == "insufficient_credits"
    assert (await app_server.app[LEDGER].wallet("cr-payer")).balance == 3


@pytest.fixture
def two_node_env(base_env: dict[str, str], redis_url: str) -> dict[str, str]:
    return {**base_env, "REDIS_URL": redis_url, "PAIRLY_RATE_LIMITS": "*=1000/1,message:send=1000/1",
            "PAIRLY_SIGNUP_BONUS": "100"}


async def test_earnings_updated_reaches_the_creator_on_another_node(two_node_env: dict[str, str]) -> None:
    async with running_app(make_settings({**two_node_env, "PAIRLY_NODE_ID": "A"})) as a, \
            running_app(make_settings({**two_node_env, "PAIRLY_NODE_ID": "B"})) as b:
        creator_b = await connect(b.url, "cr-far", token_for(b.settings, "cr-far", **CREATOR), [CHAT, "/presence"])
        fan_a = await connect(a.url, "cr-near", token_for(a.settings, "cr-near"), [CHAT])
        assert (await Api(b, "cr-far", **CREATOR).put("/api/creator/rates", {"message": 5}))[0] == 200
        await asyncio.sleep(0.1)  # the Redis subscription of a new room is asynchronous to the connect ack
        events = [asyncio.create_task(creator_b.next(ns, "earnings:updated")) for ns in (CHAT, "/presence")]
        ack = await send(fan_a, "cr-far", "across")
        assert ack["ok"] and ack["price"] == 5
        expected = {"balance": 3, "delta": 3, "reason": "message", "ref": ack["message"]["id"]}
        assert [await e for e in events] == [expected, expected]
        # Within the same second, further earnings are coalesced into one event at its end.
        sends = [send(fan_a, "cr-far", f"m{i}") for i in range(3)]
        assert all(r["ok"] for r in await asyncio.gather(*sends))
        coalesced = await creator_b.next(CHAT, "earnings:updated", timeout=5)
        assert coalesced["balance"] == 20 * 60 // 100 and coalesced["delta"] == 12 - 3  # one payer: one shard
        await creator_b.close()
        await fan_a.close()
