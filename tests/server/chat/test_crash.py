"""kill -9 of a node in the middle of a burst of sends: every stored message is charged exactly once
(message and charge share one transaction), nothing refused or lost in flight is charged, a restarted
node repairs the conversation views, and resends return the original messages."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from pymongo import AsyncMongoClient

from billing.ledger import Ledger
from server.auth import mint_token
from server.chat.store import ChatStore
from tests.conftest import TEST_SECRET
from tests.server.chat.conftest import CHAT
from tests.support.clients import connect


async def test_kill_9_mid_burst(nodes, base_env: dict[str, str]) -> None:
    env = {"PAIRLY_RATE_LIMITS": "*=1000/1,message:send=1000/1", "PAIRLY_SIGNUP_BONUS": "40",
           "PAIRLY_CHAT_VIEWS_MARK_EVERY_S": "0.5", "PAIRLY_CHAT_VIEWS_STALE_AFTER_S": "1",
           "PAIRLY_LEDGER_WRITER_BEAT_S": "0.5", "PAIRLY_LEDGER_WRITER_STALE_S": "1"}
    (node,) = nodes(1, **env)
    alice = await connect(node.url, "alice", mint_token(TEST_SECRET, "alice"), [CHAT])
    total = 80

    async def one(i: int) -> Any:
        try:
            # Calls in flight when the node dies are never answered: a short timeout ends them.
            return await alice.call(CHAT, "message:send", {"to": "bob", "client_id": f"c{i}", "text": f"m{i}"},
                                    timeout=2)
        except Exception as exc:  # the node died under this send
            return exc

    tasks = [asyncio.create_task(one(i)) for i in range(total)]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    node.signal(signal.SIGKILL)
    await asyncio.to_thread(node.wait, 10)
    results = await asyncio.gather(*tasks)
    acked = {f"c{i}": r["message"] for i, r in enumerate(results) if isinstance(r, dict) and r.get("ok")}
    assert acked, "at least the first send was acknowledged before the kill"
    await alice.close()

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(base_env["MONGO_URL"], tz_aware=True)
    db = client[base_env["MONGO_DB"]]
    ledger = Ledger(db)
    store = ChatStore(db)
    assert (await ledger.reconcile()).ok
    messages = await store.messages.find({}).to_list()
    charged = await db["ledger"].find({"_id": {"$regex": "^msg:"}}).to_list()
    assert sorted(m["_id"] for m in messages) == sorted(e["ref"] for e in charged)
    assert {m["client_id"]: m["_id"] for m in messages if m["client_id"] in acked} == \
        {k: v["id"] for k, v in acked.items()}
    balance = (await ledger.wallet("alice")).balance
    assert balance == 40 - len(messages)

    # Every client resends everything it did not get an answer for, to a fresh node.
    (again,) = nodes(1, **env)
    alice = await connect(again.url, "alice", mint_token(TEST_SECRET, "alice"), [CHAT])
    # The new node repairs the views the dead one had not written yet, once its mark is stale (1 s here).
    newest = max(m["_id"] for m in messages)
    for _ in range(100):
        listed = await alice.call(CHAT, "conversation:list", {})
        if [(c["with"], c["last_message"]["id"]) for c in listed["conversations"]] == [("bob", newest)]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"views not repaired: {listed}")

    async def resend(i: int) -> Any:
        # A client retries `conflict`: the dead node's open transaction holds alice's wallet until the
        # new node kills its sessions (the dead node's heartbeat is 1 s old here).
        for _ in range(100):
            ack = await alice.call(CHAT, "message:send", {"to": "bob", "client_id": f"c{i}", "text": f"m{i}"})
            if ack["ok"] or ack["error"]["code"] != "conflict":
                return ack
            await asyncio.sleep(0.1)
        raise AssertionError("still conflicting")

    resent = [await resend(i) for i in range(total)]
    for i, ack in enumerate(resent):
        if f"c{i}" in acked:
            assert ack["ok"] and ack["message"]["id"] == acked[f"c{i}"]["id"]
    stored_ids = {m["client_id"]: m["_id"] for m in await store.messages.find({}).to_list()}
    ok = [a for a in resent if a["ok"]]
    assert len(ok) == len(stored_ids) == 40  # the wallet had 40 credits: exactly 40 messages exist
    assert {a["error"]["code"] for a in resent if not a["ok"]} == {"insufficient_credits"}
    assert (await ledger.wallet("alice")).balance == 0
    assert (await ledger.reconcile()).ok
    await alice.close()
    await client.close()
