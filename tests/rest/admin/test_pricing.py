"""Runtime pricing: validated, persisted, audited, and used by every node for the next message, the next
call and the next minute of a call in progress, without a restart; `GET /api/credits/packages`
reflects it."""

from __future__ import annotations

from typing import Any

from tests.billing.api import Api
from tests.rest.admin.conftest import FAST, audit_entries, eventually, ok, staff
from tests.server.call.conftest import CALL, billed, until
from tests.support.apps import make_settings, running_app
from tests.support.clients import connect, token_for

PACKAGES = [{"id": "starter", "name": "Starter", "credits": 40, "prices": {"usd": 99, "inr": 7900}},
            {"id": "mega", "name": "Mega", "credits": 1000, "prices": {"usd": 999, "inr": 79900}}]


async def catalogue(url: str, settings: Any) -> dict[str, Any]:
    status, body = await Api((url, settings), "pr-viewer").get("/api/credits/packages", auth=False)
    assert status == 200, body
    return dict(body)


async def test_a_change_on_one_node_is_used_by_the_other(nodes, base_env: dict[str, str]) -> None:
    n0, n1 = nodes(2, **FAST)
    settings = make_settings(base_env)
    admin = staff((n0.url, settings), "pr-root", "admin")
    change = {"message": 3, "audio_per_minute": 7, "signup_bonus": 100, "packages": PACKAGES, "reason": "promo"}
    after = await ok(admin, "PUT", "/api/admin/pricing", change)
    assert after["message"] == 3 and after["video_per_minute"] == 10 and after["version"] == 1
    seen: dict[str, Any] = {}

    async def applied() -> bool:
        seen.update(await catalogue(n1.url, settings))
        return bool(seen["pricing"]["message"] == 3)

    await eventually(applied)  # node 1 polls the stored version (PAIRLY_PRICING_POLL_S)
    assert seen["pricing"] == {"message": 3, "audio_per_minute": 7, "video_per_minute": 10, "signup_bonus": 100}
    assert [p["id"] for p in seen["packages"]] == ["starter", "mega"]
    # The next message on node 1 costs the new price; new wallets get the new bonus.
    ann = await connect(n1.url, "pr-ann", token_for(settings, "pr-ann"), ["/chat", CALL])
    bob = await connect(n1.url, "pr-bob", token_for(settings, "pr-bob"), ["/chat", CALL])
    try:
        ack = await ann.call("/chat", "message:send", {"to": "pr-bob", "client_id": "p1", "text": "hi"})
        assert ack["ok"] and ack["price"] == 3 and ack["balance"] == 97, ack
        # The next call is invited at the new rate, and its minute is charged at it.
        invite = await ann.call(CALL, "call:invite", {"to": "pr-bob", "media": "audio"})
        assert invite["ok"] and invite["rate_per_minute"] == 7, invite
        await until(lambda: bob.received(CALL, "call:incoming"))
        assert (await bob.call(CALL, "call:accept", {"call_id": invite["call_id"]}))["ok"]
        minute = await until(lambda: billed(ann, invite["call_id"]))
        assert minute[0]["credits"] == 7 and minute[0]["balance"] == 90
        assert (await ann.call(CALL, "call:end", {"call_id": invite["call_id"]}))["ok"]
        # Buying uses the new catalogue on either node.
        status, bought = await Api((n1.url, settings), "pr-ann").buy("mega")
        assert status == 201 and bought["credits"] == 1000, bought
        status, answer = await Api((n0.url, settings), "pr-ann").buy("small")
        assert status == 400 and "unknown package" in answer["error"]["message"]
    finally:
        await ann.close()
        await bob.close()
    [entry] = await audit_entries(admin, action="pricing.update")
    assert entry["before"]["message"] == 1 and entry["after"]["message"] == 3 and entry["reason"] == "promo"


