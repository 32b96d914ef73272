"""docs/protocol.md stays true: its client-event tables are exactly the namespaces' handlers, and its
REST table is exactly the router's routes (HEAD/OPTIONS and the Socket.IO endpoint aside)."""

from __future__ import annotations

import re

from server.app import SIO, create_app
from tests.support.apps import ROOT, make_settings

DOC = (ROOT / "docs" / "protocol.md").read_text()


def _section(name: str) -> str:
    start = DOC.index(f"## {name}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end != -1 else None]


def _app() -> object:
    return create_app(make_settings({"MONGO_URL": "mongodb://127.0.0.1:1", "PAIRLY_JWT_SECRET": "x" * 40}))


def test_every_client_event_is_documented_and_every_documented_one_exists() -> None:
    app = _app()
    for namespace, handler in app[SIO].namespace_handlers.items():  # type: ignore[index]
        documented = set(re.findall(r"^\| c→s \| `([^`]+)`", _section(namespace), flags=re.M))
        assert documented == set(handler.handlers()), namespace


def test_every_rest_route_is_documented_and_every_documented_one_exists() -> None:
    app = _app()
    served = {(r.method, (r.resource.get_info().get("path") or r.resource.get_info().get("formatter")))
              for r in app.router.routes()  # type: ignore[attr-defined]
              if r.resource is not None and r.method not in ("HEAD", "OPTIONS")}
    served = {(m, p) for m, p in served if p != "/socket.io/"}
    documented = set(re.findall(r"^\| `(GET|POST|PUT|DELETE|PATCH) ([^`]+)`", _section("REST"), flags=re.M))
    assert documented == served
