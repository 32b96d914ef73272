"""Roles: every admin route for each role (allowed and forbidden) and without a token, from the one
declaration; the OpenAPI document shows the same roles; a separate issuer/audience for staff tokens."""

from __future__ import annotations

import re

import pytest

from rest.admin.roles import ROUTE_ROLES
from server.app import create_app
from tests.rest.admin.conftest import FAST, ok, staff
from tests.support.apps import RunningApp, make_settings, running_app

IDENTITIES = ("admin", "moderator", "support", "user")


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: f"nobody-{m.group(1)}", path)


def _admin_routes(app: object) -> set[tuple[str, str]]:
    return {(r.method, r.resource.canonical) for r in app.router.routes()  # type: ignore[attr-defined]
            if r.resource is not None and r.resource.canonical.startswith("/api/admin")
            and r.method not in ("HEAD", "OPTIONS")}


def test_every_admin_route_declares_its_roles_once(settings) -> None:
    assert _admin_routes(create_app(settings)) == set(ROUTE_ROLES)


async def test_roles_matrix(app_server: RunningApp) -> None:
    clients = {role: staff(app_server, f"rl-{role}", role) for role in IDENTITIES}
    for (method, path), allowed in sorted(ROUTE_ROLES.items()):
        url = _concrete(path)
        # Bodies no route accepts: an allowed caller gets past the role check and changes nothing.
        body = {"bogus": 1} if method in ("POST", "PUT") else None
        status, answer = await clients["admin"].request(method, url, body, auth=False)
        assert status == 401 and answer["error"]["code"] == "auth_missing", (method, path, answer)
        for role, api in clients.items():
            status, answer = await api.request(method, url, body)
            if role in allowed:
                assert status not in (401, 403), (role, method, path, status, answer)
            else:
                assert status == 403, (role, method, path, status, answer)
                assert answer["error"]["code"] == "forbidden"
                assert " or ".join(allowed) in answer["error"]["message"]
    # Nothing was changed by any of it.
    assert (await ok(clients["admin"], "GET", "/api/admin/audit"))["entries"] == []


async def test_openapi_shows_each_admin_route_with_its_roles_and_schemas(app_server: RunningApp) -> None:
    doc = await ok(staff(app_server, "rl-anyone"), "GET", "/api/openapi.json")
    for (method, path), roles in ROUTE_ROLES.items():
        op = doc["paths"][path][method.lower()]
        assert op["x-roles"] == list(roles), (method, path)
        assert op["summary"] and "200" in op["responses"] and "403" in op["responses"], (method, path)
        if method in ("POST", "PUT") and "payouts" not in path:
            assert op["requestBody"]["content"]["application/json"]["schema"]["type"] == "object", (method, path)


@pytest.mark.parametrize("claim", ["issuer", "audience"])
async def test_staff_tokens_can_be_required_to_carry_their_own_issuer_or_audience(
        base_env: dict[str, str], claim: str) -> None:
    var = {"issuer": "PAIRLY_ADMIN_JWT_ISSUER", "audience": "PAIRLY_ADMIN_JWT_AUDIENCE"}[claim]
    settings = make_settings({**base_env, **FAST, var: "pairly-staff"})
    async with running_app(settings) as app:
        app_token = staff(app, "rl-root", "admin")
        status, answer = await app_token.get("/api/admin/stats")
        assert status == 401 and answer["error"]["code"] == "auth_invalid", answer
        staff_token = staff(app, "rl-root", "admin", **{claim: "pairly-staff"})
        assert (await ok(staff_token, "GET", "/api/admin/stats"))["nodes_alive"] == 1
        # App routes keep the app's own issuer/audience.
        assert (await app_token.get("/api/wallet"))[0] == 200


async def test_malformed_bodies_get_clear_errors_and_change_nothing(app_server: RunningApp, clients) -> None:
    admin = staff(app_server, "rl-root", "admin")
    await clients(app_server, "rl-ann", namespaces=["/chat"])
    for (method, path), _ in sorted(ROUTE_ROLES.items()):
        if method not in ("POST", "PUT"):
            continue
        url = re.sub(r"\{user_id\}", "rl-ann", _concrete(path))
        for raw in (b"{", b"[]", b'"ban"', b"null", b'{"reason": "\\ud800"}', b"{}" * 10_000):
            status, answer = await admin.request(method, url, raw=raw)
            assert status in (400, 404), (method, path, raw[:20], status, answer)
            assert answer["error"]["code"] in ("invalid_payload", "not_found") and answer["error"]["message"]
    assert (await ok(admin, "GET", "/api/admin/audit"))["entries"] == []
    assert (await ok(admin, "GET", "/api/admin/pricing"))["version"] == 0
    detail = await ok(admin, "GET", "/api/admin/users/rl-ann")
    assert detail["profile"]["banned"] is False and detail["wallet"] is None
    assert detail["profile"]["tokens_valid_after"] is None
