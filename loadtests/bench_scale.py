"""Multi-node scaling: cross-node chat and presence fan-out on 1, 2 and 3 nodes sharing Redis, with the
CPU each node and Redis spend per 1,000 delivered messages.

    .venv/bin/python -m loadtests.bench_scale [--nodes 1,2,3] [--pairs 10] [--window 2] [--seconds 8]
        [--rate 250] [--watchers 300] [--presence-rate 10] [--rounds 300]

Starts everything on free loopback ports and stops it at the end: a private redis-server, a private
in-memory embedded store (SecantusDB) shared by the nodes, and for each node count N, N `python -m
server` processes with `REDIS_URL` (their own database and Redis prefix per phase; free messages,
`PAIRLY_PRICE_MESSAGE=0`, so the shared store is not what is measured; rate limits raised). Clients
are raw Engine.IO WebSockets (`loadtests._common_presence`) in this process.

- chat: `--pairs` user pairs per node (N x pairs in all, so each node carries the same load whatever
  N: a node's CPU per message depends on how many sends it batches per store write and per wake-up),
  each pair's two users on different nodes whenever N > 1 (user a_i on node i mod N, b_i on node
  (i+1) mod N), sending with `--window` sends in flight for `--seconds` after a warm-up: paced at
  `--rate` sends/s per node, then in closed loops (max rate); delivered = `message:new` arrivals;
- presence, paced: one target per node changing status `--presence-rate` times a second, every
  watcher watching all of them (the same fan-out load per node whatever N);
- presence, rounds: `--watchers` users spread over the N nodes watch one target on node 0, which
  alternates away/online `--rounds` times; delivered = `presence:update` arrivals (each change
  reaches every watcher before the next).

For each: delivered messages/s, p50/p99 from the send (or the status change) to the arrival, server
CPU-seconds per 1,000 delivered messages (utime+stime from /proc/<pid>/stat, summed over the nodes
and per node) and Redis CPU per 1,000 (`INFO cpu`: used_cpu_sys + used_cpu_user). The 1-node run of
the same invocation is the baseline every other line is compared with; the targets are server CPU
per message within 15% of it and Redis CPU per message flat as nodes are added. Client and servers
share the machine, so CPU per message is the figure that counts, throughput is reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis

from loadtests._common_presence import RawClient, open_many
from loadtests.benchjson import Figure, emit
from loadtests.common import ServerProcess, percentile, raise_nofile, start_server, wait_http
from server.auth import mint_token
from server.store import EmbeddedStore
from tests.support.services import RedisServer

SECRET = "bench-secret-0123456789-0123456789-abcdef"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def token(user: str) -> str:
    return mint_token(SECRET, user, ttl_s=3600)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def redis_cpu(client: redis.Redis) -> float:
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


@dataclass
class Meter:
    """CPU of every node and of Redis over the measured window."""

    nodes: list[ServerProcess]
    redis: redis.Redis
    start: list[float] = field(default_factory=list)
    node_cpu: list[float] = field(default_factory=list)
    redis_cpu: float = 0.0

    def begin(self) -> None:
        self.start = [cpu_seconds(n.proc.pid) for n in self.nodes] + [redis_cpu(self.redis)]

    def end(self) -> None:
        now = [cpu_seconds(n.proc.pid) for n in self.nodes] + [redis_cpu(self.redis)]
        deltas = [b - a for a, b in zip(self.start, now, strict=True)]
        self.node_cpu, self.redis_cpu = deltas[:-1], deltas[-1]


@dataclass
class Idle:
    """CPU per second of each node and of Redis with the cluster up and no clients (timers, polls)."""

    nodes: list[float]
    redis: float


async def measure_idle(nodes: list[ServerProcess], client: redis.Redis, seconds: float) -> Idle:
    meter = Meter(nodes, client)
    meter.begin()
    await asyncio.sleep(seconds)
    meter.end()
    return Idle([c / seconds for c in meter.node_cpu], meter.redis_cpu / seconds)


@dataclass
class Result:
    delivered: int
    seconds: float
    latencies: list[float]
    node_cpu: list[float]
    redis_cpu: float
    errors: dict[str, int]
    idle: Idle | None = None

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0

    def per_1000(self, cpu: float) -> float:
        return cpu / self.delivered * 1000 if self.delivered else float("nan")

    @property
    def node_net(self) -> list[float]:
        """Each node's CPU in the window minus what it spends idle in as long (its timers and polls)."""
        idle = self.idle.nodes if self.idle else [0.0] * len(self.node_cpu)
        return [max(0.0, c - i * self.seconds) for c, i in zip(self.node_cpu, idle, strict=True)]

    @property
    def server_per_1000(self) -> float:
        return self.per_1000(sum(self.node_net))

    @property
    def server_gross_per_1000(self) -> float:
        return self.per_1000(sum(self.node_cpu))

    @property
    def redis_per_1000(self) -> float:
        idle = self.idle.redis if self.idle else 0.0
        return self.per_1000(max(0.0, self.redis_cpu - idle * self.seconds))


