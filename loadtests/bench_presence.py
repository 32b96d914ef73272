"""Presence: one status change fanned out to 1,000 watchers, and connect/disconnect churn, each next to
a bare python-socketio server measured in the same run.

    .venv/bin/python -m loadtests.bench_presence [--watchers 1000] [--rounds 30] [--churn-seconds 8]

Starts everything it uses on free loopback ports and stops it at the end: a private in-memory
embedded store (SecantusDB), a private redis-server (for the two-node phase), `python -m server`
processes (rate limits raised for the bench; presence settings at their defaults) and
`loadtests.bare_server` (a bare python-socketio AsyncServer on aiohttp + uvloop). Clients are raw
Engine.IO WebSockets (`loadtests._common_presence`) in this process.

Phases (bounded by counts; every wait has a timeout):
1. fan-out, bare: 1,000 clients in one room; a client's `relay` makes the server emit to the room;
2. fan-out, presence, one node: 1,000 users subscribe to `target`; `target` alternates
   `presence:set` away/online; each change is one `presence:update` to all 1,000;
3. fan-out, presence, two nodes + Redis: the watchers split over both nodes, `target` on node A;
   latency is from just before the set (or relay) call to the event's arrival at each watcher;
4. churn, bare and presence: workers connect a namespace and disconnect in closed loops for
   `--churn-seconds`; the presence run cycles through a pool of users watched by 20 subscribers
   (so changes fan out), then checks that no user is left online once the grace window is over.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import uvloop

from loadtests._common_presence import RawClient, open_many
from loadtests.benchjson import Figure, emit
from loadtests.common import ServerProcess, percentile, raise_nofile, start_server, wait_http
from server.auth import mint_token
from server.store import EmbeddedStore
from tests.support.services import RedisServer

SECRET = "bench-secret-0123456789-0123456789-abcdef"
PRESENCE = "/presence"
BARE_NS = "/chat"  # the bare server's namespace
TARGET = "target"


def token(user: str) -> str:
    return mint_token(SECRET, user, ttl_s=3600)


def _server_env(mongo_url: str, db: str, **extra: str) -> dict[str, str]:
    return {
        "PAIRLY_JWT_SECRET": SECRET,
        "PAIRLY_LOG_LEVEL": "warning",
        "PAIRLY_MAX_TRANSPORTS_PER_IP": "1000000",  # every bench client comes from 127.0.0.1
        "MONGO_URL": mongo_url,
        "MONGO_DB": db,
        # The bench raises per-user limits only; presence bounds stay at their defaults.
        "PAIRLY_RATE_LIMITS": "*=10000/1,presence:subscribe=10000/1",
        **extra,
    }


@contextlib.contextmanager
def _servers(*procs: ServerProcess) -> Any:
    try:
        yield procs
    finally:
        for proc in procs:
            proc.stop()


# -- fan-out ----------------------------------------------------------------------------------------
@dataclass
class Round:
    match: Callable[[str, Any], bool] = lambda _e, _d: False
    sent_at: float = 0.0
    expected: int = 0
    got: int = 0
    latencies: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def on_event(self, event: str, data: Any, at: float) -> None:
        if self.match(event, data):
            self.got += 1
            self.latencies.append(at - self.sent_at)
            if self.got == self.expected:
                self.done.set()


async def _rounds(trigger: Callable[[int], Any], match: Callable[[int], Callable[[str, Any], bool]],
                  watchers: list[RawClient], rounds: int, warmup: int = 3) -> list[float]:
    samples: list[float] = []
    for r in range(warmup + rounds):
        current = Round(match=match(r), expected=len(watchers))
        for w in watchers:
            w.on_event = current.on_event
        current.sent_at = time.monotonic()
        await trigger(r)
        await asyncio.wait_for(current.done.wait(), 30)
        if r >= warmup:
            samples.extend(current.latencies)
        await asyncio.sleep(0.05)
    return samples


async def fanout_bare(url: str, n: int, rounds: int) -> list[float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        watchers = await open_many(session, url, BARE_NS, [{"user": "room"}] * n)
        trigger = RawClient(session, url, BARE_NS)
        await trigger.open({"user": "trigger"})
        try:
            return await _rounds(
                lambda r: trigger.call("relay", {"to": "room", "r": r}),
                lambda r: lambda e, d: e == "relay" and d.get("r") == r,
                watchers, rounds)
        finally:
            for c in [trigger, *watchers]:
                await c.close()


async def fanout_presence(target_url: str, watcher_urls: list[str], n: int, rounds: int) -> list[float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        watchers: list[RawClient] = []
        for i, url in enumerate(watcher_urls):
            users = [f"w{j}" for j in range(i, n, len(watcher_urls))]
            watchers += await open_many(session, url, PRESENCE, [{"token": token(u)} for u in users])
        sem = asyncio.Semaphore(50)

        async def subscribe(w: RawClient) -> None:
            async with sem:
                ack = await w.call("presence:subscribe", {"users": [TARGET]})
                assert ack["ok"], ack

        await asyncio.gather(*(subscribe(w) for w in watchers))
        await asyncio.sleep(0.5)  # Redis room subscriptions are asynchronous to the acks
        target = RawClient(session, target_url, PRESENCE)
        try:
            online = Round(match=lambda e, d: e == "presence:update" and d["status"] == "online", expected=n)
            for w in watchers:
                w.on_event = online.on_event
            await target.open({"token": token(TARGET)})
            await asyncio.wait_for(online.done.wait(), 30)

            def status(r: int) -> str:
                return "away" if r % 2 == 0 else "online"

            async def trigger(r: int) -> None:
                ack = await target.call("presence:set", {"status": status(r)})
                assert ack["ok"], ack

            return await _rounds(
                trigger,
                lambda r: lambda e, d: e == "presence:update" and d["user"] == TARGET and d["status"] == status(r),
                watchers, rounds)
        finally:
            for c in [target, *watchers]:
                await c.close()


# -- churn ------------------------------------------------------------------------------------------
async def churn(url: str, namespace: str, auth: Callable[[int], dict[str, Any]], seconds: float,
                concurrency: int) -> tuple[float, int]:
    """(connects + disconnects per second, failures)."""
    counter = itertools.count()
    ops = 0
    failures = 0
    stop_at = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker() -> None:
            nonlocal ops, failures
            while time.monotonic() < stop_at:
                client = RawClient(session, url, namespace)
                try:
                    await client.open(auth(next(counter)))
                    ops += 1
                    await client.close()
                    ops += 1
                except Exception:
                    failures += 1
                    await client.close()

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return ops / elapsed, failures


async def churn_presence(url: str, seconds: float, concurrency: int, pool: int) -> tuple[float, int, int]:
    """Churn through `pool` users watched by 20 subscribers; (ops/s, failures, users left online)."""
    users = [f"c{i}" for i in range(pool)]
    tokens = [token(u) for u in users]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        watchers = await open_many(session, url, PRESENCE, [{"token": token(f"cw{i}")} for i in range(20)])
        updates = 0

        def count(event: str, data: Any, at: float) -> None:
            nonlocal updates
            updates += event == "presence:update"

        for w in watchers:
            w.on_event = count
            for start in range(0, pool, 500):
                ack = await w.call("presence:subscribe", {"users": users[start:start + 500]})
                assert ack["ok"], ack
        rate, failures = await churn(url, PRESENCE, lambda i: {"token": tokens[i % pool]}, seconds, concurrency)
        await asyncio.sleep(5 + 2)  # the default grace window, and a sweep
        query = urllib.parse.urlencode({"users": ",".join(users[:500])})
        async with session.get(f"{url}/api/presence?{query}",
                               headers={"Authorization": f"Bearer {token('auditor')}"}) as resp:
            body = json.loads(await resp.text())
        left_online = sum(p["status"] != "offline" for p in body["presence"])
        print(f"  (churn watchers received {updates} presence:update events)")
        for w in watchers:
            await w.close()
    return rate, failures, left_online


# -- main -------------------------------------------------------------------------------------------
# CPython's default young-generation threshold (700 allocations) runs collections in the middle of a
# 1,000-recipient emit; the in-flight tasks it promotes trigger a full collection every few rounds
# (~130 ms with 1,000 connections alive) on ANY python-socketio server. The second variant runs both
# servers with a raised threshold, to show what that setting (a process-wide choice) buys.
GC_TUNED = "import gc; gc.set_threshold(100_000, 50, 100); import runpy; runpy.run_module({!r}, run_name='__main__')"


def _cmd(module: str, tuned: bool) -> list[str]:
    return [sys.executable, "-c", GC_TUNED.format(module)] if tuned else [sys.executable, "-m", module]


def _fmt(samples: list[float]) -> str:
    return (f"p50 {percentile(samples, 50) * 1000:6.1f} ms   p99 {percentile(samples, 99) * 1000:6.1f} ms"
            f"   ({len(samples)} deliveries)")


def _fanout_variant(store: EmbeddedStore, redis: RedisServer, n: int, rounds: int,
                    tuned: bool) -> dict[str, list[float]]:
    tag = "gc" if tuned else "std"
    bare = start_server(_cmd("loadtests.bare_server", tuned), {})
    with _servers(bare):
        wait_http(bare.url + "/", 30, accept_any_status=True)
        base = asyncio.run(fanout_bare(bare.url, n, rounds))

    one = start_server(_cmd("server", tuned), _server_env(store.url, f"bench_one_{tag}"))
    with _servers(one):
        wait_http(one.url + "/readyz", 60)
        single = asyncio.run(fanout_presence(one.url, [one.url], n, rounds))

    multi_env = _server_env(store.url, f"bench_two_{tag}", REDIS_URL=redis.url, REDIS_PREFIX=f"bench2{tag}")
    node_a = start_server(_cmd("server", tuned), {**multi_env, "PAIRLY_NODE_ID": "A"})
    node_b = start_server(_cmd("server", tuned), {**multi_env, "PAIRLY_NODE_ID": "B"})
    with _servers(node_a, node_b):
        wait_http(node_a.url + "/readyz", 60)
        wait_http(node_b.url + "/readyz", 60)
        double = asyncio.run(fanout_presence(node_a.url, [node_a.url, node_b.url], n, rounds))
    return {"bare": base, "one": single, "two": double}


def _figures(n: int, tuned: dict[str, list[float]], base_churn: float, ours_churn: float,
             ghosts: int) -> list[Figure]:
    """The servers as they run in production: with the GC threshold `server/__main__.py` sets."""
    bare = "bare python-socketio room emit"
    figures = []
    for key, label in (("one", "one node"), ("two", "two nodes + Redis")):
        for p in (50, 99):
            figures.append(Figure(f"presence fan-out to {n:,} subscribers, {label}, p{p}",
                                  percentile(tuned[key], p) * 1000, "ms", percentile(tuned["bare"], p) * 1000,
                                  bare, "target p99 < 100 ms" if p == 99 else ""))
    figures.append(Figure("presence connect+disconnect churn", ours_churn, "/s", base_churn, "bare python-socketio",
                          f"{ghosts} users left online after the grace (must be 0); target >= 200/s"))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--churn-seconds", type=float, default=8.0)
    parser.add_argument("--churn-concurrency", type=int, default=20)
    parser.add_argument("--churn-pool", type=int, default=400)
    args = parser.parse_args()
    raise_nofile()
    uvloop.install()
    n = args.watchers

    store = EmbeddedStore(":memory:")
    store.start()
    redis = RedisServer()
    try:
        print(f"fan-out: one change to {n} watchers, {args.rounds} rounds (after 3 warm-up)", flush=True)
        fanout = {tuned: _fanout_variant(store, redis, n, args.rounds, tuned) for tuned in (False, True)}

        print("churn: connect + disconnect in closed loops", flush=True)
        bare = start_server(_cmd("loadtests.bare_server", False), {})
        with _servers(bare):
            wait_http(bare.url + "/", 30, accept_any_status=True)
            base_churn, base_fail = asyncio.run(
                churn(bare.url, BARE_NS, lambda i: {}, args.churn_seconds, args.churn_concurrency))
        ours = start_server(_cmd("server", False), _server_env(store.url, "bench_churn"))
        with _servers(ours):
            wait_http(ours.url + "/readyz", 60)
            ours_churn, ours_fail, ghosts = asyncio.run(
                churn_presence(ours.url, args.churn_seconds, args.churn_concurrency, args.churn_pool))
    finally:
        redis.stop()
        store.stop()

    for tuned, figures in fanout.items():
        bare_p99 = percentile(figures["bare"], 99)
        print()
        print("fan-out to", n, "watchers, servers", "with gc.set_threshold(100_000, 50, 100)" if tuned
              else "as shipped (CPython default GC thresholds)")
        print(f"  bare python-socketio room emit      : {_fmt(figures['bare'])}")
        print(f"  presence, one node                  : {_fmt(figures['one'])}")
        print(f"  presence, two nodes + Redis         : {_fmt(figures['two'])}")
        print(f"  ratio p99 presence/bare, one node   : {percentile(figures['one'], 99) / bare_p99:.2f}")
        print(f"  ratio p99 presence/bare, two nodes  : {percentile(figures['two'], 99) / bare_p99:.2f}")
        worst = max(percentile(figures["one"], 99), percentile(figures["two"], 99))
        print(f"  target p99 < 100 ms                 : {'met' if worst < 0.1 else 'missed'}")
    print()
    print(f"churn, bare python-socketio           : {base_churn:7.0f} connects+disconnects/s ({base_fail} failed)")
    print(f"churn, presence on                    : {ours_churn:7.0f} connects+disconnects/s ({ours_fail} failed)")
    print(f"ratio presence/bare                   : {ours_churn / base_churn:.2f}")
    print(f"target >= 200/s                       : {'met' if ours_churn >= 200 else 'missed'}")
    print(f"users left online after the grace     : {ghosts} of {min(args.churn_pool, 500)} (must be 0)")
    emit("bench_presence", _figures(n, fanout[True], base_churn, ours_churn, ghosts), doc="docs/presence.md")
    return 0 if not ghosts and not ours_fail else 1


if __name__ == "__main__":
    sys.exit(main())
