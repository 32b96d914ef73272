"""A raw Socket.IO client for benchmarks: one Engine.IO v4 WebSocket, JSON parser, one namespace.

Much lighter than a python-socketio client, so one client process can hold a thousand watchers
without becoming the bottleneck it measures. Timestamps are taken when a frame arrives, before
any decoding, with `time.monotonic()` (one clock for every process on the machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

EventHandler = Callable[[str, Any, float], None]


class ConnectRefused(Exception):
    pass


class RawClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, namespace: str) -> None:
        self._session = session
        self._url = url
        self._ns = namespace
        self._prefix = f"{namespace},"
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self.on_event: EventHandler | None = None

    async def open(self, auth: dict[str, Any], timeout: float = 30.0) -> None:
        """Engine.IO handshake, then the namespace connect; `ConnectRefused` with the server's reason."""
        await asyncio.wait_for(self._open(auth), timeout)

    async def _open(self, auth: dict[str, Any]) -> None:
        ws = await self._session.ws_connect(f"{self._url}/socket.io/?EIO=4&transport=websocket")
        self._ws = ws
        opening = await ws.receive_str()
        if not opening.startswith("0"):
            raise ConnectRefused(opening)
        await ws.send_str(f"40{self._prefix}{json.dumps(auth)}")
        while True:
            reply = await ws.receive_str()
            if reply == "2":
                await ws.send_str("3")
                continue
            break
        if not reply.startswith(f"40{self._prefix}"):
            raise ConnectRefused(reply)
        self._reader = asyncio.create_task(self._read())

    async def call(self, event: str, data: Any, timeout: float = 30.0) -> Any:
        assert self._ws is not None
        self._next_id += 1
        ack_id = self._next_id
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = fut
        await self._ws.send_str(f"42{self._prefix}{ack_id}{json.dumps([event, data])}")
        return await asyncio.wait_for(fut, timeout)

    async def _read(self) -> None:
        assert self._ws is not None
        ws = self._ws
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            at = time.monotonic()
            text: str = msg.data
            if text == "2":
                await ws.send_str("3")
                continue
            if not text.startswith("4"):
                continue
            kind, body = text[1], text[2:]
            if body.startswith(self._prefix):
                body = body[len(self._prefix):]
            if kind == "2" and self.on_event is not None:
                event, *args = json.loads(body)
                self.on_event(event, args[0] if args else None, at)
            elif kind == "3":
                digits = 0
                while body[digits].isdigit():
                    digits += 1
                fut = self._acks.pop(int(body[:digits]), None)
                if fut is not None and not fut.done():
                    payload = json.loads(body[digits:])
                    fut.set_result(payload[0] if payload else None)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._ws is not None:
            await self._ws.close()


async def open_many(session: aiohttp.ClientSession, url: str, namespace: str, auths: list[dict[str, Any]],
                    concurrency: int = 50) -> list[RawClient]:
    """Open one client per auth, `concurrency` handshakes at a time, in order."""
    sem = asyncio.Semaphore(concurrency)

    async def one(auth: dict[str, Any]) -> RawClient:
        async with sem:
            client = RawClient(session, url, namespace)
            await client.open(auth)
            return client

    return list(await asyncio.gather(*(one(a) for a in auths)))
