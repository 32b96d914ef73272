"""Per-minute call billing: N concurrent billed calls on one node, their tick drift and the CPU spent
ticking them, next to the same node idle with the same connections open.

    .venv/bin/python -m loadtests.bench_calls [--calls 5000] [--interval 2] [--seconds 20]

Starts one `python -m server` on a free loopback port on the embedded defaults (its own on-disk
SecantusDB, a child process of the server, under a temporary PAIRLY_DATA_DIR), with the billed
"minute" shortened to `--interval` seconds (PAIRLY_CALL_BILLING_INTERVAL_S), per-user rate limits
(call:invite included) and the per-address transport cap raised, a signup bonus no caller can spend,
and a metrics token. Clients are raw Engine.IO WebSockets (`loadtests._common_presence`) in this
process: one `/call` connection per user, 2 x `--calls` users (a user is in one call at a time).

Phases (each bounded: every wait has a timeout, the measured windows last `--seconds`):
1. connect: 2N `/call` connections, in batches;
2. idle: the connections open, no call; CPU of the server process and of the store (its descendants),
   from /proc utime+stime, as % of one core;
3. billed: N calls set up (invite + accept, `--setup-inflight` at a time), one interval of settling,
   then the same CPU figures over `--seconds`, plus: ticks/s (`call:billed` events received) against
   N/interval; server-side drift from the `pairly_call_tick_drift_seconds` histogram (its buckets
   diffed over the window, percentiles interpolated inside a bucket); client-side drift = arrival of
   `call:billed` minute n - (accepted_at + (n-1) x interval), with accepted_at both as the arrival
   of the accept's ack and as the call record's `accepted_at` (GET /api/calls/history, read after
   the window);
4. end: every call ended by its caller; both parties must get `call:ended`, whose billed minutes are
   checked against the last `call:billed` minute each caller saw.

The CPU share spent on ticking is billed minus idle (server, and store: the ledger writes happen
there). The accept ack arrives after the server stamped `accepted_at` (it is an upper bound of it),
so the drift against the ack understates the lateness by up to the accept's latency; the drift
against the record is the lateness of the event at the client (server drift + charge + delivery).
Calls are accepted one after another during set-up, so their boundaries are spread over the
interval (not all falling due at once). Client, server and store share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from loadtests._common_presence import RawClient, open_many
from loadtests.common import ROOT, percentile, raise_nofile, rss_kb, wait_http
from server.auth import mint_token
from server.store import free_port

SECRET = "bench-secret-0123456789-0123456789-abcdef"
NS = "/call"
DRIFT_METRIC = "pairly_call_tick_drift_seconds"
INFLIGHT = 200  # call:end requests in flight
CLK_TCK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")
nan = float("nan")


# -- processes --------------------------------------------------------------------------------------
@dataclass
class Node:
    """The server under test, its log file, and the store processes it started (killed on exit too)."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    metrics_token: str
    store_pids: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.store_pids:  # the server stops its store; this is for a server that could not
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


_NODES: list[Node] = []


def start_node(data_dir: str, interval: float, calls: int) -> Node:
    port = free_port()
    token = secrets.token_hex(16)
    env = {
        **os.environ,
        "PAIRLY_HOST": "127.0.0.1", "PAIRLY_PORT": str(port),
        "PAIRLY_DATA_DIR": data_dir, "MONGO_URL": "", "REDIS_URL": "",
        "PAIRLY_JWT_SECRET": SECRET, "PAIRLY_LOG_LEVEL": "warning", "PAIRLY_LOG_FORMAT": "console",
        # `*` does not cover the events that have their own default (call:invite=5/10 s): name them.
        "PAIRLY_RATE_LIMITS": "*=100000/1,call:invite=100000/1,call:signal=100000/1",
        "PAIRLY_SIGNUP_BONUS": "1000000",  # 1,000,000 credits: no caller runs out during the bench
        "PAIRLY_MAX_TRANSPORTS_PER_IP": str(max(100_000, 4 * calls)),  # every client is 127.0.0.1
        "PAIRLY_MAX_CONNECTIONS_PER_USER": "10",
        "PAIRLY_CALL_BILLING_INTERVAL_S": repr(interval),
        "PAIRLY_CALL_RING_TIMEOUT_S": "120",
        "PAIRLY_METRICS_TOKEN": token,
    }
    log_path = Path(data_dir) / "server.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "server"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    node = Node(proc, port, log_path, token)
    _NODES.append(node)
    return node


