"""compose.yaml, checked without Docker: its structure, its services' wiring, and that the
environment it gives the nodes is the server's real production configuration (a node started with
it serves, and hands out TURN credentials the compose coturn accepts)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import uuid
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest

from config.settings import load_settings
from tests.deploy.files import (
    COMPOSE,
    MissingVariable,
    app_nodes,
    compose,
    compose_raw,
    duration_s,
    environment,
    example_env_names,
    settings_read_by_code,
)
from tests.support.apps import NodeProcess, make_settings, running_app
from tests.support.clients import Client, connect, token_for

# What an operator exports before `docker compose up` (docs/deploy.md).
OPERATOR = {
    "PAIRLY_JWT_SECRET": "jwt-secret-for-the-compose-test-0123456789abcdef",
    "PAIRLY_METRICS_TOKEN": "metrics-token-for-the-compose-test",
    "PAIRLY_TURN_SECRET": "turn-secret-for-the-compose-test",
    "TURN_HOST": "turn.compose.test",
}
MUST_SUPPLY = {"PAIRLY_JWT_SECRET", "PAIRLY_METRICS_TOKEN", "PAIRLY_TURN_SECRET"}
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD")


def node_env() -> dict[str, str]:
    return environment(next(iter(app_nodes(compose(OPERATOR)).values())))


def coturn_args(doc: dict[str, object]) -> dict[str, str]:
    services = doc["services"]
    assert isinstance(services, dict)
    command = services["coturn"]["command"]
    assert isinstance(command, list), "coturn's command is a list of turnserver options"
    args: dict[str, str] = {}
    for item in command:
        key, _, value = str(item).partition("=")
        args[key] = value
    return args


def test_every_service_has_an_image_or_build_a_health_check_and_known_dependencies() -> None:
    services = compose(OPERATOR)["services"]
    assert {"lb", "mongo", "redis", "coturn"} <= set(services)
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name}: no image and no build"
        test = (service.get("healthcheck") or {}).get("test")
        assert test and test != ["NONE"] and not service["healthcheck"].get("disable"), f"{name}: no health check"
        depends = service.get("depends_on") or {}
        for dep in depends:
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = depends[dep].get("condition") if isinstance(depends, dict) else None
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy; it has no check"


def test_three_server_nodes_from_the_dockerfile_with_their_own_ids() -> None:
    nodes = app_nodes(compose(OPERATOR))
    assert len(nodes) == 3
    ids = [environment(s).get("PAIRLY_NODE_ID") for s in nodes.values()]
    assert len(set(ids)) == 3 and all(ids), f"each node needs its own PAIRLY_NODE_ID: {ids}"
    # Same configuration everywhere but the id: nodes disagreeing on prices or secrets would be a bug.
    envs = [{k: v for k, v in environment(s).items() if k != "PAIRLY_NODE_ID"} for s in nodes.values()]
    assert all(e == envs[0] for e in envs)
    for name, service in nodes.items():
        depends = service["depends_on"]
        assert depends["mongo"]["condition"] == depends["redis"]["condition"] == "service_healthy", name
        assert not service.get("ports"), f"{name} is reached through the load balancer only"


def test_every_variable_given_to_the_nodes_is_a_real_setting() -> None:
    documented, read = example_env_names(), settings_read_by_code()
    env = node_env()
    assert env
    for var in env:
        assert var in documented, f"{var} is not in config/example.env"
        assert var in read, f"{var} is not read by the server (config/settings.py or a feature module)"


def test_secrets_must_be_supplied_by_the_operator() -> None:
    raw = COMPOSE.read_text()
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", raw))
    assert required >= MUST_SUPPLY
    for var in required:
        with pytest.raises(MissingVariable) as refused:
            compose({k: v for k, v in OPERATOR.items() if k != var})
        assert refused.value.var == var
    # No secret is written into the file: each comes from the operator's environment.
    for name, service in compose_raw()["services"].items():
        for var, value in environment(service).items():
            if any(word in var for word in SECRET_WORDS):
                assert value.startswith("${"), f"{name}: {var} has a literal value in compose.yaml"


def test_the_node_environment_is_a_complete_production_configuration() -> None:
    settings = load_settings(node_env())
    assert settings.is_production and settings.mongo_url and settings.redis_url
    assert settings.limits.client_ip_header == "X-Real-IP"


def test_mongo_is_a_replica_set_initiated_by_its_health_check() -> None:
    doc = compose(OPERATOR)
    mongo = doc["services"]["mongo"]
    url = urlparse(node_env()["MONGO_URL"])
    replica_set = parse_qs(url.query)["replicaSet"][0]
    command = mongo["command"]
    assert command[command.index("--replSet") + 1] == replica_set
    assert url.hostname == "mongo" and url.port == 27017
    check = " ".join(mongo["healthcheck"]["test"])
    # Idempotent: initiate only when rs.status() throws (not initiated yet); healthy only as primary.
    assert re.search(r"try\s*\{\s*rs\.status\(\)\s*\}\s*catch\s*\(e\)\s*\{\s*rs\.initiate\(", check)
    assert f"_id: '{replica_set}'" in check and f"host: '{url.hostname}:{url.port}'" in check
    assert "isWritablePrimary" in check and "quit(1)" in check
    assert any(v.split(":")[1] == "/data/db" and v.split(":")[0] in doc["volumes"] for v in mongo["volumes"])


def test_redis_persists_to_a_named_volume() -> None:
    doc = compose(OPERATOR)
    redis = doc["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(v.split(":")[1] == "/data" and v.split(":")[0] in doc["volumes"] for v in redis["volumes"])
    assert urlparse(node_env()["REDIS_URL"]).hostname == "redis"


def test_only_the_balancer_and_turn_are_published() -> None:
    doc = compose(OPERATOR)
    published = {name for name, s in doc["services"].items() if s.get("ports")}
    assert published == {"lb", "coturn"}
    assert "8080:8080" in doc["services"]["lb"]["ports"]
    args = coturn_args(doc)
    port = args["--listening-port"]
    relay = f"{args['--min-port']}-{args['--max-port']}"
    assert set(doc["services"]["coturn"]["ports"]) == {
        f"{port}:{port}/udp", f"{port}:{port}/tcp", f"{relay}:{relay}/udp"}


def test_coturn_checks_credentials_with_the_servers_turn_secret() -> None:
    doc = compose(OPERATOR)
    args = coturn_args(doc)
    assert "--use-auth-secret" in args
    assert args["--static-auth-secret"] == node_env()["PAIRLY_TURN_SECRET"] == OPERATOR["PAIRLY_TURN_SECRET"]
    for url in node_env()["PAIRLY_TURN_URLS"].split(","):
        host_port = url.split(":", 1)[1].split("?")[0]
        assert host_port == f"{OPERATOR['TURN_HOST']}:{args['--listening-port']}", url


def test_stop_grace_period_covers_the_shutdown_timeout_and_start_up_the_store_wait() -> None:
    for name, service in app_nodes(compose(OPERATOR)).items():
        env = environment(service)
        assert duration_s(service["stop_grace_period"]) >= float(env["PAIRLY_SHUTDOWN_TIMEOUT_S"]) + 2, name
        start = duration_s(service["healthcheck"]["start_period"])
        assert start >= float(env["PAIRLY_STORE_CONNECT_TIMEOUT_S"]), f"{name}: unhealthy while still connecting"


def test_named_volumes_are_declared() -> None:
    doc = compose(OPERATOR)
    for name, service in doc["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in doc["volumes"], f"{name}: volume {source} is not declared"


async def test_a_compose_node_serves_in_production_and_its_turn_credentials_match_coturn(
        base_env: dict[str, str], redis_url: str) -> None:
    doc = compose(OPERATOR)
    node = next(iter(app_nodes(doc).values()))
    # The compose node's environment, pointed at this test's MongoDB and Redis.
    env = {**environment(node), "REDIS_URL": redis_url,
           **{k: base_env[k] for k in ("MONGO_URL", "MONGO_DB", "REDIS_PREFIX")}}
    settings = make_settings(env)
    health_url = next(arg for arg in node["healthcheck"]["test"] if arg.startswith("http"))
    assert urlparse(health_url).port == settings.port
    async with running_app(settings) as app:
        async with aiohttp.ClientSession() as http:
            async with http.get(app.url + urlparse(health_url).path) as resp:
                assert resp.status == 200, await resp.text()
            async with http.get(app.url + "/metrics") as resp:
                assert resp.status == 401
            bearer = {"Authorization": f"Bearer {OPERATOR['PAIRLY_METRICS_TOKEN']}"}
            async with http.get(app.url + "/metrics", headers=bearer) as resp:
                assert resp.status == 200
        client = await connect(app.url, "compose-ann", token_for(settings, "compose-ann"), ["/call"])
        ack = await client.call("/call", "call:ice_servers", {})
        await client.close()
    assert ack["ok"], ack
    turn = [server for server in ack["ice_servers"] if "username" in server]
    assert len(turn) == 1 and turn[0]["urls"] == env["PAIRLY_TURN_URLS"].split(",")
    # What coturn (use-auth-secret) computes with its static-auth-secret from compose.yaml.
    secret = coturn_args(doc)["--static-auth-secret"].encode()
    expected = base64.b64encode(hmac.new(secret, turn[0]["username"].encode(), hashlib.sha1).digest()).decode()
    assert turn[0]["credential"] == expected


async def test_the_three_compose_nodes_run_as_one_cluster(base_env: dict[str, str], redis_url: str) -> None:
    """The three nodes' environments, as real `python -m server` processes sharing Redis and the store
    (in place of compose's): each gets ready in production mode, and a message crosses nodes."""
    stores = {"REDIS_URL": redis_url, **{k: base_env[k] for k in ("MONGO_URL", "MONGO_DB", "REDIS_PREFIX")}}
    started: list[NodeProcess] = []
    opened: list[Client] = []
    try:
        for name, service in app_nodes(compose(OPERATOR)).items():
            started.append(NodeProcess({**environment(service), **stores}, name))
        for node in started:
            node.wait_ready()
        settings = make_settings({**environment(next(iter(app_nodes(compose(OPERATOR)).values()))), **stores})
        first, last = started[0], started[-1]
        ann = await connect(first.url, "cluster-ann", token_for(settings, "cluster-ann"), ["/chat"])
        opened.append(ann)
        bob = await connect(last.url, "cluster-bob", token_for(settings, "cluster-bob"), ["/chat"])
        opened.append(bob)
        ack = await ann.call("/chat", "message:send", {"to": "cluster-bob", "client_id": uuid.uuid4().hex,
                                                       "text": "across nodes"})
        assert ack["ok"], ack
        while not bob.received("/chat", "message:new"):
            await bob.next("/chat", "message:new", timeout=10)
        (message,) = bob.received("/chat", "message:new")
        assert message["id"] == ack["message"]["id"] and message["text"] == "across nodes"
    finally:
        for client in opened:
            await client.close()
        for node in started:
            with contextlib.suppress(Exception):
                node.stop()
