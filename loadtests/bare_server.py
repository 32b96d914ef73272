"""The baseline: a bare python-socketio server on aiohttp (+uvloop), no auth, no storage.

Events: `echo` (acks its payload) and `relay` `{"to": room, ...}` (acks, then emits `relay` to the
room). Every connection joins the room named by its `auth.user` if given. Port from BENCH_PORT.
"""

from __future__ import annotations

import os
from typing import Any

import socketio
import uvloop
from aiohttp import web

# namespaces="*": the connection benchmarks join /presence and /call too (no handlers there).
sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*", namespaces="*", logger=False,
                          engineio_logger=False)
app = web.Application()
sio.attach(app)


async def index(_: web.Request) -> web.Response:
    return web.Response(text="ok")


app.router.add_get("/", index)


@sio.on("connect", namespace="/chat")  # type: ignore[untyped-decorator]
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    if isinstance(auth, dict) and isinstance(auth.get("user"), str):
        await sio.enter_room(sid, auth["user"], namespace="/chat")


@sio.on("echo", namespace="/chat")  # type: ignore[untyped-decorator]
async def echo(sid: str, data: Any) -> Any:
    return data


@sio.on("relay", namespace="/chat")  # type: ignore[untyped-decorator]
async def relay(sid: str, data: Any) -> Any:
    await sio.emit("relay", data, room=data["to"], namespace="/chat", skip_sid=sid)
    return {"ok": True}


if __name__ == "__main__":
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=int(os.environ["BENCH_PORT"]), print=None, access_log=None)