def stop_all() -> None:
    while _NODES:
        _NODES.pop().stop()


def _descendants(pid: int) -> set[int]:
    """Every live descendant of `pid`, from the parent field of /proc/*/stat."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parents[int(entry)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))


@dataclass
class CpuSnap:
    at: float
    server: float
    store: float
    me: float
    busy: float
    total: float


def cpu_snap(node: Node) -> CpuSnap:
    busy, total = machine_busy()
    return CpuSnap(time.monotonic(), cpu_seconds(node.proc.pid), sum(cpu_seconds(p) for p in node.store_pids),
                   time.process_time(), busy, total)


@dataclass
class Cpu:
    """CPU over a window, each as % of one core (`machine` as % of all cores, every process)."""

    seconds: float
    server: float
    store: float
    me: float
    machine: float


def cpu_between(a: CpuSnap, b: CpuSnap) -> Cpu:
    wall = b.at - a.at
    return Cpu(wall, 100 * (b.server - a.server) / wall, 100 * (b.store - a.store) / wall,
               100 * (b.me - a.me) / wall, 100 * (b.busy - a.busy) / max(1.0, b.total - a.total))


# -- server-side histogram --------------------------------------------------------------------------
def read_histogram(node: Node) -> tuple[list[tuple[float, float]], float, float]:
    """([(upper bound, cumulative count)], sum, count) of the drift histogram from GET /metrics."""
    req = urllib.request.Request(node.url + "/metrics", headers={"Authorization": f"Bearer {node.metrics_token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(f"{DRIFT_METRIC}_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
        elif line.startswith(f"{DRIFT_METRIC}_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{DRIFT_METRIC}_count"):
            count = float(line.rsplit(" ", 1)[1])
    if not buckets:
        raise RuntimeError(f"{DRIFT_METRIC} not in /metrics")
    return sorted(buckets), total, count


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus-style: linear inside the bucket holding the q-th observation; the last finite bound
    when it falls in +Inf (shown as '>')."""
    n = buckets[-1][1]
    if n <= 0:
        return float("nan")
    rank = q * n
    lo_bound, lo_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lo_bound
            if count == lo_count:
                return bound
            return lo_bound + (bound - lo_bound) * (rank - lo_count) / (count - lo_count)
        lo_bound, lo_count = bound, count
    return lo_bound


# -- the clients ------------------------------------------------------------------------------------
@dataclass
class Call:
    index: int
    call_id: str = ""
    accepted_at: float = 0.0  # monotonic arrival of the accept ack
    server_accepted_at: float = 0.0  # the record's accepted_at (wall clock, ms precision), read afterwards
    last_minute: int = 0  # last `call:billed` minute the caller saw
    window_ticks: int = 0
    ended: dict[str, Any] = field(default_factory=dict)  # role -> call:ended payload


@dataclass
class Bench:
    interval: float
    calls: dict[str, Call] = field(default_factory=dict)
    window: tuple[float, float] | None = None  # monotonic [start, end) being measured
    samples: list[tuple[Call, int, float]] = field(default_factory=list)  # (call, minute, arrival) in the window
    window_ticks: int = 0
    out_of_order: int = 0
    stray: dict[str, int] = field(default_factory=dict)
    ended_count: int = 0
    all_ended: asyncio.Event = field(default_factory=asyncio.Event)
    expect_ended: int = 0

    def handler(self, role: str) -> Callable[[str, Any, float], None]:
        def on_event(event: str, data: Any, at: float) -> None:
            if event == "call:billed":
                self.billed(data, at)
            elif event == "call:ended":
                call = self.calls.get(data.get("call_id", ""))
                if call is not None and role not in call.ended:
                    call.ended[role] = data
                    self.ended_count += 1
                    if self.expect_ended and self.ended_count >= self.expect_ended:
                        self.all_ended.set()
            elif event not in ("call:incoming", "call:accepted", "wallet:updated"):
                self.stray[event] = self.stray.get(event, 0) + 1

        return on_event

    def billed(self, data: Any, at: float) -> None:
        call = self.calls.get(data["call_id"])
        minute = int(data["minute"])
        if call is None:  # minute 1 is emitted before the accept ack arrives
            return
        if minute != call.last_minute + 1:
            self.out_of_order += 1
        call.last_minute = max(call.last_minute, minute)
        if self.window is not None and self.window[0] <= at < self.window[1] and minute >= 2 and call.accepted_at:
            self.window_ticks += 1
            call.window_ticks += 1
            self.samples.append((call, minute, at))


