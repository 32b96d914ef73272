"""Purchasers over REST: list packages, buy one with the `dev` provider, read the wallet."""

from __future__ import annotations

import uuid
from typing import Any

from locust import HttpUser, between, task

from loadtests.users.common import new_user_id, pick_host, token


def _error_code(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("code", "error"))
    return "bad_response"


class PurchaseUser(HttpUser):
    """Needs the dev payment provider (dev mode: PAIRLY_DEV_PAYMENTS defaults on)."""

    wait_time = between(0.5, 2.0)
    weight = 1

    def on_start(self) -> None:
        self.client.base_url = pick_host(self.host or "")
        self.client.headers["Authorization"] = f"Bearer {token(new_user_id('buyer'))}"
        self.package_id: str | None = None

    def report_failure(self, message: str) -> None:
        self.environment.events.request.fire(request_type="POST", name="/api/purchases (status)", response_time=0,
                                             response_length=0, exception=RuntimeError(message), context={})

    def _json(self, method: str, path: str, expect: tuple[int, ...], **kwargs: Any) -> Any:
        """Report a non-`expect` status as a failure named by the error code; return the JSON or None."""
        with self.client.request(method, path, catch_response=True, **kwargs) as resp:
            try:
                body = resp.json()
            except ValueError:
                body = None
            if resp.status_code not in expect:
                resp.failure(f"{resp.status_code} {_error_code(body)}")
                return None
            return body

    @task(1)
    def packages(self) -> None:
        body = self._json("GET", "/api/credits/packages", (200,))
        if body and body.get("packages"):
            self.package_id = body["packages"][0]["id"]

    @task(2)
    def purchase(self) -> None:
        if self.package_id is None:
            self.packages()
            if self.package_id is None:
                return
        body = self._json("POST", "/api/purchases", (201,), json={
            "package_id": self.package_id, "provider": "dev", "idempotency_key": uuid.uuid4().hex})
        if body is not None and body.get("status") != "succeeded":
            self.report_failure(f"purchase {body.get('status')}")

    @task(3)
    def wallet(self) -> None:
        self._json("GET", "/api/wallet", (200,))
