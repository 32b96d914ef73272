"""Per-minute billing with a 1 s "minute": charges at accept and at each boundary, low-balance
warnings, the cut-off when a minute cannot be paid, media switches, creators' rates and shares."""

from __future__ import annotations

import pytest

from billing import accounts
from server.app import CORE, CREATORS, LEDGER
from signaling.audit import audit_calls
from tests.server.call.conftest import CALL, billed, ended, fund, ok, until


async def books_agree(app) -> None:
    assert (await app.app[LEDGER].reconcile()).ok
    audit = await audit_calls(app.app[CORE].db)
    assert audit.ok, audit.problems


async def start_call(app, clients, caller: str, callee: str, media: str = "audio", **callee_token):
    a = await clients(app, caller, namespaces=[CALL])
    b = await clients(app, callee, namespaces=[CALL], **callee_token)
    call_id = (await ok(a, "call:invite", {"to": callee, "media": media}))["call_id"]
    await until(lambda: b.received(CALL, "call:incoming"))
    await ok(b, "call:accept", {"call_id": call_id})
    return a, b, call_id


async def test_the_call_ends_when_the_next_minute_cannot_be_paid(app_server, clients) -> None:
    ledger = app_server.app[LEDGER]
    await fund(ledger, "bc-ann", 12)  # two audio minutes (5 each), 2 credits left over
    a, b, call_id = await start_call(app_server, clients, "bc-ann", "bc-bob")
    await until(lambda: ended(a, call_id), timeout=10)
    e = ended(a, call_id)[0]
    assert e["reason"] == "insufficient_credits" and e["billed_minutes"] == 2 and e["credits"] == 10
    assert [x["minute"] for x in billed(a, call_id)] == [1, 2]
    assert [x["balance"] for x in billed(a, call_id)] == [7, 2]
    # Warned after minute 2 (less than a minute left) and again at half a minute.
    warnings = [w for w in a.received(CALL, "call:low_balance") if w["call_id"] == call_id]
    assert len(warnings) == 2 and all(0 <= w["seconds_left"] <= 1 for w in warnings)
    wallet = await ledger.wallet("bc-ann")
    assert (wallet.available, wallet.held) == (2, 0)
    assert await ledger.balance(accounts.PLATFORM_REVENUE) >= 10
    await until(lambda: ended(b, call_id))
    await books_agree(app_server)


async def test_media_switch_changes_the_rate_from_the_next_minute(app_server, clients) -> None:
    ledger = app_server.app[LEDGER]
    await fund(ledger, "bm-ann", 200)
    a, b, call_id = await start_call(app_server, clients, "bm-ann", "bm-bob")
    switched = await ok(a, "call:media", {"call_id": call_id, "media": "video"})
    assert switched["rate_per_minute"] == 10 and switched["media"] == "video"
    await until(lambda: b.received(CALL, "call:media"))
    assert b.received(CALL, "call:media")[0] == {"call_id": call_id, "media": "video", "from": "bm-ann"}
    await until(lambda: len(billed(a, call_id)) >= 3)
    await ok(a, "call:end", {"call_id": call_id})
    credits = [x["credits"] for x in billed(a, call_id)]
    assert credits[0] == 5 and set(credits[switched["from_minute"] - 1:]) == {10}
    e = (await until(lambda: ended(b, call_id)))[0]
    doc = await app_server.app[CORE].db["calls"].find_one({"_id": call_id})
    assert [c["media"] for c in doc["media_changes"]] == ["audio", "video"]
    assert e["credits"] == sum(credits[: e["billed_minutes"]])
    await books_agree(app_server)


async def test_calling_a_creator_pays_their_rate_and_splits_each_minute(app_server, clients) -> None:
    ledger, creators = app_server.app[LEDGER], app_server.app[CREATORS]
    await creators.mark("bk-star", ("user", "creator"))
    await creators.set_rates("bk-star", {"audio_per_minute": 7})
    await fund(ledger, "bk-fan", 100)
    prep_client = await clients(app_server, "bk-fan", namespaces=[CALL])
    prep = await ok(prep_client, "call:prepare", {"to": "bk-star", "media": "audio"})
    assert prep["rate_per_minute"] == 7 and prep["affordable_minutes"] == 14
    await prep_client.close()
    a, b, call_id = await start_call(app_server, clients, "bk-fan", "bk-star", roles=["user", "creator"])
    # A rate change during the call applies to the next call, never this one.
    await creators.set_rates("bk-star", {"audio_per_minute": 20})
    await until(lambda: len(billed(a, call_id)) >= 2)
    await ok(b, "call:end", {"call_id": call_id})
    e = (await until(lambda: ended(a, call_id)))[0]
    assert e["credits"] == 7 * e["billed_minutes"]
    earned = await ledger.balance(accounts.earnings("bk-star"))
    # 60 % of each 7-credit minute by the carry rule: never a credit created or lost.
    assert earned == (60 * e["credits"]) // 100
    # The new rate applies from the next call.
    nxt = await ok(a, "call:invite", {"to": "bk-star", "media": "audio"})
    assert nxt["rate_per_minute"] == 20
    await ok(a, "call:cancel", {"call_id": nxt["call_id"]})
    await books_agree(app_server)


@pytest.mark.parametrize("price", ["0"])
async def test_free_calls_when_the_rate_is_zero(base_env, price) -> None:
    from tests.server.call.conftest import call_env
    from tests.support.apps import make_settings, running_app
    from tests.support.clients import connect, token_for

    settings = make_settings(call_env(base_env, PAIRLY_PRICE_AUDIO_PER_MIN=price))
    async with running_app(settings) as app:
        a = await connect(app.url, "bz-ann", token_for(settings, "bz-ann"), [CALL])
        b = await connect(app.url, "bz-bob", token_for(settings, "bz-bob"), [CALL])
        call_id = (await ok(a, "call:invite", {"to": "bz-bob", "media": "audio"}))["call_id"]
        await until(lambda: b.received(CALL, "call:incoming"))
        await ok(b, "call:accept", {"call_id": call_id})
        await until(lambda: len(billed(a, call_id)) >= 2)
        await ok(a, "call:end", {"call_id": call_id})
        e = (await until(lambda: ended(b, call_id)))[0]
        assert e["credits"] == 0 and e["billed_minutes"] >= 2
        await a.close()
        await b.close()
        await books_agree(app)