async def test_a_call_in_progress_pays_the_new_rate_from_its_next_minute(nodes, base_env: dict[str, str]) -> None:
    n0, n1 = nodes(2, **{**FAST, "PAIRLY_CALL_BILLING_INTERVAL_S": "1", "PAIRLY_SIGNUP_BONUS": "200"})
    settings = make_settings(base_env)
    ann = await connect(n1.url, "pm-ann", token_for(settings, "pm-ann"), [CALL])
    bob = await connect(n1.url, "pm-bob", token_for(settings, "pm-bob"), [CALL])
    try:
        invite = await ann.call(CALL, "call:invite", {"to": "pm-bob", "media": "audio"})
        assert invite["ok"] and invite["rate_per_minute"] == 5, invite
        call_id = invite["call_id"]
        await until(lambda: bob.received(CALL, "call:incoming"))
        assert (await bob.call(CALL, "call:accept", {"call_id": call_id}))["ok"]  # node 1 ticks it
        await until(lambda: len(billed(ann, call_id)) >= 2)
        admin = staff((n0.url, settings), "pm-root", "admin")
        await ok(admin, "PUT", "/api/admin/pricing", {"audio_per_minute": 9, "reason": "peak"})
        await eventually(lambda: _audio_rate_is(n1.url, settings, 9))
        changed_at = len(billed(ann, call_id))
        await until(lambda: len(billed(ann, call_id)) >= changed_at + 2, timeout=10)
        assert (await ann.call(CALL, "call:end", {"call_id": call_id}))["ok"]
        ended = await until(lambda: ann.received(CALL, "call:ended"))
    finally:
        await ann.close()
        await bob.close()
    credits = [b["credits"] for b in billed(ann, call_id)]
    # 5 until the change reached node 1, 9 from the next minute on: one switch, never back.
    assert credits[:2] == [5, 5] and credits[changed_at + 1:] == [9] * len(credits[changed_at + 1:])
    assert credits == sorted(credits) and set(credits) == {5, 9}
    # An end racing a boundary charges that minute itself (at the new rate), without a call:billed.
    e = ended[0]
    assert e["billed_minutes"] >= len(credits)
    assert e["credits"] == sum(credits) + 9 * (e["billed_minutes"] - len(credits))


async def _audio_rate_is(url: str, settings: Any, rate: int) -> bool:
    return bool((await catalogue(url, settings))["pricing"]["audio_per_minute"] == rate)


async def test_pricing_is_validated_persisted_and_applied_at_once(base_env: dict[str, str], clients) -> None:
    settings = make_settings({**base_env, **FAST})
    async with running_app(settings) as app:
        admin = staff(app, "pr-root", "admin")
        before = await ok(admin, "GET", "/api/admin/pricing")
        assert before["version"] == 0 and before["message"] == 1 and len(before["packages"]) == 4
        bad: list[Any] = [
            {"message": -1}, {"message": "2"}, {"message": 1.5}, {"message": 10**7}, {"colour": "red"},
            {"packages": []}, {"packages": [{"id": "x", "credits": 0, "prices": {"usd": 1}}]},
            {"packages": [{"id": "Bad Id", "credits": 5, "prices": {"usd": 1}}]},
            {"packages": [{"id": "a", "credits": 5, "prices": {"usd": 1}}, {"id": "a", "credits": 6,
                                                                           "prices": {"usd": 2}}]},
            {"packages": [{"id": "a", "credits": 5, "prices": {"dollars": 1}}]},
            {"packages": [{"id": "a", "credits": 5, "prices": {"usd": 0}}]}, "cheap"]
        for body in bad:
            status, answer = await admin.put("/api/admin/pricing", body)
            assert status == 400 and answer["error"]["code"] == "invalid_payload", (body, answer)
        assert await ok(admin, "GET", "/api/admin/pricing") == before
        assert await audit_entries(admin) == []
        for role in ("moderator", "support"):
            assert (await staff(app, f"pr-{role}", role).put("/api/admin/pricing", {"message": 0}))[0] == 403
        assert (await ok(staff(app, "pr-help", "support"), "GET", "/api/admin/pricing"))["message"] == 1
        after = await ok(admin, "PUT", "/api/admin/pricing", {"message": 2, "packages": PACKAGES})
        assert after["version"] == 1 and after["message"] == 2
        # This node applies it at once: the next message costs 2.
        assert (await catalogue(app.url, settings))["pricing"]["message"] == 2
        ann = await clients(app, "pr-ann", namespaces=["/chat"])
        ack = await ann.call("/chat", "message:send", {"to": "pr-bob", "client_id": "q1", "text": "hi"})
        assert ack["ok"] and ack["price"] == 2, ack
    # Persisted: a restarted node starts with the operator's prices, not the configured ones.
    async with running_app(make_settings({**base_env, **FAST})) as app:
        body = await catalogue(app.url, app.settings)
        assert body["pricing"]["message"] == 2 and [p["id"] for p in body["packages"]] == ["starter", "mega"]
        assert (await ok(staff(app, "pr-root", "admin"), "GET", "/api/admin/pricing"))["version"] == 1


async def test_packages_need_a_price_in_every_configured_provider_currency(
        base_env: dict[str, str], stripe_api) -> None:
    settings = make_settings({**base_env, **FAST, **stripe_api.env()})
    async with running_app(settings) as app:
        admin = staff(app, "pr-root", "admin")
        inr_only = [{"id": "a", "credits": 5, "prices": {"inr": 100}}]
        status, answer = await admin.put("/api/admin/pricing", {"packages": inr_only})
        assert status == 400 and "need a price in usd" in answer["error"]["message"], answer

