"""Revocations and bans reach sockets that are already open, on every node, within a second; the
operator commands (`python -m server revoke|ban|unban`); the deny-list lives in MongoDB, so a Redis
that lost its data lets no revoked token back in."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import time

import aiohttp
import jwt
from redis.asyncio import Redis

from server.app import SESSIONS
from server.auth import mint_token
from tests.conftest import TEST_SECRET
from tests.server.call.conftest import CALL, ended, ok, until
from tests.support.apps import ROOT, make_settings, running_app
from tests.support.clients import ConnectRefused, connect, token_for

NAMESPACES = ["/chat", "/presence", CALL]


async def refusal(url: str, user: str, token: str) -> str | None:
    try:
        client = await connect(url, user, token, ["/chat"])
    except ConnectRefused as exc:
        return exc.code
    await client.close()
    return None


async def cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", *args, cwd=ROOT, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, (out + err).decode()


async def test_revoking_a_token_cuts_its_open_sockets_only(base_env: dict[str, str]) -> None:
    settings = make_settings({**base_env, "PAIRLY_SESSION_POLL_S": "0.2"})
    async with running_app(settings) as app:
        token = token_for(settings, "sv-ann")
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        phone = await connect(app.url, "sv-ann", token, NAMESPACES)
        laptop = await connect(app.url, "sv-ann", token_for(settings, "sv-ann"), NAMESPACES)
        started = time.monotonic()
        await app.app[SESSIONS].revoke_token(jti)
        await until(lambda: not phone.sio.connected, timeout=3)
        assert time.monotonic() - started < 1.5
        assert {"reason": "token revoked"} in phone.received("/chat", "session:revoked")
        assert phone.received(CALL, "session:revoked")
        # Nothing can be sent on the cut-off sockets; the user's other session is untouched.
        assert laptop.sio.connected and not laptop.received("/chat", "session:revoked")
        assert (await laptop.call("/chat", "message:send", {"to": "sv-bob", "client_id": "x1", "text": "hi"}))["ok"]
        assert await refusal(app.url, "sv-ann", token) == "auth_revoked"
        await laptop.close()


async def test_the_deny_list_survives_redis_losing_its_data(base_env: dict[str, str], redis_url: str) -> None:
    settings = make_settings({**base_env, "REDIS_URL": redis_url})
    async with running_app(settings) as app:
        token = token_for(settings, "sv-cat")
        await app.app[SESSIONS].revoke_token(jwt.decode(token, options={"verify_signature": False})["jti"])
        redis = Redis.from_url(redis_url)
        keys = [k async for k in redis.scan_iter(f"{settings.redis_prefix}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        assert await refusal(app.url, "sv-cat", token) == "auth_revoked"


async def test_ban_from_the_cli_reaches_both_nodes_ends_the_call_and_lifts(nodes, base_env: dict[str, str]) -> None:
    n0, n1 = nodes(2, PAIRLY_SESSION_POLL_S="0.2", PAIRLY_RATE_LIMITS="*=1000/1", PAIRLY_SIGNUP_BONUS="50")
    def token(user: str) -> str:
        return mint_token(TEST_SECRET, user)

    eve_a = await connect(n0.url, "sv-eve", token("sv-eve"), NAMESPACES)
    eve_b = await connect(n1.url, "sv-eve", token("sv-eve"), NAMESPACES)
    bob = await connect(n1.url, "sv-bob", token("sv-bob"), [CALL])
    call_id = (await ok(eve_a, "call:invite", {"to": "sv-bob", "media": "audio"}))["call_id"]
    await until(lambda: bob.received(CALL, "call:incoming"))
    await ok(bob, "call:accept", {"call_id": call_id})
    env = {"MONGO_URL": base_env["MONGO_URL"], "MONGO_DB": base_env["MONGO_DB"], "PAIRLY_MODE": "dev",
           "PAIRLY_JWT_SECRET": TEST_SECRET}
    started = time.monotonic()
    code, out = await cli(env, "ban", "--user", "sv-eve", "--reason", "spam")
    assert code == 0, out
    await until(lambda: not eve_a.sio.connected and not eve_b.sio.connected, timeout=3)
    elapsed = time.monotonic() - started
    assert eve_a.received("/presence", "session:revoked") == [{"reason": "banned"}]
    assert eve_b.received(CALL, "session:revoked") == [{"reason": "banned"}]
    await until(lambda: ended(bob, call_id))
    assert ended(bob, call_id)[0]["reason"] == "ended_by_admin"
    assert await refusal(n0.url, "sv-eve", token("sv-eve")) == "banned"
    async with aiohttp.ClientSession() as session, session.get(
            f"{n1.url}/api/wallet", headers={"Authorization": f"Bearer {token('sv-eve')}"}) as resp:
        assert resp.status == 403
    # A ban with an expiry lifts by itself; unban lifts at once.
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat()
    assert (await cli(env, "ban", "--user", "sv-eve", "--reason", "cool-off", "--until", past))[0] == 0
    assert await refusal(n0.url, "sv-eve", token("sv-eve")) is None
    assert (await cli(env, "ban", "--user", "sv-eve", "--reason", "again"))[0] == 0
    assert (await cli(env, "unban", "--user", "sv-eve"))[0] == 0
    assert await refusal(n1.url, "sv-eve", token("sv-eve")) is None
    # Revoking every session of a user from the CLI.
    again = await connect(n1.url, "sv-eve", token("sv-eve"), NAMESPACES)
    assert (await cli(env, "revoke", "--user", "sv-eve"))[0] == 0
    await until(lambda: not again.sio.connected, timeout=3)
    assert (await cli(env, "ban", "--user", "sv-eve", "--reason", "  "))[0] == 2
    await bob.close()
    assert elapsed < 3.0  # the CLI's own start-up included; the nodes act within one poll


