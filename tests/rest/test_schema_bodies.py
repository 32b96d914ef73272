"""One mechanism for request bodies (rest/schema.py): every route that takes a JSON body reads it with
`body()`, which checks it against the schema the route publishes in OpenAPI, so a body the document
rules out gets 400 `invalid_payload` naming the field, and changes nothing."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.billing.api import Api
from tests.support.apps import ROOT

# Routes that must read the raw body themselves: signatures are computed over the exact bytes.
_RAW = {"rest/webhooks.py"}


def test_no_route_reads_a_json_body_any_other_way() -> None:
    offenders = []
    for path in [*Path(ROOT, "rest").rglob("*.py"), *Path(ROOT, "server").rglob("*.py")]:
        rel = path.relative_to(ROOT).as_posix()
        if rel in _RAW or rel == "rest/schema.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("json", "read_json") and \
                    isinstance(node.value, ast.Name) and node.value.id == "request":
                offenders.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.Name) and node.id == "read_json":
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, f"JSON bodies read outside rest.schema.body: {offenders}"


async def test_bodies_are_checked_against_the_published_schema(app_server) -> None:
    fan = Api(app_server, "sb-fan")
    star = Api(app_server, "sb-star", roles=["user", "creator"])
    cases = [
        (fan, "POST", "/api/purchases", {"package_id": 5, "provider": "dev", "idempotency_key": "k" * 10},
         "body.package_id"),
        (fan, "POST", "/api/purchases", {"package_id": "small", "provider": "paypal", "idempotency_key": "k" * 10},
         "body.provider"),
        (fan, "POST", "/api/purchases/razorpay/verify", {"razorpay_order_id": "o"}, "body.razorpay_payment_id"),
        (star, "PUT", "/api/creator/rates", {"message": 3, "tip": 1}, "unknown fields tip"),
        (star, "PUT", "/api/creator/rates", {}, "at least 1"),
        (star, "POST", "/api/payouts", {"amount": "100", "idempotency_key": "k" * 10}, "body.amount"),
    ]
    for api, method, path, payload, expected in cases:
        code, answer = await api.request(method, path, payload)
        assert code == 400 and answer["error"]["code"] == "invalid_payload", (path, payload, answer)
        assert expected in answer["error"]["message"], (path, answer)
    code, purchases = await fan.get("/api/purchases")
    assert code == 200 and purchases["purchases"] == []
