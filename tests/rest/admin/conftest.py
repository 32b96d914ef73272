"""Admin REST tests: staff clients per role, and the app with short polls so changes propagate fast."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from config.settings import Settings
from tests.billing.api import Api
from tests.support.apps import RunningApp

FAST = {"PAIRLY_SESSION_POLL_S": "0.1", "PAIRLY_PRICING_POLL_S": "0.1", "PAIRLY_ADMIN_STATS_PUBLISH_S": "0.2",
        "PAIRLY_RATE_LIMITS": "*=1000/1"}


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, **FAST}


def staff(target: RunningApp | tuple[str, Settings], user: str, *roles: str, **token: Any) -> Api:
    """A REST client whose token carries `roles` (`admin`, `moderator`, `support`, `user`)."""
    return Api(target, user, roles=list(roles) or ["user"], **token)


async def ok(api: Api, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    code, answer = await api.request(method, path, body)
    assert code == status, (code, answer)
    return answer


async def audit_entries(admin: Api, **filters: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    code, body = await admin.get("/api/admin/audit?limit=100" + (f"&{query}" if query else ""))
    assert code == 200, body
    entries: list[dict[str, Any]] = body["entries"]
    return entries


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Ask again until `check()` holds: for state another node applies by itself (a poll), which
    sends no event to wait on."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
