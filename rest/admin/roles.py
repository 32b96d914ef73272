"""Who may call which admin route: the one declaration (`ROUTE_ROLES`) and the check that reads it.

Roles come from the JWT's `roles` claim: `admin` (everything), `moderator` (reports, messages, bans),
`support` (reads users, wallets, calls, stats, pricing; no money, no bans). A route under
`/api/admin/` with no entry here is refused to everyone (deny by default; a test checks every
route has one). No token → 401; a valid token without a listed role → 403 `forbidden` naming the
roles. The OpenAPI document shows each route's roles as `x-roles` from this same table.

`PAIRLY_ADMIN_JWT_ISSUER` / `PAIRLY_ADMIN_JWT_AUDIENCE`: when set, admin routes accept only tokens
carrying that issuer / audience (an identity service can mint staff tokens apart from app tokens);
bans, revocations and `tokens_valid_after` apply to staff tokens like to any other.
"""

from __future__ import annotations

import dataclasses

from aiohttp import web

from config.errors import Forbidden
from config.settings import Settings
from rest.middleware import REQUEST_ID
from server.access import AccessControl
from server.admin.audit import Actor
from server.auth import AuthRefused, TokenVerifier, token_from
from server.revocation import RevocationStore
from server.users import UserStore

ADMIN = "admin"
MODERATOR = "moderator"
SUPPORT = "support"
_ALL = (ADMIN, MODERATOR, SUPPORT)
_MOD = (ADMIN, MODERATOR)
_SUP = (ADMIN, SUPPORT)

ROUTE_ROLES: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/api/admin/audit"): (ADMIN,),
    ("GET", "/api/admin/users"): _ALL,
    ("GET", "/api/admin/users/{user_id}"): _ALL,
    ("POST", "/api/admin/users/{user_id}/ban"): _MOD,
    ("POST", "/api/admin/users/{user_id}/unban"): _MOD,
    ("POST", "/api/admin/users/{user_id}/revoke-sessions"): _MOD,
    ("POST", "/api/admin/users/{user_id}/credits"): (ADMIN,),
    ("POST", "/api/admin/messages/{message_id}/delete"): _MOD,
    ("GET", "/api/admin/reports"): _MOD,
    ("POST", "/api/admin/reports/{report_id}/resolve"): _MOD,
    ("GET", "/api/admin/stats"): _SUP,
    ("GET", "/api/admin/calls/active"): _SUP,
    ("GET", "/api/admin/calls/quality"): _SUP,
    ("POST", "/api/admin/calls/{call_id}/end"): (ADMIN,),
    ("POST", "/api/admin/notice"): (ADMIN,),
    ("GET", "/api/admin/pricing"): _SUP,
    ("PUT", "/api/admin/pricing"): (ADMIN,),
    ("GET", "/api/admin/payouts"): (ADMIN,),
    ("POST", "/api/admin/payouts/{payout_id}/approve"): (ADMIN,),
    ("POST", "/api/admin/payouts/{payout_id}/reject"): (ADMIN,),
}


def roles_of(method: str, path: str) -> tuple[str, ...]:
    return ROUTE_ROLES.get((method.upper(), path), ())


class AdminAuth:
    """`await auth(request)` → the acting `Actor`, or 401/403 per the route's declared roles."""

    def __init__(self, access: AccessControl, users: UserStore) -> None:
        self._access = access
        self._users = users

    @classmethod
    def from_settings(cls, settings: Settings, default: AccessControl, users: UserStore,
                      revocations: RevocationStore) -> AdminAuth:
        env = settings.env()
        issuer, audience = env.text("PAIRLY_ADMIN_JWT_ISSUER"), env.text("PAIRLY_ADMIN_JWT_AUDIENCE")
        if issuer is None and audience is None:
            return cls(default, users)
        jwt = dataclasses.replace(settings.jwt, issuer=issuer or settings.jwt.issuer,
                                  audience=audience or settings.jwt.audience)
        return cls(AccessControl(TokenVerifier(jwt), users, revocations), users)

    async def __call__(self, request: web.Request) -> Actor:
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else request.path
        allowed = roles_of(request.method, path)
        token = token_from(None, request.headers)
        if token is None:
            raise AuthRefused("auth_missing", "send Authorization: Bearer <token>")
        identity = await self._access.authenticate(token)
        held = [r for r in allowed if identity.has_role(r)]
        if not held:
            need = " or ".join(allowed) if allowed else "a role declared for it (none is)"
            raise Forbidden(f"{request.method} {path} requires role {need}")
        await self._users.seen(identity)  # staff are users too: findable, and bannable, like any other
        request_id = request.get(REQUEST_ID)
        return Actor(identity.user_id, held[0], request_id[:100] if request_id else None)
