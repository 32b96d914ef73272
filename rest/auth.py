"""Bearer-token authentication for REST handlers."""

from __future__ import annotations

from aiohttp import web

from config.errors import Forbidden
from server.auth import AuthRefused, Identity, token_from
from server.core import Core


async def authenticate(request: web.Request, core: Core, *roles: str) -> Identity:
    """The caller's identity; with `roles`, the caller must hold one of them."""
    token = token_from(None, request.headers)
    if token is None:
        raise AuthRefused("auth_missing", "send Authorization: Bearer <token>")
    identity = await core.access.authenticate(token)
    if roles and not identity.has_role(*roles):
        raise Forbidden(f"requires role {' or '.join(roles)}")
    return identity
