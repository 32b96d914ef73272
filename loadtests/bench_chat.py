"""Metered chat throughput and latency, next to free messages and a bare python-socketio relay, all
measured in the same run; then a 100,000-message soak.

    .venv/bin/python -m loadtests.bench_chat [--pairs 25] [--window 4] [--seconds 8] [--soak 100000]

Starts its own servers on free loopback ports, each `python -m server` on the embedded defaults (its
own on-disk SecantusDB under a temporary PAIRLY_DATA_DIR, as `make run` has) with rate limits and
signup credits raised for the bench, plus `loadtests.bare_server` (a bare python-socketio AsyncServer
on aiohttp + uvloop: ack, then emit to the recipient's room). For each phase, `--pairs` fresh user
pairs connect with python-socketio clients; both users of a pair send to each other in closed loops
with `--window` sends in flight each (or paced, at a fixed total rate).

Phases (bounded: warm-up plus `--seconds` each, the soak until `--soak` messages are delivered):
1. bare relay, max → the baseline;
2. free messages (`PAIRLY_PRICE_MESSAGE=0`: durable, idempotent, no charge), max;
3. metered messages (charge + persist + ack + deliver), max;
4. metered messages to creators (the charge split between the creator's earnings and the platform), max;
5. metered messages paced at 500 msg/s → p50/p99 send→deliver latency (the target: p99 < 100 ms);
6. soak: metered messages in closed loops until `--soak` are delivered; the rate of the last tenth
   against the first (the store must stay fast as it fills).
Latency is measured from just before the send call to the `message:new` (or `relay`) event at the
recipient's client, in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import socketio

from loadtests.benchjson import Figure, emit
from loadtests.common import bare_server_cmd, percentile, raise_nofile, start_server, wait_http
from server.auth import mint_token

SECRET = "bench-secret-0123456789-0123456789-abcdef"
NS = "/chat"


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    keep_arrivals: bool = False
    target: int = 0
    reached: asyncio.Event = field(default_factory=asyncio.Event)
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
    auth: Callable[[str], dict[str, Any]]
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
            now = time.perf_counter()
            stats.delivered += 1
            stats.latencies.append(now - float(data["text"]))
            if stats.keep_arrivals:
                stats.arrivals.append(now)
            if stats.target and stats.delivered >= stats.target:
                stats.reached.set()

    sio.on(side.event, on_message, namespace=NS)
    await sio.connect(side.url, namespaces=[NS], auth=side.auth(user), transports=["websocket"], wait_timeout=20)
    return sio


async def run_phase(side: Side, pairs: int, window: int, seconds: float, rate: float | None,
                    warmup: float = 2.0, soak: int = 0) -> dict[str, Any]:
    """Closed loops (rate None) or paced sends at `rate` messages/s in total; returns the figures.

    With `soak`, runs until that many messages are delivered and reports the first and last tenth's rates.
    """
    stats = Stats(keep_arrivals=soak > 0, target=soak)
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
    if soak:
        await stats.reached.wait()
    else:
        await asyncio.sleep(seconds)
    stats.measuring = False
    elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.wait(tasks, timeout=30)
    for sio in clients.values():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sio.disconnect(), 2)
    lat = stats.latencies
    tenth = {}
    if soak and len(stats.arrivals) >= 20:
        n = len(stats.arrivals) // 10
        first = stats.arrivals[:n]
        last = stats.arrivals[-n:]
        tenth = {"first_tenth": n / max(first[-1] - started, 1e-9),
                 "last_tenth": n / max(last[-1] - last[0], 1e-9)}
    return {
        **tenth,
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


def _figures(args: argparse.Namespace, bare: dict[str, Any], free: dict[str, Any], metered: dict[str, Any],
             creators: dict[str, Any], paced: dict[str, Any], soak: dict[str, Any] | None) -> list[Figure]:
    relay = "bare python-socketio relay"
    setup = f"{args.pairs} pairs, {args.window} in flight per sender"
    figures = [
        Figure("chat, free messages, max rate", free["rate"], "msg/s", bare["rate"], relay, setup),
        Figure("chat, metered messages, max rate", metered["rate"], "msg/s", bare["rate"], relay,
               f"metered / free {_ratio(metered, free):.2f} (target >= 0.8)"),
        Figure("chat, metered paying creators, max rate", creators["rate"], "msg/s", bare["rate"], relay),
        Figure("chat p99 at max rate: free", free["p99_ms"], "ms", bare["p99_ms"], relay),
        Figure("chat p99 at max rate: metered", metered["p99_ms"], "ms", bare["p99_ms"], relay),
        Figure("chat p99 at max rate: paying creators", creators["p99_ms"], "ms", bare["p99_ms"], relay),
        Figure("metered chat at 500 msg/s, p50", paced["p50_ms"], "ms"),
        Figure("metered chat at 500 msg/s, p99", paced["p99_ms"], "ms", note="target < 100 ms"),
    ]
    if soak is not None:
        first, last = soak.get("first_tenth", 0.0), soak.get("last_tenth", 0.0)
        figures += [
            Figure(f"metered soak, {args.soak:,} messages", soak["rate"], "msg/s"),
            Figure("metered soak, last tenth / first tenth", last / first if first else float("nan"), "x",
                   note=f"{last:.0f} vs {first:.0f} msg/s; target >= 0.8"),
        ]
    return figures


def _server_env(data_dir: str, price: int) -> dict[str, str]:
    """`make run`'s embedded defaults, with the per-user limits a benchmark needs raised."""
    return {
        "PAIRLY_DATA_DIR": data_dir, "MONGO_URL": "", "REDIS_URL": "", "PAIRLY_JWT_SECRET": SECRET,
        "PAIRLY_LOG_LEVEL": "warning", "PAIRLY_RATE_LIMITS": "*=1000000/1,message:send=1000000/1",
        "PAIRLY_SIGNUP_BONUS": "100000000", "PAIRLY_MAX_CONNECTIONS_PER_USER": "100",
        "PAIRLY_MAX_TRANSPORTS_PER_IP": "1000000",
        "PAIRLY_PRICE_MESSAGE": str(price),
    }


