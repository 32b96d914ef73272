"""deploy/nginx.conf (compose's load balancer), checked against compose.yaml and the real app."""

from __future__ import annotations

import re

import aiohttp

from server.app import SIO
from tests.deploy.files import app_nodes, compose, environment, nginx_block, nginx_directives, nginx_text
from tests.deploy.test_compose import OPERATOR
from tests.support.apps import RunningApp

# docs/deploy.md plans for this many connections per node (capacity planning).
PLANNED_CONNECTIONS_PER_NODE = 10_000


def upstream_name() -> str:
    passes = nginx_directives(nginx_text(), "proxy_pass")
    assert passes, "nginx proxies nothing"
    names = {args[0].removeprefix("http://").rstrip("/") for args in passes}
    assert len(names) == 1, f"one upstream expected, got {names}"
    return names.pop()


def proxied_location() -> str:
    return nginx_block(nginx_text(), "location /")


def test_the_upstream_lists_exactly_the_compose_nodes() -> None:
    nodes = app_nodes(compose(OPERATOR))
    expected = {f"{name}:{environment(s)['PAIRLY_PORT']}" for name, s in nodes.items()}
    upstream = nginx_block(nginx_text(), f"upstream {upstream_name()}")
    servers = [args[0] for args in nginx_directives(upstream, "server")]
    assert sorted(servers) == sorted(expected)


def test_long_polling_clients_stick_to_one_node() -> None:
    upstream = nginx_block(nginx_text(), f"upstream {upstream_name()}")
    hashes = nginx_directives(upstream, "hash")
    assert hashes == [["$remote_addr", "consistent"]] or nginx_directives(upstream, "ip_hash") == [[]], (
        "long-polling needs sticky sessions: `hash $remote_addr consistent` (docs/deploy.md)")


def test_websockets_are_upgraded() -> None:
    text, location = nginx_text(), proxied_location()
    assert ["1.1"] in nginx_directives(location, "proxy_http_version")
    headers = {args[0].lower(): args[1:] for args in nginx_directives(location, "proxy_set_header")}
    assert headers["upgrade"] == ["$http_upgrade"]
    variable = headers["connection"][0]
    assert re.search(rf"map\s+\$http_upgrade\s+{re.escape(variable)}\s*\{{[^}}]*default\s+upgrade", text)


def test_the_client_address_header_the_nodes_trust_is_written_by_nginx() -> None:
    header = environment(next(iter(app_nodes(compose(OPERATOR)).values())))["PAIRLY_CLIENT_IP_HEADER"]
    headers = {args[0].lower(): args[1:] for args in nginx_directives(proxied_location(), "proxy_set_header")}
    # Overwritten with the peer address: an appended X-Forwarded-For would keep the client's own first entry.
    assert headers[header.lower()] == ["$remote_addr"]


async def test_proxy_timeouts_outlast_the_engineio_heartbeat(app_server: RunningApp) -> None:
    eio = app_server.app[SIO].eio
    heartbeat = eio.ping_interval + eio.ping_timeout
    location = proxied_location()
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        (value,) = nginx_directives(location, directive)
        assert int(value[0].removesuffix("s")) > heartbeat, directive


def test_worker_connections_fit_the_planned_sockets() -> None:
    text = nginx_text()
    nodes = len(app_nodes(compose(OPERATOR)))
    (connections,) = nginx_directives(nginx_block(text, "events"), "worker_connections")
    (nofile,) = nginx_directives(text, "worker_rlimit_nofile")
    # Each proxied socket holds two connections (client and node side).
    assert int(connections[0]) >= 2 * PLANNED_CONNECTIONS_PER_NODE * nodes
    assert int(nofile[0]) >= int(connections[0])


async def test_the_balancer_health_check_is_served_by_nginx_and_node_routes_are_real(app_server: RunningApp) -> None:
    lb = compose(OPERATOR)["services"]["lb"]
    url = next(arg for arg in lb["healthcheck"]["test"] if arg.startswith("http"))
    path = url.split("127.0.0.1:8080", 1)[1]
    assert ["8080"] in nginx_directives(nginx_text(), "listen")
    assert re.search(rf"location\s+=\s+{re.escape(path)}\s*\{{[^}}]*return\s+200", nginx_text())
    # /metrics is per node, so nginx does not serve it; the route it hides is a real one.
    assert re.search(r"location\s+=\s+/metrics\s*\{[^}]*return\s+404", nginx_text())
    async with aiohttp.ClientSession() as http, http.get(app_server.url + "/metrics") as resp:
        assert resp.status == 200
