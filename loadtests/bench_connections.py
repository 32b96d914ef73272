"""Memory per idle authenticated connection: the server vs a bare python-socketio server, same run.

    .venv/bin/python -m loadtests.bench_connections [--connections 10000]

Each connection is a raw Engine.IO WebSocket (lighter than a python-socketio client, so one client
process can hold thousands) that joins `/chat` with a JWT of its own user. The figure is
(server RSS with N connections - RSS idle) / N, next to the same figure for a bare python-socketio
server accepting the same connections. Bounded: it stops after the connections are measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

import aiohttp

from loadtests.common import bare_server_cmd, raise_nofile, rss_kb, start_server, wait_http
from server.auth import mint_token

SECRET = "bench-secret-0123456789-0123456789-abcdef"


async def _hold(
    url: str, n: int, namespace: str, tokens: dict[int, str] | None, ready: asyncio.Event, stop: asyncio.Event
) -> int:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    pongers: list[asyncio.Task[None]] = []
    ok = 0
    sem = asyncio.Semaphore(200)

    async def one(i: int) -> None:
        nonlocal ok
        async with sem:
            try:
                ws = await session.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket")
                sockets.append(ws)
                assert (await ws.receive_str()).startswith("0")
                auth = json.dumps({"token": tokens[i]}) if tokens else "{}"
                await ws.send_str(f"40{namespace},{auth}")
                if (await ws.receive_str()).startswith(f"40{namespace},"):
                    ok += 1
                pongers.append(asyncio.create_task(_pong(ws)))
            except Exception as exc:  # counted as a failed connection
                print(f"connect {i} failed: {exc!r}", file=sys.stderr)

    await asyncio.gather(*(one(i) for i in range(n)))
    ready.set()
    await stop.wait()
    for task in pongers:
        task.cancel()
    for ws in sockets:
        await ws.close()
    await session.close()
    return ok


async def _pong(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT and msg.data == "2":
            await ws.send_str("3")


async def measure(url: str, pid: int, n: int, namespace: str, tokens: dict[int, str] | None) -> tuple[float, int]:
    """(KB of server RSS per connection, connections made)."""
    await asyncio.sleep(1.0)
    idle = rss_kb(pid)
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(_hold(url, n, namespace, tokens, ready, stop))
    await asyncio.wait_for(ready.wait(), 300)
    await asyncio.sleep(2.0)  # let the server settle (background upserts, GC)
    loaded = rss_kb(pid)
    stop.set()
    ok = await task
    return (loaded - idle) / max(ok, 1), ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=2000)
    args = parser.parse_args()
    raise_nofile()
    n = args.connections
    tokens = {i: mint_token(SECRET, f"user{i}", ttl_s=3600) for i in range(n)}
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "PAIRLY_JWT_SECRET": SECRET,
            "PAIRLY_LOG_LEVEL": "warning",
            "PAIRLY_MAX_TRANSPORTS_PER_IP": "1000000",  # every bench client comes from 127.0.0.1
            "PAIRLY_DATA_DIR": str(Path(tmp) / "var"),
        }
        ours = start_server([sys.executable, "-m", "server"], env)
        try:
            wait_http(ours.url + "/readyz", 60)
            per_conn, ok = asyncio.run(measure(ours.url, ours.proc.pid, n, "/chat", tokens))
        finally:
            ours.stop()
        bare = start_server(bare_server_cmd(), {})
        try:
            wait_http(bare.url + "/", 30, accept_any_status=True)
            bare_per_conn, bare_ok = asyncio.run(measure(bare.url, bare.proc.pid, n, "/chat", None))
        finally:
            bare.stop()
    print(f"connections: {ok}/{n} (server), {bare_ok}/{n} (bare python-socketio)")
    print(f"server RSS per idle authenticated connection: {per_conn:.1f} KB")
    print(f"bare python-socketio RSS per idle connection: {bare_per_conn:.1f} KB")
    print(f"ratio server/bare: {per_conn / max(bare_per_conn, 0.1):.2f}  (target: <= 25 KB per connection)")


if __name__ == "__main__":
    main()
