"""The moderation queue: reports from `message:report` with the message and context, filters and
pages; resolving with each action is audited once and idempotent; moderators may, support may not."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.rest.admin.conftest import audit_entries, ok, staff
from tests.server.call.conftest import until
from tests.support.apps import RunningApp


async def test_reports_are_listed_and_resolved_with_each_action(app_server: RunningApp, clients) -> None:
    mod = staff(app_server, "rp-mod", "moderator")
    ann = await clients(app_server, "rp-ann")
    bob = await clients(app_server, "rp-bob")
    ids = []
    for n in range(6):
        ack = await ann.call("/chat", "message:send", {"to": "rp-bob", "client_id": f"m{n}", "text": f"text {n}"})
        assert ack["ok"], ack
        ids.append(ack["message"]["id"])
    for n in (1, 2, 3, 4, 5):
        ack = await bob.call("/chat", "message:report", {"id": ids[n], "reason": f"reason {n}"})
        assert ack["ok"], ack
    listing = await ok(mod, "GET", "/api/admin/reports?status=open")
    reports = listing["reports"]
    assert [r["message_id"] for r in reports] == [ids[n] for n in (5, 4, 3, 2, 1)]
    third = reports[2]
    assert third["reporter"] == "rp-bob" and third["reported"] == "rp-ann" and third["reason"] == "reason 3"
    assert third["message"]["text"] == "text 3" and third["status"] == "open"
    assert [m["text"] for m in third["context"]] == [f"text {n}" for n in (0, 1, 2, 4, 5)]
    # Pages follow the cursor; filters narrow.
    first = await ok(mod, "GET", "/api/admin/reports?limit=2")
    second = await ok(mod, "GET", f"/api/admin/reports?limit=2&before={first['next']}")
    third_page = await ok(mod, "GET", f"/api/admin/reports?limit=2&before={second['next']}")
    paged = [r["id"] for page in (first, second, third_page) for r in page["reports"]]
    assert paged == [r["id"] for r in reports] and third_page["next"] is None
    assert (await ok(mod, "GET", "/api/admin/reports?reported=rp-bob"))["reports"] == []
    assert len((await ok(mod, "GET", "/api/admin/reports?reporter=rp-bob"))["reports"]) == 5
    by_msg = {r["message_id"]: r["id"] for r in reports}

    async def resolve(n: int, body: dict[str, Any], status: int = 200) -> Any:
        return await ok(mod, "POST", f"/api/admin/reports/{by_msg[ids[n]]}/resolve", body, status=status)

    done = await resolve(1, {"action": "dismiss", "reason": "not abusive"})
    assert done["replayed"] is False and done["report"]["status"] == "resolved"
    assert done["report"]["resolution"]["action"] == "dismiss" and done["report"]["resolution"]["by"] == "rp-mod"
    assert (await resolve(1, {"action": "dismiss"}))["replayed"] is True
    clash = await resolve(1, {"action": "ban", "reason": "x"}, status=409)
    assert clash["error"]["code"] == "conflict"
    # delete_message: both parties' devices are told; the message is deleted for everyone.
    deleted = [asyncio.create_task(c.next("/chat", "message:deleted")) for c in (ann, bob)]
    await resolve(2, {"action": "delete_message", "reason": "harassment"})
    assert [await d for d in deleted] == [{"id": ids[2]}] * 2
    history = await bob.call("/chat", "conversation:history", {"with": "rp-ann"})
    gone = next(m for m in history["messages"] if m["id"] == ids[2])
    assert gone["text"] == "" and gone.get("deleted") is True
    assert (await resolve(2, {"action": "delete_message"}))["replayed"] is True
    # warn: a notice to the reported user, live.
    warned = asyncio.create_task(ann.next("/presence", "system:notice"))
    await resolve(4, {"action": "warn", "text": "Be kind."})
    assert (await warned)["text"] == "Be kind." and (await warned)["level"] == "warning"
    assert (await resolve(4, {"action": "warn", "text": "Be kind."}))["replayed"] is True
    assert len(ann.received("/presence", "system:notice")) == 1
    # ban: needs a reason; then the reported user is cut off.
    assert (await resolve(5, {"action": "ban"}, status=400))["error"]["code"] == "invalid_payload"
    await resolve(5, {"action": "ban", "reason": "repeated harassment"})
    await until(lambda: not ann.sio.connected, timeout=3)
    assert (await ok(mod, "GET", "/api/admin/users/rp-ann"))["profile"]["banned"] is True
    assert [r["status"] for r in (await ok(mod, "GET", "/api/admin/reports"))["reports"]] == [
        "resolved", "resolved", "open", "resolved", "resolved"]
    assert (await ok(mod, "GET", "/api/admin/reports?status=open"))["reports"][0]["message_id"] == ids[3]
    # One audit entry per resolution, however often it was replayed.
    admin = staff(app_server, "rp-root", "admin")
    entries = await audit_entries(admin, action="report.resolve")
    assert [e["after"]["resolution"]["action"] for e in entries] == ["ban", "warn", "delete_message", "dismiss"]
    assert all(e["actor"] == "rp-mod" and e["role"] == "moderator" for e in entries)
    # Bad input and unknown ids.
    for body in ({}, {"action": "shout"}, {"action": "warn", "text": ""}, {"action": "dismiss", "x": 1}):
        status, answer = await mod.post(f"/api/admin/reports/{by_msg[ids[3]]}/resolve", body)
        assert status == 400 and answer["error"]["code"] == "invalid_payload", (body, answer)
    assert (await mod.post("/api/admin/reports/bm8tc3VjaA/resolve", {"action": "dismiss"}))[0] == 404
    assert (await mod.post("/api/admin/reports/%%%/resolve", {"action": "dismiss"}))[0] in (400, 404)
    assert (await mod.get("/api/admin/reports?status=closed"))[0] == 400
    assert (await mod.get("/api/admin/reports?before=garbage"))[0] == 400
    assert (await staff(app_server, "rp-help", "support").get("/api/admin/reports"))[0] == 403
    assert (await ok(mod, "GET", "/api/admin/reports?status=open"))["reports"][0]["status"] == "open"


async def test_moderators_delete_a_message_for_everyone(app_server: RunningApp, clients) -> None:
    mod = staff(app_server, "rp-mod", "moderator")
    ann = await clients(app_server, "rp-ann", namespaces=["/chat"])
    bob = await clients(app_server, "rp-bob", namespaces=["/chat"])
    sent = await ann.call("/chat", "message:send", {"to": "rp-bob", "client_id": "d1", "text": "spam link"})
    deleted = [asyncio.create_task(c.next("/chat", "message:deleted")) for c in (ann, bob)]
    answer = await ok(mod, "POST", f"/api/admin/messages/{sent['message']['id']}/delete", {"reason": "spam"})
    assert answer["message"]["text"] == "" and answer["message"]["deleted"] is True
    assert [await d for d in deleted] == [{"id": sent["message"]["id"]}] * 2
    assert (await mod.post("/api/admin/messages/nope/delete", {"reason": "spam"}))[0] == 404
    assert (await mod.post(f"/api/admin/messages/{sent['message']['id']}/delete", {}))[0] == 400
    [entry] = await audit_entries(staff(app_server, "rp-root", "admin"), action="message.delete")
    assert entry["target"] == sent["message"]["id"] and entry["reason"] == "spam"