async def bounded(items: list[T], work: Callable[[T], Awaitable[None]], limit: int) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        async with sem:
            await work(item)

    await asyncio.gather(*(one(i) for i in items))


def _error(ack: Any) -> str:
    if isinstance(ack, dict) and "error" in ack:
        return f"{ack['error']['code']}: {ack['error']['message']}"
    return repr(ack)


# -- the run ----------------------------------------------------------------------------------------
async def main_async(args: argparse.Namespace) -> int:
    n, interval, seconds = args.calls, args.interval, args.seconds
    data_dir = tempfile.mkdtemp(prefix="pairly-bench-calls-")
    node = start_node(data_dir, interval, n)
    bench = Bench(interval)
    run = uuid.uuid4().hex[:6]
    callers = [f"{run}c{i}" for i in range(n)]
    callees = [f"{run}e{i}" for i in range(n)]
    clients: list[RawClient] = []
    ok = False
    try:
        await asyncio.to_thread(wait_http, node.url + "/readyz", 120)
        node.store_pids = _descendants(node.proc.pid)
        print(f"calls={n} interval={interval}s seconds={seconds} cpus={os.cpu_count()} server pid={node.proc.pid} "
              f"store pids={sorted(node.store_pids)}", flush=True)
        if not node.store_pids:
            print("warning: no store process found under the server; store CPU will read 0", flush=True)

        # 1. connect
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            started = time.monotonic()
            users = callers + callees
            batch = 1000
            for first in range(0, len(users), batch):
                part = users[first:first + batch]
                auths = [{"token": mint_token(SECRET, u, ttl_s=3600)} for u in part]
                opened = await asyncio.wait_for(open_many(session, node.url, NS, auths, concurrency=50), 120)
                for offset, client in enumerate(opened):
                    client.on_event = bench.handler("caller" if first + offset < n else "callee")
                clients += opened
            connect_s = time.monotonic() - started
            print(f"connected {len(clients)} /call sockets in {connect_s:.1f} s "
                  f"({len(clients) / connect_s:.0f}/s); server RSS {rss_kb(node.proc.pid) / 1024:.0f} MiB", flush=True)
            caller_of = dict(zip(callers, clients[:n], strict=True))
            callee_of = dict(zip(callees, clients[n:], strict=True))

            # 2. idle
            await asyncio.sleep(2.0)
            a = cpu_snap(node)
            await asyncio.sleep(seconds)
            idle = cpu_between(a, cpu_snap(node))
            print(f"idle: server {idle.server:.1f}% store {idle.store:.1f}% of one core "
                  f"(machine {idle.machine:.0f}% of all cores, this client {idle.me:.1f}%)", flush=True)

            # 3. set up the calls, settle, measure
            setup_lat: list[float] = []
            failures: dict[str, int] = {}
            state = [Call(i) for i in range(n)]

            async def set_up(call: Call) -> None:
                t0 = time.monotonic()
                try:
                    ack = await caller_of[callers[call.index]].call(
                        "call:invite", {"to": callees[call.index], "media": "audio"}, timeout=60)
                except TimeoutError:
                    ack = {"error": {"code": "no ack", "message": "within 60 s"}}
                if not ack.get("ok"):
                    failures[f"invite {_error(ack)}"] = failures.get(f"invite {_error(ack)}", 0) + 1
                    return
                call.call_id = ack["call_id"]
                bench.calls[call.call_id] = call
                try:
                    ack = await callee_of[callees[call.index]].call("call:accept", {"call_id": call.call_id},
                                                                    timeout=60)
                except TimeoutError:
                    ack = {"error": {"code": "no ack", "message": "within 60 s"}}
                if not ack.get("ok"):
                    failures[f"accept {_error(ack)}"] = failures.get(f"accept {_error(ack)}", 0) + 1
                    return
                call.accepted_at = time.monotonic()
                setup_lat.append(call.accepted_at - t0)

            started = time.monotonic()

            async def progress() -> None:
                while True:
                    await asyncio.sleep(15)
                    print(f"  ... {len(setup_lat)} calls accepted after {time.monotonic() - started:.0f} s", flush=True)

            reporter = asyncio.create_task(progress())
            try:
                await asyncio.wait_for(bounded(state, set_up, args.setup_inflight), max(300.0, n / 10))
            finally:
                reporter.cancel()
            setup_s = time.monotonic() - started
            live = [c for c in state if c.accepted_at]
            print(f"set up {len(live)}/{n} calls in {setup_s:.1f} s ({len(live) / setup_s:.0f} calls/s; invite+accept "
                  f"p50 {percentile(setup_lat, 50) * 1000:.0f} ms p99 {percentile(setup_lat, 99) * 1000:.0f} ms)"
                  + (f" failures={failures}" if failures else ""), flush=True)
            if not live:
                raise RuntimeError("no call could be set up")
            await asyncio.sleep(interval + 0.5)  # the last accepts' work and their first tick are over
            hist_a, sum_a, count_a = await asyncio.to_thread(read_histogram, node)
            a = cpu_snap(node)
            bench.window = (a.at, a.at + seconds)
            await asyncio.sleep(seconds)
            b = cpu_snap(node)
            bench.window = (a.at, b.at)
            hist_b, sum_b, count_b = await asyncio.to_thread(read_histogram, node)
            billed = cpu_between(a, b)
            rss_billed = rss_kb(node.proc.pid) / 1024
            hist = [(bound, cb - ca) for (bound, cb), (_, ca) in zip(hist_b, hist_a, strict=True)]
            server_ticks = count_b - count_a
            ticks_per_s = bench.window_ticks / billed.seconds
            per_call = [c.window_ticks for c in live]
            print(f"billed: server {billed.server:.1f}% store {billed.store:.1f}% of one core "
                  f"(machine {billed.machine:.0f}%, this client {billed.me:.1f}%), "
                  f"{ticks_per_s:.0f} call:billed/s", flush=True)

            # The records' accepted_at (GET /api/calls/history, after the window): the exact boundaries.
            wall_minus_mono = time.time() - time.monotonic()

            async def accepted(call: Call) -> None:
                headers = {"Authorization": f"Bearer {mint_token(SECRET, callers[call.index], ttl_s=3600)}"}
                async with session.get(f"{node.url}/api/calls/history?limit=1", headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=30)) as resp:
                    body = await resp.json()
                for item in body.get("calls", ()):
                    if item["call_id"] == call.call_id and item.get("accepted_at"):
                        call.server_accepted_at = dt.datetime.fromisoformat(item["accepted_at"]).timestamp()

            await asyncio.wait_for(bounded(live, accepted, 50), max(120.0, n / 20))

            # 4. end every call
            bench.expect_ended = 2 * len(live)
            if bench.ended_count >= bench.expect_ended:
                bench.all_ended.set()
            end_failures: dict[str, int] = {}
            stuck: list[Call] = []

            async def end(call: Call) -> None:
                try:
                    ack = await caller_of[callers[call.index]].call("call:end", {"call_id": call.call_id},
                                                                    timeout=60)
                except TimeoutError:
                    ack = {"error": {"code": "no ack", "message": "within 60 s"}}
                if not ack.get("ok"):
                    end_failures[_error(ack)] = end_failures.get(_error(ack), 0) + 1
                    stuck.append(call)

            started = time.monotonic()
            await asyncio.wait_for(bounded(live, end, INFLIGHT), max(300.0, n / 10))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bench.all_ended.wait(), 30)
            end_s = time.monotonic() - started
            for call in stuck[:5]:  # what the records say about calls whose end was not acknowledged
                headers = {"Authorization": f"Bearer {mint_token(SECRET, callers[call.index], ttl_s=3600)}"}
                async with session.get(f"{node.url}/api/calls/history?limit=1", headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=30)) as resp:
                    print(f"unacknowledged end: {call.call_id} -> {resp.status} {await resp.text()}", flush=True)
            both = sum(1 for c in live if len(c.ended) == 2)
            # billed_minutes in call:ended - the last call:billed minute the caller saw (the end charges
            # the minutes begun before it that no tick charged yet, without a call:billed)
            extra = Counter(int(c.ended["caller"]["billed_minutes"]) - c.last_minute
                            for c in live if "caller" in c.ended)
            disagree = {k: v for k, v in extra.items() if k not in (0, 1)}
            ended_reasons = Counter(str(c.ended.get("caller", {}).get("reason")) for c in live)
            credits = sum(int(c.ended.get("caller", {}).get("credits", 0)) for c in live)
            minutes = sum(int(c.ended.get("caller", {}).get("billed_minutes", 0)) for c in live)

            # the summary
            expected = len(live) / interval
            tick_server = billed.server - idle.server
            tick_store = billed.store - idle.store
            per_tick = (tick_server + tick_store) / 100 / ticks_per_s if ticks_per_s else float("nan")
            per_tick_server = tick_server / 100 / ticks_per_s if ticks_per_s else float("nan")
            p50_s = histogram_quantile(hist, 0.50)
            p99_s = histogram_quantile(hist, 0.99)
            inf = hist[-1][1] - hist[-2][1]
            mean_s = (sum_b - sum_a) / server_ticks if server_ticks else float("nan")
            by_ack = [at - (c.accepted_at + (m - 1) * interval) for c, m, at in bench.samples]
            by_record = [at + wall_minus_mono - (c.server_accepted_at + (m - 1) * interval)
                         for c, m, at in bench.samples if c.server_accepted_at]
            cd50, cd99 = percentile(by_ack, 50), percentile(by_ack, 99)
            rd50, rd99 = percentile(by_record, 50), percentile(by_record, 99)
            print()
            print(f"=== {len(live)} concurrent billed calls on one node, {interval:g} s interval, "
                  f"{billed.seconds:.1f} s windows ===")
            print(f"{'':34}{'idle':>10}{'billed':>10}{'ticking':>10}")
            print(f"{'server process, % of one core':34}{idle.server:10.1f}{billed.server:10.1f}{tick_server:10.1f}")
            print(f"{'store (ledger), % of one core':34}{idle.store:10.1f}{billed.store:10.1f}{tick_store:10.1f}")
            print(f"{'server + store':34}{idle.server + idle.store:10.1f}{billed.server + billed.store:10.1f}"
                  f"{tick_server + tick_store:10.1f}")
            print(f"{'(this client process)':34}{idle.me:10.1f}{billed.me:10.1f}")
            print(f"{'(whole machine, % of all cores)':34}{idle.machine:10.1f}{billed.machine:10.1f}")
            print(f"ticks: {ticks_per_s:.0f}/s received (expected {expected:.0f}/s = calls/interval), "
                  f"{server_ticks / billed.seconds:.0f}/s observed by the server; per call in the window: "
                  f"min {min(per_call)} max {max(per_call)} (expected ~{billed.seconds / interval:.1f}); "
                  f"out of order {bench.out_of_order}")
            print(f"drift, server (histogram, interpolated): p50 {p50_s * 1000:.0f} ms  "
                  f"p99 {'>' if hist[-1][1] and inf / hist[-1][1] > 0.01 else ''}{p99_s * 1000:.0f} ms  "
                  f"mean {mean_s * 1000:.0f} ms  over {server_ticks:.0f} ticks")
            print(f"drift, client vs the record's accepted_at (billed arrival - accepted_at - (n-1) x interval): "
                  f"p50 {rd50 * 1000:.0f} ms  p99 {rd99 * 1000:.0f} ms  max {max(by_record, default=nan) * 1000:.0f} "
                  f"ms over {len(by_record)} ticks (lateness + charge + delivery)")
            print(f"drift, client vs the accept ack (billed arrival - ack arrival - (n-1) x interval): "
                  f"p50 {cd50 * 1000:.0f} ms  p99 {cd99 * 1000:.0f} ms  max {max(by_ack, default=nan) * 1000:.0f} ms "
                  f"(the ack arrives after accepted_at, by the accept's latency: this understates the lateness)")
            p99_worst = max(p99_s, rd99 if by_record else cd99)
            share = tick_server + tick_store
            print(f"target: drift p99 < 1 s -> {'met' if p99_worst < 1 else 'NOT met'} "
                  f"({p99_worst * 1000:.0f} ms); ticking < 5% of one core -> "
                  f"{'met' if share < 5 else 'NOT met'} ({share:.1f}% server + store, {tick_server:.1f}% server)")
            print(f"per tick: {per_tick * 1e6:.0f} us CPU (server + store), {per_tick_server * 1e6:.0f} us in the "
                  f"server; server RSS {rss_billed:.0f} MiB with {len(clients)} sockets")
            if per_tick > 0:
                calls_5 = 0.05 * 60 / per_tick
                calls_core = 60 / per_tick_server if per_tick_server > 0 else float("inf")
                print(f"one node bills ~{calls_5:,.0f} concurrent calls at a 60 s minute with ticking under 5% of "
                      f"one core (server + store); ticking alone would fill the server's one core at "
                      f"~{calls_core:,.0f}. Assumes the cost per tick measured here ({ticks_per_s:.0f} ticks/s) "
                      f"stays the same at N/60 ticks/s, and ignores the 2 sockets per call (idle cost above, "
                      f"memory) and call set-up/end.")
            else:
                print("one node: the ticking cost is below the noise of this run (billed CPU <= idle CPU); "
                      "rerun with more --calls or --seconds")
            print(f"end: {both}/{len(live)} calls got call:ended on both sides in {end_s:.1f} s "
                  f"({len(live) / end_s:.0f}/s), reasons {dict(ended_reasons)}; billed_minutes == last call:billed "
                  f"minute for {extra.get(0, 0)}, +1 (a minute begun before the end, charged by it) for "
                  f"{extra.get(1, 0)}, other {dict(sorted(disagree.items()))}; {minutes} minutes, {credits} credits"
                  + (f"; end failures={end_failures}" if end_failures else "")
                  + (f"; other events={bench.stray}" if bench.stray else ""), flush=True)
            for client in clients:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 2)
            clients = []
            ok = both == len(live) == n and not end_failures and not failures
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 1)
        node.stop()
        _report_log(node.log_path)
        if ok or args.keep_data:
            reconcile(node, data_dir)
        if args.keep_data:
            print(f"kept {data_dir} (server.log, the store's files)", flush=True)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0 if ok else 1


