"""Fuzz every client event of every namespace with generated payloads (a seeded generator: wrong
types, nulls, deep nesting, huge, control-character and surrogate strings, extra arguments, no ack):
every answer is an error ack or a success, never `internal`; nothing is charged but what a successful
send reports; the connection stays usable."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from server.app import LEDGER, SIO
from tests.support.clients import connect, token_for

NAMESPACES = ("/chat", "/presence", "/call")
KEYS = ["to", "client_id", "text", "reply_to", "ids", "with", "up_to", "state", "before", "limit", "since", "id",
        "for", "user", "reason", "users", "status", "media", "call_id", "type", "payload", "sdp"]
CODES = {"invalid_payload", "too_large", "rate_limited", "insufficient_credits", "blocked", "not_found",
         "forbidden", "conflict", "busy", "unavailable"}


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    # Rate limits out of the way, so the payloads reach validation (rate limiting has its own tests).
    return {**base_env, "PAIRLY_RATE_LIMITS": "*=100000/1,message:send=100000/1,typing=100000/1",
            "PAIRLY_SIGNUP_BONUS": "1000"}


def _string(rng: random.Random) -> str:
    return rng.choice([
        "", "fz-peer", "0" * 22, "a" * rng.randint(1, 300), "x" * 70_000, "\x00\x01\x1f", "\ud800", "\udfff",
        "é漢字🙂", "start", "stop", "me", "everyone", "online", "invisible", "offer", " ", "\n" * 50,
        f"{rng.randint(0, 10**6)}",
    ])


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randint(0, 9 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**63, -(2**70), 10**30])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e-300])
    if kind in (4, 5):
        return _string(rng)
    if kind in (6, 7):
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    if depth > 30:
        return {}
    if kind == 8:  # deep nesting
        inner: Any = "deep"
        for _ in range(rng.randint(5, 60)):
            inner = {"a": inner} if rng.random() < 0.5 else [inner]
        return inner
    return {rng.choice(KEYS): _value(rng, depth + 1) for _ in range(rng.randint(0, 6))}


def _payload(rng: random.Random) -> Any:
    if rng.random() < 0.7:  # mostly objects with the real field names
        return {rng.choice(KEYS): _value(rng) for _ in range(rng.randint(0, 5))}
    return _value(rng)


async def test_fuzz_every_client_event(app_server: Any) -> None:
    rng = random.Random(20261123)
    handlers = {ns: sorted(h.handlers()) for ns, h in app_server.app[SIO].namespace_handlers.items()}
    client = await connect(app_server.url, "fz-user", token_for(app_server.settings, "fz-user"), list(NAMESPACES))
    ledger = app_server.app[LEDGER]
    start = (await ledger.wallet("fz-user")).balance
    charged = 0
    seen: dict[str, int] = {}
    for ns in NAMESPACES:
        for event in [*handlers[ns], "no:such:event"]:
            for _ in range(60):
                payload = _payload(rng)
                mode = rng.random()
                if mode < 0.1:  # no ack requested: nothing may come back, nothing may break
                    await client.sio.emit(event, payload, namespace=ns)
                    continue
                if mode < 0.2:  # extra arguments
                    ack = await client.sio.call(event, (payload, _value(rng)), namespace=ns, timeout=10)
                else:
                    ack = await client.sio.call(event, payload, namespace=ns, timeout=10)
                if ack is None:
                    continue  # droppable events (typing) answer nothing
                assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), (ns, event, payload, ack)
                key = "ok" if ack["ok"] else ack["error"]["code"]
                seen[key] = seen.get(key, 0) + 1
                if ack["ok"]:
                    charged += int(ack.get("price", 0)) if event == "message:send" else 0
                else:
                    assert ack["error"]["code"] in CODES, (ns, event, payload, ack)
    assert seen.get("invalid_payload", 0) > 100 and seen.get("ok", 0) > 10, seen
    await asyncio.sleep(0.2)
    assert (await client.call("/presence", "presence:heartbeat", {}))["ok"]
    assert (await client.call("/call", "call:ice_servers", {}))["ok"]
    assert (await ledger.wallet("fz-user")).balance == start - charged
    ack = await client.call("/chat", "message:send", {"to": "fz-peer", "client_id": "after-fuzz", "text": "still here"})
    assert ack["ok"] or ack["error"]["code"] == "insufficient_credits"
    report = await ledger.reconcile()
    assert report.ok and report.total == 0
    await client.close()
