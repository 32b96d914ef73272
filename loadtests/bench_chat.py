"""Metered chat throughput and latency, next to a bare python-socketio relay measured in the same run.

    .venv/bin/python -m loadtests.bench_chat [--pairs 25] [--window 4] [--seconds 8]

Starts its own servers on free loopback ports: `python -m server` on a private in-memory embedded
store (SecantusDB, the embedded default's engine) with rate limits and signup credits raised for the
bench, and `loadtests.bare_server` (a bare python-socketio AsyncServer on aiohttp + uvloop: ack, then
emit to the recipient's room). For each, `--pairs` user pairs connect with python-socketio clients;
both users of a pair send to each other in closed loops with `--window` sends in flight each.

Phases (bounded: warm-up plus `--seconds` each, then everything stops):
1. bare relay at full speed → the baseline rate;
2. metered chat at full speed (charge + persist + ack + deliver) → messages/s, ratio to baseline;
3. metered chat paced at half the baseline rate → p50/p99 send→deliver latency (the target);
4. metered chat paced at half its own maximum → latency at a rate it sustains;
5. bare relay paced at half the baseline rate → its latency, for reference.
Latency is measured from just before the send call to the `message:new` (or `relay`) event at the
recipient's client, in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import socketio

from loadtests.common import bare_server_cmd, percentile, raise_nofile, start_server, wait_http
from server.auth import mint_token
from server.store import EmbeddedStore

SECRET = "bench-secret-0123456789-0123456789-abcdef"
NS = "/chat"


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    delivered: int = 0
    acked: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    measuring: bool = False

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


@dataclass
class Side:
    """One system under test: how to connect a user and how to send one message."""

    name: str
    url: str
    auth: Callable[[str], dict[str, str]]
    event: str
    send: Callable[[socketio.AsyncClient, str, str], Awaitable[str | None]]


async def _chat_send(sio: socketio.AsyncClient, to: str, stamp: str) -> str | None:
    ack = await sio.call("message:send", {"to": to, "client_id": uuid.uuid4().hex, "text": stamp},
                         namespace=NS, timeout=30)
    return None if ack.get("ok") else str(ack["error"]["code"])


async def _bare_send(sio: socketio.AsyncClient, to: str, stamp: str) -> str | None:
    ack = await sio.call("relay", {"to": to, "text": stamp}, namespace=NS, timeout=30)
    return None if ack.get("ok") else "error"


async def _connect(side: Side, user: str, stats: Stats) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)

    async def on_message(data: Any) -> None:
        if stats.measuring:
            stats.delivered += 1
            stats.latencies.append(time.perf_counter() - float(data["text"]))

    sio.on(side.event, on_message, namespace=NS)
    await sio.connect(side.url, namespaces=[NS], auth=side.auth(user), transports=["websocket"], wait_timeout=20)
    return sio


async def run_phase(side: Side, pairs: int, window: int, seconds: float, rate: float | None,
                    warmup: float = 2.0) -> dict[str, Any]:
    """Closed loops (rate None) or paced sends at `rate` messages/s in total; returns the figures."""
    stats = Stats()
    run = uuid.uuid4().hex[:6]
    users = [(f"{run}a{i}", f"{run}b{i}") for i in range(pairs)]
    clients: dict[str, socketio.AsyncClient] = {}
    for a, b in users:
        clients[a] = await _connect(side, a, stats)
        clients[b] = await _connect(side, b, stats)
    senders = [(clients[a], b) for a, b in users] + [(clients[b], a) for a, b in users]
    stop = asyncio.Event()

    async def closed_loop(sio: socketio.AsyncClient, to: str) -> None:
        while not stop.is_set():
            error = await side.send(sio, to, repr(time.perf_counter()))
            if stats.measuring:
                stats.acked += 1
                if error:
                    stats.error(error)

    async def paced(sio: socketio.AsyncClient, to: str, interval: float, offset: float) -> None:
        inflight: set[asyncio.Task[None]] = set()

        async def one() -> None:
            error = await side.send(sio, to, repr(time.perf_counter()))
            if stats.measuring:
                stats.acked += 1
                if error:
                    stats.error(error)

        next_at = time.perf_counter() + offset
        while not stop.is_set():
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at += interval
            if len(inflight) < 64:
                task = asyncio.create_task(one())
                inflight.add(task)
                task.add_done_callback(inflight.discard)
        if inflight:
            await asyncio.wait(inflight, timeout=10)

    tasks: list[asyncio.Task[None]] = []
    if rate is None:
        for sio, to in senders:
            tasks += [asyncio.create_task(closed_loop(sio, to)) for _ in range(window)]
    else:
        interval = len(senders) / rate
        tasks = [asyncio.create_task(paced(sio, to, interval, interval * n / len(senders)))
                 for n, (sio, to) in enumerate(senders)]
    await asyncio.sleep(warmup)
    stats.measuring = True
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    stats.measuring = False
    elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.wait(tasks, timeout=30)
    for sio in clients.values():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sio.disconnect(), 2)
    lat = stats.latencies
    return {
        "rate": stats.delivered / elapsed,
        "acked_rate": stats.acked / elapsed,
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "errors": dict(stats.errors),
        "delivered": stats.delivered,
    }


def _line(label: str, r: dict[str, Any]) -> str:
    errors = f" errors={r['errors']}" if r["errors"] else ""
    return (f"{label:<34} {r['rate']:8.0f} msg/s delivered ({r['acked_rate']:.0f} acks/s)  "
            f"p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms{errors}")


async def main_async(args: argparse.Namespace) -> int:
    store = EmbeddedStore(":memory:")
    store.start()
    chat_env = {
        "MONGO_URL": store.url, "MONGO_DB": "bench", "PAIRLY_JWT_SECRET": SECRET, "PAIRLY_LOG_LEVEL": "warning",
        "PAIRLY_RATE_LIMITS": "*=1000000/1,message:send=1000000/1", "PAIRLY_SIGNUP_BONUS": "100000000",
        "PAIRLY_MAX_CONNECTIONS_PER_USER": "100",
    }
    chat = start_server([sys.executable, "-m", "server"], chat_env)
    bare = start_server(bare_server_cmd(), {})
    try:
        wait_http(chat.url + "/readyz", 60)
        wait_http(bare.url + "/", 30)
        chat_side = Side("chat", chat.url, lambda u: {"token": mint_token(SECRET, u, ttl_s=3600)}, "message:new",
                         _chat_send)
        bare_side = Side("bare", bare.url, lambda u: {"user": u}, "relay", _bare_send)
        print(f"pairs={args.pairs} window={args.window} seconds={args.seconds} cpus={os.cpu_count()}", flush=True)
        if args.only_chat:
            print(_line("metered chat (max)", await run_phase(chat_side, args.pairs, args.window, args.seconds, None)))
            return 0
        bare_max = await run_phase(bare_side, args.pairs, args.window, args.seconds, None)
        print(_line("bare python-socketio relay (max)", bare_max), flush=True)
        chat_max = await run_phase(chat_side, args.pairs, args.window, args.seconds, None)
        print(_line("metered chat (max)", chat_max), flush=True)
        half = bare_max["rate"] / 2
        chat_half = await run_phase(chat_side, args.pairs, args.window, args.seconds, half)
        print(_line(f"metered chat @ {half:.0f}/s (half bare)", chat_half), flush=True)
        own_half = chat_max["rate"] / 2
        chat_own = await run_phase(chat_side, args.pairs, args.window, args.seconds, own_half)
        print(_line(f"metered chat @ {own_half:.0f}/s (half its max)", chat_own), flush=True)
        bare_half = await run_phase(bare_side, args.pairs, args.window, args.seconds, half)
        print(_line(f"bare relay @ {half:.0f}/s", bare_half), flush=True)
        ratio = chat_max["rate"] / bare_max["rate"] if bare_max["rate"] else float("nan")
        print(f"\nratio metered/bare: {ratio:.0%} (target >= 50%)\n"
              f"p99 at half the bare rate: {chat_half['p99_ms']:.1f} ms (target < 50 ms); "
              f"at half its own max: {chat_own['p99_ms']:.1f} ms", flush=True)
    finally:
        chat.stop()
        bare.stop()
        store.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=25)
    parser.add_argument("--window", type=int, default=4, help="sends in flight per sender in the max phases")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--only-chat", action="store_true", help="skip the baseline (for profiling)")
    args = parser.parse_args()
    raise_nofile()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