def reconcile(node: Node, data_dir: str) -> None:
    """`python -m server reconcile` on the store the run left: the books balance, and every settled
    call's record matches the minutes the ledger charged."""
    env = {**os.environ, "PAIRLY_DATA_DIR": data_dir, "MONGO_URL": "", "REDIS_URL": "", "PAIRLY_JWT_SECRET": SECRET,
           "PAIRLY_LOG_LEVEL": "warning"}
    try:
        done = subprocess.run([sys.executable, "-m", "server", "reconcile"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
    except subprocess.TimeoutExpired:
        print("reconcile: no answer within 600 s", flush=True)
        return
    lines = (done.stdout + done.stderr).strip().splitlines()
    print(f"reconcile (exit {done.returncode}): " + " | ".join(lines[:12]), flush=True)


def _report_log(path: Path) -> None:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return
    bad = [line for line in lines if any(w in line.lower() for w in ("error", "exception", "traceback", "warning"))]
    print(f"server log: {len(lines)} lines, {len(bad)} with warning/error/exception", flush=True)
    for line in bad[:20]:
        print(f"  {line}", flush=True)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000, help="concurrent calls (2 sockets each)")
    parser.add_argument("--interval", type=float, default=2.0, help="billing interval, seconds (a 'minute')")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the idle and billed windows")
    parser.add_argument("--setup-inflight", type=int, default=20,
                        help="invite+accept pairs in flight during set-up (more only queues: same calls/s)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data dir (server log, store)")
    args = parser.parse_args()
    raise_nofile()
    # SIGTERM ends the run like Ctrl-C: through the finally blocks that stop the server.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
