"""Connect auth on every namespace: each refusal code for its case, the header path, caps, upserts."""

from __future__ import annotations

import time

import jwt
import pytest

from server.app import CORE
from tests.support.apps import RunningApp, make_settings, running_app
from tests.support.clients import ConnectRefused, connect, token_for

NAMESPACES = ("/chat", "/presence", "/call")


@pytest.fixture(params=["local", "redis"])
def env(request: pytest.FixtureRequest, base_env: dict[str, str]) -> dict[str, str]:
    """Every auth case runs on one node without Redis and with Redis-backed revocation and caps."""
    if request.param == "redis":
        base_env["REDIS_URL"] = request.getfixturevalue("redis_url")
    base_env["PAIRLY_MAX_CONNECTIONS_PER_USER"] = "2"
    return base_env


async def _refusal(app: RunningApp, token: str | None, namespace: str = "/chat") -> str | None:
    with pytest.raises(ConnectRefused) as err:
        await connect(app.url, "x", token, [namespace])
    return err.value.code


@pytest.mark.parametrize("namespace", NAMESPACES)
async def test_valid_token_connects_and_upserts_user(app_server: RunningApp, namespace: str) -> None:
    client = await connect(app_server.url, "alice", token_for(app_server.settings, "alice", name="Alice"), [namespace])
    await client.close()
    core = app_server.app[CORE]
    await core.background.drain(5)
    doc = await core.users.get("alice")
    assert doc is not None and doc["name"] == "Alice" and doc["roles"] == ["user"]
    assert doc["first_seen"] <= doc["last_seen"]


async def test_authorization_header_is_accepted(app_server: RunningApp) -> None:
    token = token_for(app_server.settings, "bob")
    client = await connect(app_server.url, "bob", None, ["/chat"], headers={"Authorization": f"Bearer {token}"})
    assert client.sio.connected
    await client.close()


@pytest.mark.parametrize("namespace", NAMESPACES)
async def test_missing_token(app_server: RunningApp, namespace: str) -> None:
    assert await _refusal(app_server, None, namespace) == "auth_missing"


@pytest.mark.parametrize(
    "make",
    [
        lambda s: "not-a-jwt",
        lambda s: jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, "other-secret-" * 4, algorithm="HS256"),
        lambda s: jwt.encode({"exp": int(time.time()) + 60}, s.jwt.secret, algorithm="HS256"),
        lambda s: jwt.encode({"sub": "a"}, s.jwt.secret, algorithm="HS256"),
        lambda s: jwt.encode({"sub": "a", "exp": int(time.time()) + 60, "nbf": int(time.time()) + 600},
                             s.jwt.secret, algorithm="HS256"),
        lambda s: jwt.encode({"sub": "a", "exp": int(time.time()) + 60, "roles": "admin"}, s.jwt.secret,
                             algorithm="HS256"),
        lambda s: jwt.encode({"sub": "a", "exp": str(int(time.time()) + 60)}, s.jwt.secret, algorithm="HS256"),
        lambda s: jwt.encode({"sub": "a", "exp": int(time.time()) + 60, "iat": str(int(time.time()))},
                             s.jwt.secret, algorithm="HS256"),
        lambda s: jwt.encode({"sub": "a", "exp": int(time.time()) + 60, "nbf": str(int(time.time()) - 10)},
                             s.jwt.secret, algorithm="HS256"),
        lambda s: jwt.encode({"sub": "a", "exp": int(time.time()) + 60, "iat": True}, s.jwt.secret,
                             algorithm="HS256"),
        lambda s: token_for(s, "a", ttl_s=30 * 24 * 3600 + 60),
        lambda s: jwt.encode({"sub": "a", "exp": int(time.time()) + 31 * 24 * 3600}, s.jwt.secret,
                             algorithm="HS256"),
        lambda s: token_for(s, "a", ttl_s=40 * 24 * 3600, now=time.time() - 20 * 24 * 3600),
    ],
    ids=["garbage", "wrong-key", "no-sub", "no-exp", "not-yet-valid", "bad-roles", "string-exp", "string-iat",
         "string-nbf", "bool-iat", "lifetime-over-max", "no-iat-expiring-after-max", "old-iat-long-lifetime"],
)
async def test_invalid_tokens(app_server: RunningApp, make) -> None:
    assert await _refusal(app_server, make(app_server.settings)) == "auth_invalid"


