"""The audit log: one entry per mutating admin action (actor, role, action, target, before/after,
reason, request id, time), never changed or removed; filters and cursor pages."""

from __future__ import annotations

import datetime as dt
import uuid
from urllib.parse import quote

import aiohttp

from server.admin.audit import AuditLog
from tests.rest.admin.conftest import audit_entries, ok, staff
from tests.rest.test_payouts import earn, request_payout
from tests.support.apps import RunningApp


async def test_every_mutating_action_appends_one_entry(app_server: RunningApp, clients) -> None:
    admin = staff(app_server, "au-root", "admin")
    await clients(app_server, "au-ann", namespaces=["/chat"])
    start = dt.datetime.now(dt.UTC)
    await ok(admin, "POST", "/api/admin/users/au-ann/ban", {"reason": "r1"})
    await ok(admin, "POST", "/api/admin/users/au-ann/unban", {})
    await ok(admin, "POST", "/api/admin/users/au-ann/revoke-sessions", {})
    await ok(admin, "POST", "/api/admin/users/au-ann/credits",
             {"delta": 5, "reason": "r2", "idempotency_key": uuid.uuid4().hex}, status=201)
    await ok(admin, "POST", "/api/admin/notice", {"text": "hi"})
    await ok(admin, "PUT", "/api/admin/pricing", {"message": 2})
    await earn(app_server, "au-cre", 400)
    creator = staff(app_server, "au-cre", "creator")
    status, payout = await request_payout(creator, 100)
    assert status == 201, payout
    await ok(admin, "POST", f"/api/admin/payouts/{payout['id']}/reject", {"reason": "docs missing"})
    await ok(admin, "POST", f"/api/admin/payouts/{payout['id']}/reject", {"reason": "docs missing"})
    entries = await audit_entries(admin)
    assert [e["action"] for e in entries] == [
        "payout.reject", "pricing.update", "notice.send", "user.credits", "user.revoke_sessions", "user.unban",
        "user.ban"]
    for e in entries:
        assert e["actor"] == "au-root" and e["role"] == "admin" and e["request_id"] and e["id"]
        assert dt.datetime.fromisoformat(e["at"]) >= start - dt.timedelta(seconds=1)
    ban = entries[-1]
    assert ban["target"] == "au-ann" and ban["reason"] == "r1"
    assert ban["before"]["banned"] is False and ban["after"]["banned"] is True
    # The request id is the one the caller sent (X-Request-Id), or the generated one answered in the header.
    async with aiohttp.ClientSession() as http, http.post(
            f"{app_server.url}/api/admin/notice", json={"text": "traced"},
            headers={**admin.headers, "X-Request-Id": "trace-123"}) as resp:
        assert resp.status == 200 and resp.headers["X-Request-Id"] == "trace-123"
    assert (await audit_entries(admin))[0]["request_id"] == "trace-123"
    # Filters, time range and pages.
    assert [e["action"] for e in await audit_entries(admin, target="au-ann", action="user.ban")] == ["user.ban"]
    assert await audit_entries(admin, actor="au-nobody") == []
    later = quote((dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).isoformat())
    assert await audit_entries(admin, since=later) == []
    assert len(await audit_entries(admin, until=later, since=quote(start.isoformat()))) == 8
    pages, cursor = [], None
    while True:
        body = await ok(admin, "GET", "/api/admin/audit?limit=3" + (f"&before={cursor}" if cursor else ""))
        pages.append([e["id"] for e in body["entries"]])
        cursor = body["next"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 2]
    assert [i for p in pages for i in p] == [e["id"] for e in await audit_entries(admin)]
    assert (await admin.get("/api/admin/audit?before=zzz"))[0] == 400
    assert (await admin.get("/api/admin/audit?since=noon"))[0] == 400


async def test_entries_are_never_changed_or_removed(app_server: RunningApp, clients) -> None:
    admin = staff(app_server, "au-root", "admin")
    await clients(app_server, "au-bo", namespaces=["/chat"])
    await ok(admin, "POST", "/api/admin/users/au-bo/ban", {"reason": "first"})
    before = await audit_entries(admin)
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        status, answer = await admin.request(method, "/api/admin/audit", {"reason": "tamper"})
        assert status == 405 and answer["error"]["code"] == "invalid_payload", (method, answer)
        status, _ = await admin.request(method, f"/api/admin/audit/{before[0]['id']}", {})
        assert status in (404, 405)
    await ok(admin, "POST", "/api/admin/users/au-bo/ban", {"reason": "second"})
    after = await audit_entries(admin)
    assert after[1:] == before and after[0]["reason"] == "second"
    # The service itself offers no way to change an entry.
    assert {m for m in vars(AuditLog) if not m.startswith("_")} == {"append", "find"}
    assert (await staff(app_server, "au-mod", "moderator").get("/api/admin/audit"))[0] == 403
