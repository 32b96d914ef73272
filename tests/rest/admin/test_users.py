"""Users for operators: search (id prefix, name, banned, balance range, last seen range) with cursor
pages, and one user's detail: profile, wallet, ledger, calls, reports, live connections, presence."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from urllib.parse import quote

from server.app import LEDGER
from tests.rest.admin.conftest import FAST, ok, staff
from tests.server.call.conftest import CALL
from tests.support.apps import RunningApp, make_settings
from tests.support.clients import connect, token_for


async def search(api: Any, query: str) -> list[str]:
    """Every page of a search, following `next`; the user ids in order."""
    found: list[str] = []
    cursor = None
    while True:
        page = await ok(api, "GET", f"/api/admin/users?{query}" + (f"&after={quote(cursor)}" if cursor else ""))
        found += [u["id"] for u in page["users"]]
        cursor = page["next"]
        if cursor is None:
            return found


async def test_search_filters_and_pages(app_server: RunningApp, clients) -> None:
    support = staff(app_server, "zz-help", "support")
    names = {"us-amy": "Amy Pond", "us-ben": "Ben", "us-cleo": "Cleo Amyson", "us-dan": "Dan", "us-eve": "Eve"}
    for user, name in names.items():
        await clients(app_server, user, namespaces=["/chat"], name=name)
    ledger = app_server.app[LEDGER]
    for user, extra in (("us-ben", 50), ("us-dan", 500)):
        await ledger.credit(user, extra, f"t:{user}", "test_credit")
    admin = staff(app_server, "zz-root", "admin")
    await ok(admin, "POST", "/api/admin/users/us-eve/ban", {"reason": "spam"})
    assert await search(support, "id_prefix=us-&limit=2") == sorted(names)
    assert await search(support, "id_prefix=us-&limit=1") == sorted(names)
    assert await search(support, "name=amy") == ["us-amy", "us-cleo"]
    assert await search(support, "id_prefix=us-&banned=true") == ["us-eve"]
    assert await search(support, "id_prefix=us-&banned=false") == ["us-amy", "us-ben", "us-cleo", "us-dan"]
    # Balances: wallets open (with the signup bonus) on their first movement, not on connect.
    assert await search(support, "id_prefix=us-&balance_min=50&limit=1") == ["us-ben", "us-dan"]
    assert await search(support, "id_prefix=us-&balance_min=100&balance_max=1000") == ["us-dan"]
    assert await search(support, "id_prefix=us-&balance_max=0") == ["us-amy", "us-cleo", "us-eve"]
    hour_ago = quote((dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat())
    assert await search(support, f"id_prefix=us-&seen_after={hour_ago}") == sorted(names)
    assert await search(support, f"id_prefix=us-&seen_before={hour_ago}") == []
    page = await ok(support, "GET", "/api/admin/users?id_prefix=us-d")
    [dan] = page["users"]
    assert dan["name"] == "Dan" and dan["balance"] == 510 and dan["banned"] is False and dan["last_seen"]
    for bad in ("limit=0", "limit=x", "banned=maybe", "balance_min=lots", "seen_after=yesterday",
                f"name={'x' * 300}"):
        status, answer = await support.get(f"/api/admin/users?{bad}")
        assert status == 400 and answer["error"]["code"] == "invalid_payload", (bad, answer)
    # Regex characters are searched literally.
    assert await search(support, "name=.%2A") == []


async def test_detail_shows_wallet_ledger_calls_reports_connections_and_presence(
        nodes, base_env: dict[str, str]) -> None:
    n0, n1 = nodes(2, **FAST)
    settings = make_settings(base_env)
    support = staff((n1.url, settings), "us-help", "support")
    ann_a = await connect(n0.url, "us-ann", token_for(settings, "us-ann", name="Ann"), ["/chat", "/presence"])
    ann_b = await connect(n1.url, "us-ann", token_for(settings, "us-ann"), [CALL])
    bob = await connect(n1.url, "us-bob", token_for(settings, "us-bob"), ["/chat", CALL])
    try:
        sent = await ann_a.call("/chat", "message:send", {"to": "us-bob", "client_id": "c1", "text": "hey"})
        assert (await bob.call("/chat", "message:report", {"id": sent["message"]["id"], "reason": "rude"}))["ok"]
        invite = await bob.call(CALL, "call:invite", {"to": "us-ann", "media": "audio"})
        assert invite["ok"], invite
        assert (await bob.call(CALL, "call:cancel", {"call_id": invite["call_id"]}))["ok"]
        detail = await ok(support, "GET", "/api/admin/users/us-ann")
        assert detail["profile"]["id"] == "us-ann" and detail["profile"]["name"] == "Ann"
        assert detail["wallet"] == {"balance": 9, "held": 0, "available": 9}
        assert [e["kind"] for e in detail["ledger"]] == ["message", "signup_bonus"]
        assert [c["call_id"] for c in detail["calls"]] == [invite["call_id"]]
        assert detail["reports_by"] == [] and detail["reports_against"][0]["reason"] == "rude"
        where = sorted((c["namespace"], c["node"]) for c in detail["connections"])
        assert where == [("/call", "node1"), ("/chat", "node0"), ("/presence", "node0")]
        assert detail["presence"]["status"] == "online"
        bob_detail = await ok(support, "GET", "/api/admin/users/us-bob")
        assert bob_detail["reports_by"][0]["reported"] == "us-ann"
        status, answer = await support.get(f"/api/admin/users/us-{uuid.uuid4().hex}")
        assert status == 404 and answer["error"]["code"] == "not_found"
    finally:
        for c in (ann_a, ann_b, bob):
            await c.close()
