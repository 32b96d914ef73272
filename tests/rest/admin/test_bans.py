"""Ban, unban, expiry and revoking sessions over REST: sockets on every node get `session:revoked` and
are closed within a second, the user's call ends `ended_by_admin`, reconnects are refused `banned`
and REST calls 403 — on two nodes sharing Redis and on one node without."""

from __future__ import annotations

import datetime as dt
import time

from server.app import LEDGER
from tests.billing.api import Api
from tests.rest.admin.conftest import FAST, audit_entries, eventually, ok, staff
from tests.server.call.conftest import CALL, ended, until
from tests.support.apps import RunningApp, make_settings
from tests.support.clients import ConnectRefused, connect, token_for

NAMESPACES = ["/chat", "/presence", CALL]


async def refusal(url: str, settings, user: str) -> str | None:
    try:
        client = await connect(url, user, token_for(settings, user), ["/chat"])
    except ConnectRefused as exc:
        return exc.code
    await client.close()
    return None


async def test_ban_on_two_nodes_with_redis(nodes, base_env: dict[str, str]) -> None:
    n0, n1 = nodes(2, **FAST, PAIRLY_SIGNUP_BONUS="50")
    settings = make_settings(base_env)
    mod = staff((n0.url, settings), "bn-mod", "moderator")
    eve_a = await connect(n0.url, "bn-eve", token_for(settings, "bn-eve"), NAMESPACES)
    eve_b = await connect(n1.url, "bn-eve", token_for(settings, "bn-eve"), NAMESPACES)
    bob = await connect(n1.url, "bn-bob", token_for(settings, "bn-bob"), [CALL])
    try:
        call_id = (await eve_a.call(CALL, "call:invite", {"to": "bn-bob", "media": "audio"}))["call_id"]
        await until(lambda: bob.received(CALL, "call:incoming"))
        assert (await bob.call(CALL, "call:accept", {"call_id": call_id}))["ok"]
        started = time.monotonic()
        answer = await ok(mod, "POST", "/api/admin/users/bn-eve/ban", {"reason": "spam"})
        await until(lambda: not eve_a.sio.connected and not eve_b.sio.connected, timeout=5, step=0.01)
        elapsed = time.monotonic() - started
        assert elapsed < 1.0, elapsed
        assert answer["banned"] is True and answer["ban_reason"] == "spam"
        for client in (eve_a, eve_b):
            for ns in NAMESPACES:
                assert client.received(ns, "session:revoked") == [{"reason": "banned"}]
        await until(lambda: ended(bob, call_id))
        assert ended(bob, call_id)[0]["reason"] == "ended_by_admin"
        assert await refusal(n0.url, settings, "bn-eve") == "banned"
        assert await refusal(n1.url, settings, "bn-eve") == "banned"
        status, body = await Api((n1.url, settings), "bn-eve").get("/api/wallet")
        assert status == 403 and body["error"]["code"] == "banned"
        # A banned staff member is refused too.
        await ok(mod, "POST", "/api/admin/users/bn-mod/ban", {"reason": "compromised"})
        status, body = await mod.get("/api/admin/users")
        assert status == 403 and body["error"]["code"] == "banned"
        admin = staff((n1.url, settings), "bn-root", "admin")
        await ok(admin, "POST", "/api/admin/users/bn-mod/unban", {})
        await ok(admin, "POST", "/api/admin/users/bn-eve/unban", {"reason": "appeal accepted"})
        assert await refusal(n0.url, settings, "bn-eve") is None
        assert (await Api((n0.url, settings), "bn-eve").get("/api/wallet"))[0] == 200
        actions = [e["action"] for e in await audit_entries(admin, target="bn-eve")]
        assert actions == ["user.unban", "user.ban"]
    finally:
        await bob.close()