def _ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
    return a["rate"] / b["rate"] if b["rate"] else float("nan")


async def main_async(args: argparse.Namespace) -> int:
    dirs = [tempfile.mkdtemp(prefix="pairly-bench-") for _ in range(2)]
    metered = start_server([sys.executable, "-m", "server"], _server_env(dirs[0], 1))
    free = start_server([sys.executable, "-m", "server"], _server_env(dirs[1], 0)) if not args.only_chat else None
    bare = start_server(bare_server_cmd(), {}) if not args.only_chat else None

    def side(url: str, roles: list[str], name: str) -> Side:
        return Side(name, url, lambda u: {"token": mint_token(SECRET, u, roles=roles, ttl_s=3600)}, "message:new",
                    _chat_send)

    try:
        wait_http(metered.url + "/readyz", 90)
        m_side = side(metered.url, ["user"], "metered")
        c_side = side(metered.url, ["user", "creator"], "creators")
        print(f"pairs={args.pairs} window={args.window} seconds={args.seconds} cpus={os.cpu_count()}", flush=True)
        if args.only_chat:
            print(_line("metered chat (max)", await run_phase(m_side, args.pairs, args.window, args.seconds, None)))
            return 0
        assert free is not None and bare is not None
        wait_http(free.url + "/readyz", 90)
        wait_http(bare.url + "/", 30)
        bare_side = Side("bare", bare.url, lambda u: {"user": u}, "relay", _bare_send)
        bare_max = await run_phase(bare_side, args.pairs, args.window, args.seconds, None)
        print(_line("bare python-socketio relay (max)", bare_max), flush=True)
        free_max = await run_phase(side(free.url, ["user"], "free"), args.pairs, args.window, args.seconds, None)
        print(_line("free messages (max)", free_max), flush=True)
        free.stop()
        chat_max = await run_phase(m_side, args.pairs, args.window, args.seconds, None)
        print(_line("metered messages (max)", chat_max), flush=True)
        creators_max = await run_phase(c_side, args.pairs, args.window, args.seconds, None)
        print(_line("metered, paying creators (max)", creators_max), flush=True)
        # A longer warm-up: the max phases leave a backlog (views, events, the store's checkpoint)
        # that is not the steady state this phase measures.
        paced = await run_phase(m_side, args.pairs, args.window, args.seconds, 500.0, warmup=5.0)
        print(_line("metered @ 500/s", paced), flush=True)
        print(f"\nmetered / free: {_ratio(chat_max, free_max):.2f} (target >= 0.8)   "
              f"metered / bare: {_ratio(chat_max, bare_max):.2f}   "
              f"creators / free: {_ratio(creators_max, free_max):.2f}\n"
              f"metered max: {chat_max['rate']:.0f} msg/s (target >= 1500)   "
              f"p99 at 500/s: {paced['p99_ms']:.1f} ms (target < 100 ms)", flush=True)
        soak: dict[str, Any] | None = None
        if args.soak:
            soak = await run_phase(m_side, args.pairs, args.window, 0, None, soak=args.soak)
            print(_line(f"soak ({args.soak} metered)", soak), flush=True)
            ratio = soak["last_tenth"] / soak["first_tenth"] if soak.get("first_tenth") else float("nan")
            print(f"soak: first tenth {soak.get('first_tenth', 0):.0f} msg/s, last tenth "
                  f"{soak.get('last_tenth', 0):.0f} msg/s, ratio {ratio:.2f} (target >= 0.8)", flush=True)
        emit("bench_chat", _figures(args, bare_max, free_max, chat_max, creators_max, paced, soak),
             doc="docs/chat.md#benchmark")
    finally:
        for proc in (metered, free, bare):
            if proc is not None:
                proc.stop()
        import shutil

        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=25)
    parser.add_argument("--window", type=int, default=4, help="sends in flight per sender in the max phases")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--soak", type=int, default=100_000, help="messages in the soak phase (0 = skip)")
    parser.add_argument("--only-chat", action="store_true", help="metered max phase only (for profiling)")
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
