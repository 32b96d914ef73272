"""Every REST route is described in the OpenAPI document, and every description is of a route."""

from __future__ import annotations

from rest.openapi import described
from server.app import create_app
from tests.support.apps import make_settings


def test_every_route_has_a_description_and_every_description_a_route() -> None:
    app = create_app(make_settings({"MONGO_URL": "mongodb://127.0.0.1:1", "PAIRLY_JWT_SECRET": "x" * 40}))
    served = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.method not in ("HEAD", "OPTIONS", "*")
              and not r.resource.canonical.startswith("/socket.io")}
    assert served == described()
