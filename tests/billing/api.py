"""An authenticated JSON client for the REST sidecar (billing tests share it)."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from config.settings import Settings
from tests.support.apps import RunningApp
from tests.support.clients import token_for


class Api:
    def __init__(self, target: RunningApp | tuple[str, Settings], user: str, **token_kwargs: Any) -> None:
        """`target`: an in-process app, or (url, settings) of a node process."""
        url, settings = (target.url, target.settings) if isinstance(target, RunningApp) else target
        self.url = url
        self.user = user
        self.headers = {"Authorization": f"Bearer {token_for(settings, user, **token_kwargs)}"}

    async def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                      auth: bool = True) -> tuple[int, Any]:
        headers = dict(self.headers) if auth else {}
        kwargs: dict[str, Any] = {"headers": headers}
        if raw is not None:
            kwargs["data"] = raw
            headers["Content-Type"] = "application/json"
        elif body is not None:
            kwargs["json"] = body
        async with aiohttp.ClientSession() as http, http.request(method, self.url + path, **kwargs) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        return await self.request("POST", path, body, **kwargs)

    async def pages(self, path: str, limit: int, items: str = "entries") -> list[list[Any]]:
        """Every page of a newest-first listing, following `next` cursors until it is null."""
        pages: list[list[Any]] = []
        cursor = None
        while True:
            status, body = await self.get(f"{path}?limit={limit}" + (f"&before={cursor}" if cursor else ""))
            assert status == 200, body
            pages.append(body[items])
            cursor = body["next"]
            if cursor is None:
                return pages

    async def put(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        return await self.request("PUT", path, body, **kwargs)

    async def buy(self, package_id: str = "small", provider: str = "dev", key: str | None = None,
                  **extra: Any) -> tuple[int, Any]:
        body = {"package_id": package_id, "provider": provider, "idempotency_key": key or uuid.uuid4().hex, **extra}
        return await self.post("/api/purchases", body)

    async def balance(self) -> int:
        status, body = await self.get("/api/wallet")
        assert status == 200, body
        return int(body["balance"])
