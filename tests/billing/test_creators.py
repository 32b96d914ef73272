"""Creators: the operator's policy from the environment, rates within bounds (store and REST), payees."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from billing.creators import CreatorPolicy, Creators, Rates
from billing.pricing import Pricing
from config.errors import InvalidPayload
from config.settings import ConfigError, Env
from server.app import CREATORS
from tests.billing.api import Api
from tests.support.apps import RunningApp

CREATOR = {"roles": ["creator"]}


# -- policy -------------------------------------------------------------------------------------------
def test_policy_defaults_and_environment() -> None:
    assert CreatorPolicy.from_env(Env({})) == CreatorPolicy(60, (1, 1, 1), (100, 500, 1000))
    policy = CreatorPolicy.from_env(Env({"PAIRLY_CREATOR_SHARE_PCT": "70", "PAIRLY_CREATOR_RATE_MIN": "2,5,10",
                                         "PAIRLY_CREATOR_RATE_MAX": "20,50,100"}))
    assert policy.share_pct == 70
    assert policy.bounds() == {"message": {"min": 2, "max": 20}, "audio_per_minute": {"min": 5, "max": 50},
                               "video_per_minute": {"min": 10, "max": 100}}


@pytest.mark.parametrize(("env", "var"), [
    ({"PAIRLY_CREATOR_SHARE_PCT": "101"}, "PAIRLY_CREATOR_SHARE_PCT"),
    ({"PAIRLY_CREATOR_SHARE_PCT": "-1"}, "PAIRLY_CREATOR_SHARE_PCT"),
    ({"PAIRLY_CREATOR_RATE_MIN": "1,2"}, "PAIRLY_CREATOR_RATE_MIN"),
    ({"PAIRLY_CREATOR_RATE_MAX": "1,x,3"}, "PAIRLY_CREATOR_RATE_MAX"),
    ({"PAIRLY_CREATOR_RATE_MIN": "50,1,1", "PAIRLY_CREATOR_RATE_MAX": "10,500,1000"}, "PAIRLY_CREATOR_RATE_MIN"),
])
def test_bad_policy_names_the_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError) as caught:
        CreatorPolicy.from_env(Env(env))
    assert caught.value.var == var


# -- against the store ------------------------------------------------------------------------------
@pytest.fixture
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    yield client[f"t_{uuid.uuid4().hex[:10]}"]
    await client.close()


def _creators(db: AsyncDatabase[dict[str, Any]], policy: CreatorPolicy | None = None) -> Creators:
    return Creators(db, Pricing.from_env(Env({})), policy or CreatorPolicy(), ttl_s=60.0)


async def test_only_creators_earn_and_charge_their_own_rates(db: AsyncDatabase[dict[str, Any]]) -> None:
    creators = _creators(db)
    assert await creators.rates("cr-fan") == Rates(1, 5, 10, False)
    assert creators.payee(await creators.rates("cr-fan"), "cr-fan") == (None, 0)
    await creators.mark("cr-star", ("user", "creator"))
    rates = await creators.set_rates("cr-star", {"message": 3})
    assert rates == Rates(3, 5, 10, True)  # a partial update; the cache was refreshed
    assert creators.payee(rates, "cr-star") == ("earnings:cr-star", 60)
    # A fan's rates set in the store (never through the API) are not applied: not a creator.
    await db["users"].update_one({"_id": "cr-fan"}, {"$set": {"rates": {"message": 50}}}, upsert=True)
    assert (await _creators(db).rates("cr-fan")).message == 1


@pytest.mark.parametrize("body", [{}, [], {"message": 0}, {"message": 101}, {"message": "3"}, {"message": True},
                                  {"video_per_minute": 1001}, {"tip": 5}])
async def test_rates_outside_the_bounds_are_refused(db: AsyncDatabase[dict[str, Any]], body: Any) -> None:
    creators = _creators(db)
    await creators.mark("cr-bad", ("creator",))
    with pytest.raises(InvalidPayload):
        await creators.set_rates("cr-bad", body)
    assert await creators.rates("cr-bad") == Rates(1, 5, 10, True)


async def test_tightened_bounds_clamp_rates_already_set(db: AsyncDatabase[dict[str, Any]]) -> None:
    await _creators(db).mark("cr-hi", ("creator",))
    await _creators(db).set_rates("cr-hi", {"message": 90, "audio_per_minute": 2})
    tighter = _creators(db, CreatorPolicy(60, (3, 3, 3), (50, 50, 50)))
    assert await tighter.rates("cr-hi") == Rates(50, 3, 10, True)


# -- REST -----------------------------------------------------------------------------------------
async def test_rates_over_rest(app_server: RunningApp) -> None:
    api = Api(app_server, "cr-rest", **CREATOR)
    status, body = await api.get("/api/creator/rates")
    assert status == 200
    assert body == {"rates": {"message": 1, "audio_per_minute": 5, "video_per_minute": 10},
                    "bounds": {"message": {"min": 1, "max": 100}, "audio_per_minute": {"min": 1, "max": 500},
                               "video_per_minute": {"min": 1, "max": 1000}},
                    "share_pct": 60}
    status, body = await api.request("PUT", "/api/creator/rates", {"message": 4, "video_per_minute": 30})
    assert status == 200
    assert body["rates"] == {"message": 4, "audio_per_minute": 5, "video_per_minute": 30}
    # In force for fans from now on: the role was recorded and the recipient is a creator.
    assert await app_server.app[CREATORS].rates("cr-rest") == Rates(4, 5, 30, True)
    status, again = await api.get("/api/creator/rates")
    assert again["rates"] == body["rates"]


@pytest.mark.parametrize("body", [{"message": 0}, {"message": 101}, {"audio_per_minute": 501}, {"tip": 1}, {}])
async def test_rates_out_of_bounds_are_400_over_rest(app_server: RunningApp, body: Any) -> None:
    api = Api(app_server, "cr-oob", **CREATOR)
    status, answer = await api.request("PUT", "/api/creator/rates", body)
    assert status == 400 and answer["error"]["code"] == "invalid_payload"
    _, now = await api.get("/api/creator/rates")
    assert now["rates"] == {"message": 1, "audio_per_minute": 5, "video_per_minute": 10}


async def test_non_creators_cannot_set_rates(app_server: RunningApp) -> None:
    status, body = await Api(app_server, "cr-nope").request("PUT", "/api/creator/rates", {"message": 5})
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert await app_server.app[CREATORS].rates("cr-nope") == Rates(1, 5, 10, False)


async def test_operator_bounds_and_share_from_the_environment(env: dict[str, str], app_server: RunningApp) -> None:
    assert env["PAIRLY_CREATOR_RATE_MAX"] == "10,50,100"
    api = Api(app_server, "cr-env", **CREATOR)
    status, body = await api.request("PUT", "/api/creator/rates", {"message": 11})
    assert status == 400 and "1..10" in body["error"]["message"]
    status, body = await api.request("PUT", "/api/creator/rates", {"message": 10})
    assert status == 200 and body["share_pct"] == 70 and body["bounds"]["message"] == {"min": 1, "max": 10}


@pytest.fixture
def env(base_env: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    if request.node.name.startswith("test_operator_bounds"):
        return {**base_env, "PAIRLY_CREATOR_SHARE_PCT": "70", "PAIRLY_CREATOR_RATE_MAX": "10,50,100"}
    return base_env
