"""Memory per idle authenticated device: the server vs a bare python-socketio server, same run.

    .venv/bin/python -m loadtests.bench_connections [--connections 10000]
        [--namespaces /chat,/presence,/call] [--deflate]

Each device is a raw Engine.IO WebSocket (lighter than a python-socketio client, so one client
process can hold thousands) that joins every namespace in `--namespaces` (default: all three, as the
apps do) with a JWT of its own user. The figure is (server RSS with N devices - RSS idle) / N, next to
the same figure for a bare python-socketio server accepting the same connections. `--deflate` makes
the clients negotiate permessage-deflate, as browsers do. The server runs on `make run`'s defaults
(embedded store, no Redis). Bounded: it stops after the connections are measured.
Where the memory goes, per allocation site: `loadtests.mem_profile`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from loadtests.benchjson import Figure, emit
from loadtests.common import bare_server_cmd, raise_nofile, rss_kb, start_server, wait_http
from loadtests.idle_clients import IdleClients, auth_json
from server.auth import mint_token

SECRET = "bench-secret-0123456789-0123456789-abcdef"


async def measure(url: str, pid: int, n: int, namespaces: list[str], auth: Callable[[int], str],
                  deflate: bool) -> tuple[float, int]:
    """(KB of server RSS per device, devices connected)."""
    await asyncio.sleep(1.0)
    idle = rss_kb(pid)
    clients = IdleClients(url, namespaces, deflate=deflate)
    try:
        await asyncio.wait_for(clients.open(n, auth), 600)
        await asyncio.sleep(2.0)  # let the server settle (background upserts, presence commits)
        loaded = rss_kb(pid)
    finally:
        await clients.close()
    return (loaded - idle) / max(clients.ok, 1), clients.ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--namespaces", default="/chat,/presence,/call")
    parser.add_argument("--deflate", action="store_true", help="clients negotiate permessage-deflate")
    args = parser.parse_args()
    raise_nofile()
    n = args.connections
    namespaces = args.namespaces.split(",")
    tokens = {i: auth_json(mint_token(SECRET, f"user{i}", ttl_s=3600)) for i in range(n)}
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
            per_conn, ok = asyncio.run(measure(ours.url, ours.proc.pid, n, namespaces, tokens.__getitem__,
                                               args.deflate))
        finally:
            ours.stop()
        bare = start_server(bare_server_cmd(), {})
        try:
            wait_http(bare.url + "/", 30, accept_any_status=True)
            bare_per_conn, bare_ok = asyncio.run(measure(bare.url, bare.proc.pid, n, namespaces,
                                                         lambda _: auth_json(None), args.deflate))
        finally:
            bare.stop()
    what = f"{','.join(namespaces)}{', permessage-deflate' if args.deflate else ''}"
    print(f"devices: {ok}/{n} (server), {bare_ok}/{n} (bare python-socketio); namespaces {what}")
    print(f"server RSS per idle authenticated device: {per_conn:.1f} KB")
    print(f"bare python-socketio RSS per idle device: {bare_per_conn:.1f} KB")
    print(f"ratio server/bare: {per_conn / max(bare_per_conn, 0.1):.2f}  (target: <= 25 KB per device)")
    emit("bench_connections", [
        Figure(f"RSS per idle authenticated device on {what}, {n:,} devices", per_conn, "KB", bare_per_conn,
               "bare python-socketio", f"{ok}/{n} connected (bare {bare_ok}/{n}); target <= 25 KB"),
    ], doc="docs/memory.md")


if __name__ == "__main__":
    main()
