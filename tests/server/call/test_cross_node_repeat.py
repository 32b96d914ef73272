"""A pair calling again with caller and callee on different nodes (found by the locust two-node run).

The callee's node captures and bills the first call, so its ledger cache holds the caller's wallet;
the caller's node then places the second call's hold. The capture at the second accept must see
that hold: a refusal planned on cached state is planned again on fresh reads (billing/ledger.py).
Before that fix the second `call:accept` answered `insufficient_credits` ("not enough credits on hold").
"""

from __future__ import annotations

from server.auth import mint_token
from tests.conftest import TEST_SECRET
from tests.server.call.conftest import CALL, billed, ended, ok, until
from tests.support.apps import NodeProcess
from tests.support.clients import Client, connect

ENV = {"PAIRLY_RATE_LIMITS": "*=1000/1,call:invite=1000/1", "PAIRLY_SIGNUP_BONUS": "1000",
       "PAIRLY_CALL_BILLING_INTERVAL_S": "1"}


async def join(node: NodeProcess, user: str) -> Client:
    return await connect(node.url, user, mint_token(TEST_SECRET, user), [CALL])


async def call_once(caller: Client, callee: Client) -> None:
    call_id = (await ok(caller, "call:invite", {"to": "rp-bob", "media": "audio"}))["call_id"]
    await until(lambda: any(e["call_id"] == call_id for e in callee.received(CALL, "call:incoming")))
    await ok(callee, "call:accept", {"call_id": call_id})
    await until(lambda: len(billed(caller, call_id)) >= 2)
    await ok(caller, "call:end", {"call_id": call_id})
    await until(lambda: ended(caller, call_id) and ended(callee, call_id))


async def test_a_pair_calls_twice_across_nodes(nodes) -> None:
    n0, n1 = nodes(2, **ENV)
    ann = await join(n0, "rp-ann")
    bob = await join(n1, "rp-bob")
    try:
        await call_once(ann, bob)
        await call_once(ann, bob)  # accepted on the node whose cache saw the first call
    finally:
        await ann.close()
        await bob.close()