async def _paced(interval: float, offset: float, stop: asyncio.Event) -> AsyncIterator[None]:
    """One turn per `interval` (the first `offset` later), never bursting to catch up, until `stop`;
    with `interval` 0, turns as fast as the caller takes them (a closed loop)."""
    next_at = time.monotonic() + offset
    while not stop.is_set():
        if interval:
            next_at = max(next_at + interval, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())
        yield


# -- chat -------------------------------------------------------------------------------------------
async def chat_phase(urls: list[str], meter: Meter, pairs: int, window: int, seconds: float,
                     rate: float = 0.0, warmup: float = 2.0) -> Result:
    """Closed loops (`rate` 0: as fast as acks come back), or paced at `rate` sends/s in all."""
    run = uuid.uuid4().hex[:6]
    n = len(urls)
    measuring = False
    delivered = 0
    latencies: list[float] = []
    errors: dict[str, int] = {}

    def on_event(event: str, data: Any, at: float) -> None:
        nonlocal delivered
        if event == "message:new" and measuring:
            delivered += 1
            latencies.append(at - float(data["text"]))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        clients: list[tuple[RawClient, str]] = []
        for i in range(pairs):
            a, b = f"{run}a{i}", f"{run}b{i}"
            ca = RawClient(session, urls[i % n], "/chat")
            cb = RawClient(session, urls[(i + 1) % n], "/chat")
            await ca.open({"token": token(a)})
            await cb.open({"token": token(b)})
            ca.on_event = cb.on_event = on_event
            clients += [(ca, b), (cb, a)]
        stop = asyncio.Event()

        loops = len(clients) * window
        interval = loops / rate if rate > 0 else 0.0

        async def loop(client: RawClient, to: str, offset: float) -> None:
            async for _ in _paced(interval, offset, stop):
                ack = await client.call("message:send", {"to": to, "client_id": uuid.uuid4().hex,
                                                          "text": repr(time.monotonic())})
                if measuring and not ack.get("ok"):
                    code = str(ack.get("error", {}).get("code"))
                    errors[code] = errors.get(code, 0) + 1

        tasks = [asyncio.create_task(loop(c, to, interval * k / loops))
                 for k, (c, to) in enumerate((c, to) for c, to in clients for _ in range(window))]
        await asyncio.sleep(warmup)
        measuring = True
        meter.begin()
        started = time.monotonic()
        await asyncio.sleep(seconds)
        meter.end()
        elapsed = time.monotonic() - started
        measuring = False
        stop.set()
        await asyncio.wait(tasks, timeout=30)
        for client, _ in clients:
            await client.close()
    return Result(delivered, elapsed, latencies, meter.node_cpu, meter.redis_cpu, errors)


# -- presence fan-out -------------------------------------------------------------------------------
async def _watchers(session: aiohttp.ClientSession, urls: list[str], run: str, watchers: int,
                    targets: list[str]) -> list[RawClient]:
    """`watchers` presence clients spread over the nodes, each subscribed to every target."""
    clients: list[RawClient] = []
    for k, url in enumerate(urls):
        users = [f"{run}w{j}" for j in range(k, watchers, len(urls))]
        clients += await open_many(session, url, "/presence", [{"token": token(u)} for u in users])
    sem = asyncio.Semaphore(50)

    async def subscribe(c: RawClient) -> None:
        async with sem:
            ack = await c.call("presence:subscribe", {"users": targets})
            assert ack["ok"], ack

    await asyncio.gather(*(subscribe(c) for c in clients))
    return clients


