"""`call:ice_servers`: STUN URLs, and TURN URLs with coturn REST-API credentials that coturn's own
algorithm accepts (HMAC-SHA1 of `<expiry>:<user>` with the shared secret, base64)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from config.settings import ConfigError, load_settings
from signaling.ice import IceConfig
from tests.support.apps import make_settings, running_app
from tests.support.clients import connect, token_for

CALL = "/call"
SECRET = "turn-shared-secret-0123456789"


async def test_turn_credentials_are_coturn_rest_api_credentials(base_env: dict[str, str]) -> None:
    env = {**base_env, "PAIRLY_STUN_URLS": "stun:stun.example.org:3478",
           "PAIRLY_TURN_URLS": "turn:turn.example.org:3478?transport=udp,turns:turn.example.org:5349",
           "PAIRLY_TURN_SECRET": SECRET, "PAIRLY_TURN_TTL_S": "600"}
    async with running_app(make_settings(env)) as app:
        client = await connect(app.url, "ice-ann", token_for(app.settings, "ice-ann"), [CALL])
        before = int(time.time())
        ack = await client.call(CALL, "call:ice_servers", {})
        await client.close()
    assert ack["ok"] and ack["ttl"] == 600
    stun, turn = ack["ice_servers"]
    assert stun == {"urls": ["stun:stun.example.org:3478"]}
    assert turn["urls"] == ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"]
    expiry, user = turn["username"].split(":", 1)
    assert user == "ice-ann" and before + 600 <= int(expiry) <= int(time.time()) + 600
    expected = base64.b64encode(hmac.new(SECRET.encode(), turn["username"].encode(), hashlib.sha1).digest())
    assert turn["credential"] == expected.decode()


async def test_without_turn_only_stun_is_offered(base_env: dict[str, str]) -> None:
    async with running_app(make_settings(base_env)) as app:
        client = await connect(app.url, "ice-bo", token_for(app.settings, "ice-bo"), [CALL])
        ack = await client.call(CALL, "call:ice_servers", {"ignored": True})
        none = await client.call(CALL, "call:nonsense", {})
        await client.close()
    assert ack == {"ok": True, "ice_servers": [{"urls": ["stun:stun.l.google.com:19302"]}], "ttl": 86400}
    assert none["error"]["code"] == "invalid_payload"


def test_no_stun_at_all() -> None:
    ice = IceConfig.from_env(load_settings({"PAIRLY_STUN_URLS": "none"}).env())
    assert ice.servers("u", time.time()) == []


@pytest.mark.parametrize("env, var", [
    ({"PAIRLY_TURN_URLS": "turn:t.example.org"}, "PAIRLY_TURN_SECRET"),
    ({"PAIRLY_TURN_URLS": "turn:t.example.org", "PAIRLY_TURN_SECRET": "short"}, "PAIRLY_TURN_SECRET"),
    ({"PAIRLY_TURN_URLS": "http://t.example.org", "PAIRLY_TURN_SECRET": SECRET}, "PAIRLY_TURN_URLS"),
    ({"PAIRLY_STUN_URLS": "turn:wrong.example.org"}, "PAIRLY_STUN_URLS"),
    ({"PAIRLY_TURN_TTL_S": "5"}, "PAIRLY_TURN_TTL_S"),
])
def test_bad_ice_settings_name_their_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError) as err:
        IceConfig.from_env(load_settings(env).env())
    assert var in str(err.value)
