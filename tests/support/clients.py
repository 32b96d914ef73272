"""Authenticated python-socketio clients and tokens."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import socketio

from config.settings import Settings
from server.auth import mint_token


def token_for(settings: Settings, user: str, **kwargs: Any) -> str:
    assert settings.jwt.secret is not None
    kwargs.setdefault("issuer", settings.jwt.issuer)
    kwargs.setdefault("audience", settings.jwt.audience)
    return mint_token(settings.jwt.secret, user, **kwargs)


class Client:
    """A connected client that records every event it receives, per namespace."""

    def __init__(self, sio: socketio.AsyncClient, user: str) -> None:
        self.sio = sio
        self.user = user
        self.events: dict[tuple[str, str], list[Any]] = {}
        self._waiters: list[tuple[str, str, asyncio.Future[Any]]] = []

    def record(self, namespace: str, event: str, data: Any) -> None:
        self.events.setdefault((namespace, event), []).append(data)
        for waiter in list(self._waiters):
            ns, ev, fut = waiter
            if ns == namespace and ev == event and not fut.done():
                fut.set_result(data)
                self._waiters.remove(waiter)

    def received(self, namespace: str, event: str) -> list[Any]:
        return self.events.get((namespace, event), [])

    async def next(self, namespace: str, event: str, timeout: float = 5.0) -> Any:
        """The next `event` on `namespace` (not one already received)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append((namespace, event, fut))
        return await asyncio.wait_for(fut, timeout)

    async def call(self, namespace: str, event: str, data: Any = None, timeout: float = 10.0) -> Any:
        return await self.sio.call(event, data if data is not None else {}, namespace=namespace, timeout=timeout)

    async def close(self) -> None:
        # The python-socketio client waits for its pending long-poll GET to return on close (up to a
        # ping interval); the test does not need to wait for that.
        if self.sio.connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sio.disconnect(), 2.0)


class ConnectRefused(Exception):
    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.data = data
        self.code = (data or {}).get("data", {}).get("code") if isinstance(data, dict) else None


async def connect(
    url: str,
    user: str,
    token: str | None,
    namespaces: Sequence[str] = ("/chat", "/presence", "/call"),
    *,
    transports: Sequence[str] = ("websocket",),
    headers: dict[str, str] | None = None,
) -> Client:
    sio = socketio.AsyncClient(reconnection=False)
    client = Client(sio, user)
    errors: list[Any] = []
    for ns in namespaces:
        sio.on("*", lambda event, *args, _ns=ns: client.record(_ns, event, args[0] if args else None), namespace=ns)
        sio.on("connect_error", lambda data: errors.append(data), namespace=ns)
    auth = {"token": token} if token is not None else None
    try:
        await sio.connect(url, namespaces=list(namespaces), auth=auth, transports=list(transports),
                          headers=headers or {}, wait_timeout=10)
    except socketio.exceptions.ConnectionError:
        await sio.disconnect()
        raise ConnectRefused(errors[0] if errors else None) from None
    return client
