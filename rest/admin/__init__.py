"""Admin and moderation over REST (`/api/admin/...`): roles in `roles.py`, routes per area."""

from __future__ import annotations

from aiohttp import web

from rest.admin.deps import AdminDeps
from rest.admin.moderation import moderation_routes
from rest.admin.operations import operation_routes
from rest.admin.users import user_routes


def admin_routes(deps: AdminDeps) -> list[web.RouteDef]:
    return [*user_routes(deps), *moderation_routes(deps), *operation_routes(deps)]
