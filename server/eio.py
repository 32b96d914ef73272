"""Engine.IO tuned for many idle connections, through the hooks python-engineio exposes.

- `LeanWebSocket` is the aiohttp driver's WebSocket adapter with permessage-deflate refused: a
  compressor and decompressor per socket (zlib's default window) cost hundreds of KB per browser
  connection once the first message is sent, and Socket.IO events are small.

docs/memory.md has the measurements, and what would need python-engineio itself to change.
"""

from __future__ import annotations

from typing import Any

import engineio
from aiohttp.web import WebSocketResponse
from engineio.async_drivers import aiohttp as eio_aiohttp


class LeanWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """engineio's aiohttp WebSocket adapter, with permessage-deflate refused (see the module doc)."""

    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock


class LeanEngineServer(engineio.AsyncServer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.async_mode == "aiohttp":
            # The driver table is shared by every engineio server in the process: replace, don't mutate.
            drivers: dict[str, Any] = getattr(self, "_async")  # noqa: B009 - engineio sets it untyped
            setattr(self, "_async", {**drivers, "websocket": LeanWebSocket})  # noqa: B010