async def presence_phase(urls: list[str], meter: Meter, watchers: int, rounds: int, warmup: int = 3) -> Result:
    run = uuid.uuid4().hex[:6]
    target_user = f"{run}target"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        clients = await _watchers(session, urls, run, watchers, [target_user])
        target = RawClient(session, urls[0], "/presence")
        latencies: list[float] = []
        delivered = 0
        try:
            # Each change is awaited at every watcher before the next: a round is a full fan-out.
            state: dict[str, Any] = {"status": "", "sent": 0.0, "got": 0, "done": asyncio.Event(), "keep": False}

            def on_event(event: str, data: Any, at: float) -> None:
                nonlocal delivered
                if event == "presence:update" and data["user"] == target_user and data["status"] == state["status"]:
                    state["got"] += 1
                    if state["keep"]:
                        delivered += 1
                        latencies.append(at - state["sent"])
                    if state["got"] == len(clients):
                        state["done"].set()

            for c in clients:
                c.on_event = on_event
            state["status"] = "online"
            await target.open({"token": token(target_user)})
            await asyncio.wait_for(state["done"].wait(), 60)
            started = 0.0
            for r in range(warmup + rounds):
                if r == warmup:
                    meter.begin()
                    started = time.monotonic()
                state.update(status="away" if r % 2 == 0 else "online", got=0, done=asyncio.Event(),
                             keep=r >= warmup, sent=time.monotonic())
                ack = await target.call("presence:set", {"status": state["status"]})
                assert ack["ok"], ack
                await asyncio.wait_for(state["done"].wait(), 60)
            meter.end()
            elapsed = time.monotonic() - started
        finally:
            for c in [target, *clients]:
                await c.close()
    return Result(delivered, elapsed, latencies, meter.node_cpu, meter.redis_cpu, {})


async def presence_paced_phase(urls: list[str], meter: Meter, watchers: int, rate: float, seconds: float,
                               warmup: float = 2.0) -> Result:
    """One target per node, each changing status `rate` times a second; every watcher (spread over the
    nodes) watches every target. Each node then publishes `rate` changes/s and delivers `rate` x
    watchers updates/s whatever the node count: the same load per node at every N."""
    run = uuid.uuid4().hex[:6]
    n = len(urls)
    targets = [f"{run}t{k}" for k in range(n)]
    sent: dict[str, float] = {}
    delivered = 0
    measuring = False
    latencies: list[float] = []

    def on_event(event: str, data: Any, at: float) -> None:
        nonlocal delivered
        if event == "presence:update" and measuring and data.get("user") in sent:
            delivered += 1
            latencies.append(at - sent[data["user"]])

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        clients = await _watchers(session, urls, run, watchers, targets)
        for c in clients:
            c.on_event = on_event
        owners = [RawClient(session, urls[k], "/presence") for k in range(n)]
        for owner, user in zip(owners, targets, strict=True):
            await owner.open({"token": token(user)})
        stop = asyncio.Event()

        async def changes(owner: RawClient, user: str, offset: float) -> None:
            flip = 0
            async for _ in _paced(1.0 / rate, offset, stop):
                flip += 1
                sent[user] = time.monotonic()
                ack = await owner.call("presence:set", {"status": "away" if flip % 2 else "online"})
                assert ack["ok"], ack

        tasks = [asyncio.create_task(changes(o, u, k / (rate * n))) for k, (o, u) in enumerate(zip(owners, targets,
                                                                                                strict=True))]
        try:
            await asyncio.sleep(warmup)
            measuring = True
            meter.begin()
            started = time.monotonic()
            await asyncio.sleep(seconds)
            meter.end()
            elapsed = time.monotonic() - started
            measuring = False
        finally:
            stop.set()
            await asyncio.wait(tasks, timeout=30)
            for c in [*owners, *clients]:
                await c.close()
    return Result(delivered, elapsed, latencies, meter.node_cpu, meter.redis_cpu, {})