async def test_ban_unban_expiry_and_revoke_on_one_node(app_server: RunningApp, clients) -> None:
    admin = staff(app_server, "bn-root", "admin")
    phone = await clients(app_server, "bn-kim")
    laptop = await clients(app_server, "bn-kim")
    started = time.monotonic()
    await ok(admin, "POST", "/api/admin/users/bn-kim/ban", {"reason": "abuse"})
    await until(lambda: not phone.sio.connected and not laptop.sio.connected, timeout=3, step=0.01)
    assert time.monotonic() - started < 1.0
    assert phone.received("/presence", "session:revoked") == [{"reason": "banned"}]
    assert await refusal(app_server.url, app_server.settings, "bn-kim") == "banned"
    await ok(admin, "POST", "/api/admin/users/bn-kim/unban")
    assert await refusal(app_server.url, app_server.settings, "bn-kim") is None
    # A ban with an expiry lifts by itself.
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)).isoformat()
    answer = await ok(admin, "POST", "/api/admin/users/bn-kim/ban", {"reason": "cool-off", "until": soon})
    assert answer["banned_until"] is not None
    assert await refusal(app_server.url, app_server.settings, "bn-kim") == "banned"
    detail = await ok(admin, "GET", "/api/admin/users/bn-kim")
    assert detail["profile"]["banned"] is True
    # `until` lifts it without anyone acting (asked again: the clock, not an event, lifts it).

    async def lifted() -> bool:
        return await refusal(app_server.url, app_server.settings, "bn-kim") is None

    await eventually(lifted)
    assert (await ok(admin, "GET", "/api/admin/users/bn-kim"))["profile"]["banned"] is False
    # Revoking sessions logs out everywhere without banning: old tokens refused, new ones work.
    old_token = token_for(app_server.settings, "bn-kim", now=time.time() - 5)
    device = await connect(app_server.url, "bn-kim", old_token, NAMESPACES)
    answer = await ok(admin, "POST", "/api/admin/users/bn-kim/revoke-sessions", {"reason": "lost phone"})
    assert answer["banned"] is False and answer["tokens_valid_after"]
    await until(lambda: not device.sio.connected, timeout=3)
    assert device.received("/chat", "session:revoked") == [{"reason": "sessions revoked"}]
    try:
        await connect(app_server.url, "bn-kim", old_token, ["/chat"])
        raise AssertionError("an old token still connects")
    except ConnectRefused as exc:
        assert exc.code == "auth_revoked"
    assert await refusal(app_server.url, app_server.settings, "bn-kim") is None
    actions = [e["action"] for e in await audit_entries(admin, target="bn-kim")]
    assert actions == ["user.revoke_sessions", "user.ban", "user.unban", "user.ban"]


async def test_bad_bans_change_nothing(app_server: RunningApp, clients) -> None:
    admin = staff(app_server, "bn-root", "admin")
    await clients(app_server, "bn-lee", namespaces=["/chat"])
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    for body, fragment in (({}, "body.reason is required"), ({"reason": "  "}, "body.reason"),
                           ({"reason": "x", "until": "tomorrow"}, "ISO 8601"),
                           ({"reason": "x", "until": past}, "future"),
                           ({"reason": "x", "extra": 1}, "unknown fields extra"),
                           ({"reason": 5}, "body.reason must be string")):
        status, answer = await admin.post("/api/admin/users/bn-lee/ban", body)
        assert status == 400 and answer["error"]["code"] == "invalid_payload", (body, answer)
        assert fragment in answer["error"]["message"], (fragment, answer)
    status, answer = await admin.request("POST", "/api/admin/users/bn-lee/ban", raw=b"{not json")
    assert status == 400 and answer["error"]["code"] == "invalid_payload"
    status, answer = await admin.post("/api/admin/users/bn-nobody/ban", {"reason": "x"})
    assert status == 404 and answer["error"]["code"] == "not_found"
    assert (await ok(admin, "GET", "/api/admin/users/bn-lee"))["profile"]["banned"] is False
    assert await app_server.app[LEDGER].peek_wallet("bn-nobody") is None
    assert await audit_entries(admin) == []
