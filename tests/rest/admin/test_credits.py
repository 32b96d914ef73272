"""Credit adjustments: through the ledger with the caller's idempotency key, audited once, pushed to
the user as `wallet:updated`; a replayed key changes nothing; the books still balance."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from server.app import LEDGER
from tests.rest.admin.conftest import audit_entries, ok, staff
from tests.server.call.conftest import until
from tests.support.apps import RunningApp


async def test_adjustment_is_idempotent_audited_and_notified(app_server: RunningApp, clients) -> None:
    admin = staff(app_server, "cr-root", "admin")
    ann = await clients(app_server, "cr-ann")  # opens nothing yet: the wallet opens on first movement
    key = uuid.uuid4().hex
    body = {"delta": 25, "reason": "goodwill after an outage", "idempotency_key": key}
    first = await ok(admin, "POST", "/api/admin/users/cr-ann/credits", body, status=201)
    assert first["replayed"] is False and first["balance"] == 10 + 25  # signup bonus, then the grant
    assert first["entry"]["id"] == f"admin:{key}" and first["entry"]["delta"] == 25
    def adjustments(ns: str) -> list[dict[str, Any]]:
        return [e for e in ann.received(ns, "wallet:updated") if e["reason"] == "admin_adjustment"]

    for ns in ("/chat", "/presence", "/call"):
        event = await until(functools.partial(adjustments, ns))
        assert event[-1]["delta"] == 25 and event[-1]["balance"] == 35
    again = await ok(admin, "POST", "/api/admin/users/cr-ann/credits", body, status=200)
    assert again["replayed"] is True and again["balance"] == 35
    same = ("id", "delta", "balance_after", "kind")
    assert {k: again["entry"][k] for k in same} == {k: first["entry"][k] for k in same}
    # The same key for something else is a conflict, and changes nothing.
    status, answer = await admin.post("/api/admin/users/cr-ann/credits", {**body, "delta": 99})
    assert status == 409 and answer["error"]["code"] == "conflict", answer
    debit = await ok(admin, "POST", "/api/admin/users/cr-ann/credits",
                     {"delta": -40, "reason": "chargeback", "idempotency_key": uuid.uuid4().hex}, status=201)
    assert debit["balance"] == -5  # an operator's debit may go below zero (clawback), like a refund
    entries = await audit_entries(admin, action="user.credits")
    assert [(e["after"]["delta"], e["reason"], e["actor"], e["role"]) for e in entries] == [
        (-40, "chargeback", "cr-root", "admin"), (25, "goodwill after an outage", "cr-root", "admin")]
    assert entries[1]["before"] == {"balance": None} and entries[1]["after"]["balance"] == 35
    assert entries[0]["request_id"]
    report = await app_server.app[LEDGER].reconcile()
    assert report.ok and report.total == 0, report


async def test_bad_adjustments_change_nothing(app_server: RunningApp, clients) -> None:
    admin = staff(app_server, "cr-root", "admin")
    await clients(app_server, "cr-bo", namespaces=["/chat"])
    key = uuid.uuid4().hex
    for body in ({"delta": 0, "reason": "x", "idempotency_key": key},
                 {"delta": "5", "reason": "x", "idempotency_key": key},
                 {"delta": 1.5, "reason": "x", "idempotency_key": key},
                 {"delta": True, "reason": "x", "idempotency_key": key},
                 {"delta": 10**12, "reason": "x", "idempotency_key": key},
                 {"delta": 5, "idempotency_key": key},
                 {"delta": 5, "reason": "x", "idempotency_key": "short"},
                 {"delta": 5, "reason": "x"},
                 [1, 2]):
        status, answer = await admin.post("/api/admin/users/cr-bo/credits", body)
        assert status == 400 and answer["error"]["code"] == "invalid_payload", (body, answer)
    status, answer = await admin.post("/api/admin/users/cr-nobody/credits",
                                      {"delta": 5, "reason": "x", "idempotency_key": key})
    assert status == 404, answer
    for role in ("moderator", "support"):
        status, _ = await staff(app_server, f"cr-{role}", role).post(
            "/api/admin/users/cr-bo/credits", {"delta": 5, "reason": "x", "idempotency_key": key})
        assert status == 403
    ledger = app_server.app[LEDGER]
    assert await ledger.get_entry(f"admin:{key}") is None
    assert await ledger.peek_wallet("cr-nobody") is None
    assert await audit_entries(admin) == []