# -- driver -----------------------------------------------------------------------------------------
def _node_env(store_url: str, redis_url: str, tag: str) -> dict[str, str]:
    return {
        "PAIRLY_JWT_SECRET": SECRET, "PAIRLY_LOG_LEVEL": "warning", "MONGO_URL": store_url, "MONGO_DB": f"scale_{tag}",
        "REDIS_URL": redis_url, "REDIS_PREFIX": f"scale{tag}", "PAIRLY_PRICE_MESSAGE": "0",
        "PAIRLY_RATE_LIMITS": "*=1000000/1,message:send=1000000/1,presence:subscribe=1000000/1",
        "PAIRLY_MAX_TRANSPORTS_PER_IP": "1000000", "PAIRLY_MAX_CONNECTIONS_PER_USER": "100",
    }


@contextlib.contextmanager
def _cluster(n: int, store_url: str, redis_url: str) -> Iterator[list[ServerProcess]]:
    tag = uuid.uuid4().hex[:8]
    nodes = [start_server([sys.executable, "-m", "server"], {**_node_env(store_url, redis_url, tag),
                                                              "PAIRLY_NODE_ID": f"n{k}"}) for k in range(n)]
    try:
        for node in nodes:
            wait_http(node.url + "/readyz", 90)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def _line(label: str, r: Result, base: Result | None) -> str:
    def ratio(value: float, ref: float) -> str:
        return f" ({value / ref:.2f}x)" if base is not None and ref > 0 else " (baseline)"

    per_node = ", ".join(f"{r.per_1000(c):.3f}" for c in r.node_net)
    errors = f"  errors={r.errors}" if r.errors else ""
    return (f"{label:<20} {r.rate:7.0f} msg/s  p50 {percentile(r.latencies, 50) * 1000:6.1f} ms  "
            f"p99 {percentile(r.latencies, 99) * 1000:6.1f} ms\n"
            f"{'':<20} server CPU-s/1k {r.server_per_1000:.3f}"
            f"{ratio(r.server_per_1000, base.server_per_1000 if base else 0)} [per node {per_node}; "
            f"with idle work {r.server_gross_per_1000:.3f}]  Redis CPU-s/1k {r.redis_per_1000:.4f}"
            f"{ratio(r.redis_per_1000, base.redis_per_1000 if base else 0)}{errors}")


def _verdict(what: str, results: dict[int, Result], key: Callable[[Result], float], limit: float) -> str:
    base = results[min(results)]
    worst = max(key(r) / key(base) for r in results.values()) if key(base) > 0 else float("nan")
    ok = "met" if worst <= 1 + limit else "NOT met"
    return f"{what}: worst {worst:.2f}x the 1-node figure (target <= {1 + limit:.2f}x): {ok}"


