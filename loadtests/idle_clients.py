"""Idle raw-protocol clients for the memory benchmarks: one Engine.IO WebSocket per device, joined to
one or more namespaces with a JWT, answering pings and nothing else.

Lighter than python-socketio clients, so one client process holds thousands of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Sequence

import aiohttp


class IdleClients:
    """Open with `open(n, auth)`, close everything with `close()`."""

    def __init__(self, url: str, namespaces: Sequence[str], concurrency: int = 200, deflate: bool = False) -> None:
        self._url = url
        # permessage-deflate, as browsers negotiate it (aiohttp's client does not by default)
        self._compress = 15 if deflate else 0
        self._namespaces = list(namespaces)
        self._sem = asyncio.Semaphore(concurrency)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self._sockets: list[aiohttp.ClientWebSocketResponse] = []
        self._pongers: list[asyncio.Task[None]] = []
        self.ok = 0
        self.failed = 0

    async def open(self, n: int, auth: Callable[[int], str], start: int = 0) -> None:
        """Open `n` devices (numbered from `start`); `auth(i)` is the Socket.IO auth JSON of device i."""
        await asyncio.gather(*(self._one(i, auth(i)) for i in range(start, start + n)))

    async def _one(self, i: int, auth: str) -> None:
        async with self._sem:
            try:
                ws = await self._session.ws_connect(f"{self._url}/socket.io/?EIO=4&transport=websocket",
                                                   compress=self._compress)
                self._sockets.append(ws)
                if not (await ws.receive_str()).startswith("0"):
                    raise RuntimeError("no Engine.IO open packet")
                for ns in self._namespaces:
                    await ws.send_str(f"40{ns},{auth}")
                waiting = set(self._namespaces)
                while waiting:
                    text = await asyncio.wait_for(ws.receive_str(), 60)
                    if text == "2":
                        await ws.send_str("3")
                    elif text.startswith("40"):
                        waiting.discard(text[2:].split(",", 1)[0])
                    elif text.startswith("44"):
                        raise RuntimeError(f"refused: {text[:200]}")
                self.ok += 1
                self._pongers.append(asyncio.create_task(_pong(ws)))
            except Exception as exc:  # counted as a failed connection
                self.failed += 1
                print(f"connect {i} failed: {exc!r}", file=sys.stderr)

    async def close(self) -> None:
        for task in self._pongers:
            task.cancel()
        for ws in self._sockets:
            with contextlib.suppress(Exception):
                await ws.close()
        await self._session.close()


async def _pong(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT and msg.data == "2":
            await ws.send_str("3")


def auth_json(token: str | None) -> str:
    return json.dumps({"token": token}) if token else "{}"