async def test_expired_token_beyond_leeway(app_server: RunningApp) -> None:
    token = token_for(app_server.settings, "a", ttl_s=-120)
    assert await _refusal(app_server, token, "/presence") == "auth_expired"


async def test_expiry_within_leeway_is_accepted(app_server: RunningApp) -> None:
    token = token_for(app_server.settings, "a", ttl_s=-5)  # default leeway 30 s
    client = await connect(app_server.url, "a", token, ["/chat"])
    await client.close()


async def test_lifetime_up_to_the_maximum_is_accepted(app_server: RunningApp) -> None:
    s = app_server.settings
    assert s.jwt.secret is not None
    token = token_for(s, "a", ttl_s=30 * 24 * 3600)
    client = await connect(app_server.url, "a", token, ["/chat"])
    await client.close()
    no_iat = jwt.encode({"sub": "a", "exp": int(time.time()) + 29 * 24 * 3600}, s.jwt.secret, algorithm="HS256")
    client = await connect(app_server.url, "a", no_iat, ["/chat"])
    await client.close()


async def test_max_lifetime_is_configurable(base_env: dict[str, str]) -> None:
    async with running_app(make_settings({**base_env, "PAIRLY_JWT_MAX_TTL_S": "600"})) as app:
        assert await _refusal(app, token_for(app.settings, "a", ttl_s=601)) == "auth_invalid"
        client = await connect(app.url, "a", token_for(app.settings, "a", ttl_s=600), ["/chat"])
        await client.close()


async def test_revoked_jti(app_server: RunningApp) -> None:
    token = token_for(app_server.settings, "carol")
    claims = jwt.decode(token, options={"verify_signature": False})
    await app_server.app[CORE].revocations.revoke(claims["jti"], claims["exp"])
    assert await _refusal(app_server, token, "/call") == "auth_revoked"
    other = await connect(app_server.url, "carol", token_for(app_server.settings, "carol"), ["/call"])
    await other.close()


async def test_tokens_issued_before_cutoff_are_revoked(app_server: RunningApp) -> None:
    old = token_for(app_server.settings, "dave", now=time.time() - 10)
    await app_server.app[CORE].users.revoke_all_tokens("dave")
    assert await _refusal(app_server, old) == "auth_revoked"
    fresh = token_for(app_server.settings, "dave", now=time.time() + 1)
    client = await connect(app_server.url, "dave", fresh, ["/chat"])
    await client.close()


async def test_banned_user(app_server: RunningApp) -> None:
    await app_server.app[CORE].users.set_banned("eve", True, "spam")
    assert await _refusal(app_server, token_for(app_server.settings, "eve")) == "banned"
    await app_server.app[CORE].users.set_banned("eve", False)
    client = await connect(app_server.url, "eve", token_for(app_server.settings, "eve"), ["/chat"])
    await client.close()


async def test_connection_cap_per_user_and_release_on_disconnect(app_server: RunningApp) -> None:
    s = app_server.settings
    first = await connect(app_server.url, "fay", token_for(s, "fay"), ["/chat"])
    second = await connect(app_server.url, "fay", token_for(s, "fay"), ["/chat"])
    assert await _refusal(app_server, token_for(s, "fay")) == "limit_reached"
    # Other users and other namespaces are unaffected.
    other = await connect(app_server.url, "gus", token_for(s, "gus"), ["/chat"])
    presence = await connect(app_server.url, "fay", token_for(s, "fay"), ["/presence"])
    await first.close()
    third = await connect(app_server.url, "fay", token_for(s, "fay"), ["/chat"])
    for c in (second, other, presence, third):
        await c.close()


async def test_long_polling_transport_connects(app_server: RunningApp) -> None:
    client = await connect(app_server.url, "hal", token_for(app_server.settings, "hal"), ["/chat"],
                           transports=["polling"])
    reply = await client.call("/chat", "no:such:event", {})
    assert reply["ok"] is False and reply["error"]["code"] == "invalid_payload"
    await client.close()
