"""`call:prepare`, the pre-call gate: every answer in one round trip — price and affordable minutes,
the callee's reachability (online, push, blocked, offline), fresh ICE servers, and the caller's last
probe with its age (a probe suggested when there is none or it is too old); bad input refused."""

from __future__ import annotations

import datetime as dt

import pytest

from server.app import CORE, CREATORS, LEDGER
from signaling.probe import ProbeStore
from tests.server.call.conftest import CALL, call_env, error_code, fund, ok

MAX_AGE_S = 600


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    return call_env(base_env, PAIRLY_PROBE_MAX_AGE_S=str(MAX_AGE_S), PAIRLY_STUN_URLS="stun:stun.example.org:3478",
                    PAIRLY_TURN_URLS="turn:turn.example.org:3478", PAIRLY_TURN_SECRET="0123456789abcdef-secret")


async def test_the_gate_answers_everything_before_ringing(app_server, clients) -> None:
    ledger, db = app_server.app[LEDGER], app_server.app[CORE].db
    await fund(ledger, "pg-ann", 12)
    a = await clients(app_server, "pg-ann", namespaces=["/chat", CALL])
    await clients(app_server, "pg-bob", namespaces=[CALL])
    prep = await ok(a, "call:prepare", {"to": "pg-bob", "media": "audio"})
    assert prep["rate_per_minute"] == 5 and prep["affordable_minutes"] == 2
    assert prep["callee"] == {"reachable": True, "via": "online"}
    turn = [s for s in prep["ice_servers"] if "username" in s]
    assert turn and turn[0]["username"].endswith(":pg-ann") and prep["ttl"] > 0
    assert prep["probe"] is None and prep["suggest_probe"] is True
    # Video costs more: the same balance covers one minute; an empty wallet covers none.
    assert (await ok(a, "call:prepare", {"to": "pg-bob", "media": "video"}))["affordable_minutes"] == 1
    broke = await clients(app_server, "pg-broke", namespaces=[CALL])
    assert (await ok(broke, "call:prepare", {"to": "pg-bob", "media": "audio"}))["affordable_minutes"] == 0
    # A creator's own rate is the price.
    await app_server.app[CREATORS].mark("pg-star", ("user", "creator"))
    await app_server.app[CREATORS].set_rates("pg-star", {"audio_per_minute": 4})
    star = await ok(a, "call:prepare", {"to": "pg-star", "media": "audio"})
    assert star["rate_per_minute"] == 4 and star["affordable_minutes"] == 3
    # Offline (no devices, no push configured) and blocked callees are unreachable, with the reason.
    offline = await ok(a, "call:prepare", {"to": "pg-nobody", "media": "audio"})
    assert offline["callee"] == {"reachable": False, "via": None, "reason": "offline"}
    assert (await a.call("/chat", "user:block", {"user": "pg-bob"}))["ok"]
    blocked = await ok(a, "call:prepare", {"to": "pg-bob", "media": "audio"})
    assert blocked["callee"] == {"reachable": False, "via": None, "reason": "blocked"}
    # The last probe and its age; too old a probe is shown and a new one suggested.
    store = ProbeStore(db)
    await store.save("pg-ann", {"probe_id": "p1", "grade": "good", "mos": 3.9})
    fresh = await ok(a, "call:prepare", {"to": "pg-bob", "media": "audio"})
    assert fresh["probe"]["grade"] == "good" and fresh["probe"]["mos"] == 3.9 and fresh["suggest_probe"] is False
    old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=MAX_AGE_S + 60)
    await db["call_probes"].update_one({"_id": "pg-ann"}, {"$set": {"at": old}})
    stale = await ok(a, "call:prepare", {"to": "pg-bob", "media": "audio"})
    assert stale["probe"]["age_s"] >= MAX_AGE_S + 60 and stale["suggest_probe"] is True


async def test_bad_gate_requests_are_refused(app_server, clients) -> None:
    a = await clients(app_server, "pb-ann", namespaces=[CALL])
    for payload in ("x", {}, {"to": ""}, {"to": "pb-ann"}, {"to": "pb-bob", "media": "fax"}, {"to": 7}):
        assert error_code(await a.call(CALL, "call:prepare", payload)) == "invalid_payload", payload