def _figures(paced: dict[int, Result], chat: dict[int, Result], presence_paced: dict[int, Result],
             presence: dict[int, Result]) -> list[Figure]:
    """Per node count, CPU per 1,000 delivered messages against the smallest node count of the run."""
    figures = []
    for what, results in (("cross-node chat, paced", paced), ("cross-node chat, max rate", chat),
                          ("presence fan-out, paced", presence_paced), ("presence fan-out, rounds", presence)):
        if not results:
            continue
        first = min(results)
        base = results[first]
        ref = f"{first} node(s), same run"
        for n, r in sorted(results.items()):
            figures += [
                Figure(f"{what}, {n} node(s): server CPU-s per 1,000 delivered", r.server_per_1000, "CPU-s",
                       None if n == first else base.server_per_1000, "" if n == first else ref),
                Figure(f"{what}, {n} node(s): Redis CPU-s per 1,000 delivered", r.redis_per_1000, "CPU-s",
                       None if n == first else base.redis_per_1000, "" if n == first else ref),
                Figure(f"{what}, {n} node(s): delivered", r.rate, "msg/s", None if n == first else base.rate,
                       "" if n == first else ref, f"p99 {percentile(r.latencies, 99) * 1000:.1f} ms"),
            ]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--pairs", type=int, default=10, help="user pairs per node (the load grows with the nodes)")
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--rate", type=float, default=250.0,
                        help="paced chat: sends/s per node (the CPU comparison); 0 skips the paced phase")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--watchers", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--presence-rate", type=float, default=10.0,
                        help="paced presence: status changes/s of each node's target; 0 skips the phase")
    parser.add_argument("--idle-seconds", type=float, default=5.0,
                        help="CPU of the idle cluster, measured first and taken off the figures")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    counts = sorted({int(x) for x in args.nodes.split(",")})
    raise_nofile()
    store = EmbeddedStore(":memory:")
    store.start()
    redis_server = RedisServer()
    rc = redis.Redis.from_url(redis_server.url)
    chat: dict[int, Result] = {}
    paced: dict[int, Result] = {}
    presence: dict[int, Result] = {}
    presence_paced: dict[int, Result] = {}
    try:
        print(f"nodes={args.nodes} pairs={args.pairs} window={args.window} rate={args.rate:g}/node "
              f"seconds={args.seconds} watchers={args.watchers} rounds={args.rounds} cpus={os.cpu_count()}", flush=True)
        for n in counts:
            with _cluster(n, store.url, redis_server.url) as nodes:
                urls = [node.url for node in nodes]
                idle = asyncio.run(measure_idle(nodes, rc, args.idle_seconds))
                print(f"idle, {n} node(s): server {', '.join(f'{c * 100:.1f}%' for c in idle.nodes)} of a core, "
                      f"Redis {idle.redis * 100:.1f}% (taken off the figures below)", flush=True)
                if args.rate > 0:
                    paced[n] = asyncio.run(chat_phase(urls, Meter(nodes, rc), args.pairs * n, args.window,
                                                      args.seconds, rate=args.rate * n))
                    paced[n].idle = idle
                    print(_line(f"chat paced, {n} node(s)", paced[n],
                                paced.get(counts[0]) if n != counts[0] else None), flush=True)
                chat[n] = asyncio.run(chat_phase(urls, Meter(nodes, rc), args.pairs * n, args.window, args.seconds))
                chat[n].idle = idle
                print(_line(f"chat max, {n} node(s)", chat[n], chat.get(counts[0]) if n != counts[0] else None),
                      flush=True)
                if args.presence_rate > 0:
                    presence_paced[n] = asyncio.run(presence_paced_phase(urls, Meter(nodes, rc), args.watchers,
                                                                         args.presence_rate, args.seconds))
                    presence_paced[n].idle = idle
                    print(_line(f"presence paced, {n} node(s)", presence_paced[n],
                                presence_paced.get(counts[0]) if n != counts[0] else None), flush=True)
                presence[n] = asyncio.run(presence_phase(urls, Meter(nodes, rc), args.watchers, args.rounds))
                presence[n].idle = idle
                print(_line(f"presence, {n} node(s)", presence[n],
                            presence.get(counts[0]) if n != counts[0] else None), flush=True)
    finally:
        rc.close()
        redis_server.stop()
        store.stop()
    if len(counts) > 1:
        print()
        for what, results in (("chat paced", paced), ("chat max", chat), ("presence paced", presence_paced),
                              ("presence rounds", presence)):
            if not results:
                continue
            print(_verdict(f"{what} server CPU per message", results, lambda r: r.server_per_1000, 0.15))
            print(_verdict(f"{what} Redis CPU per message", results, lambda r: r.redis_per_1000, 0.15))
    if args.json:
        print(json.dumps({what: {n: {"rate": r.rate, "p99_ms": percentile(r.latencies, 99) * 1000,
                                     "server_cpu_per_1000": r.server_per_1000, "redis_cpu_per_1000": r.redis_per_1000,
                                     "server_cpu_per_1000_with_idle": r.server_gross_per_1000,
                                     "node_cpu_per_1000": [r.per_1000(c) for c in r.node_net]}
                                 for n, r in results.items()}
                          for what, results in (("chat_paced", paced), ("chat", chat),
                                                ("presence_paced", presence_paced), ("presence", presence))}))
    emit("bench_scale", _figures(paced, chat, presence_paced, presence), doc="docs/scaling.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
