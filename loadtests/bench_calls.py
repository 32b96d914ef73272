"""Per-minute call billing: N concurrent billed calls on one node, their tick drift and the CPU spent
ticking them, next to the same node idle with the same connections open.

    .venv/bin/python -m loadtests.bench_calls [--calls 5000] [--interval 5] [--seconds 20]

The default 5 s "minute" puts 5,000 calls at 1,000 charges/s, what the embedded (pure-Python) store
writes on this 2-core machine with room to spare; at 2 s (2,500 charges/s) the store saturates and
set-up crawls. The real 60 s minute is 83 charges/s for 5,000 calls.

Starts one `python -m server` on a free loopback port on the embedded defaults (its own on-disk
SecantusDB, a child process of the server, under a temporary PAIRLY_DATA_DIR), with the billed
"minute" shortened to `--interval` seconds (PAIRLY_CALL_BILLING_INTERVAL_S), per-user rate limits
(call:invite included) and the per-address transport cap raised, a signup bonus no caller can spend,
and a metrics token. Clients are raw Engine.IO WebSockets (`loadtests._common_presence`) in this
process: one `/call` connection per user, 2 x `--calls` users (a user is in one call at a time).

Phases (each bounded: every request and wait has a timeout, set-up and ends a deadline):
1. connect: 2N `/call` connections, in batches of 1,000;
2. idle: the connections open, no call; CPU of the server process and of the store (the server's
   descendants), from /proc utime+stime, as % of one core, over `--seconds`;
3. set-up: N calls (invite + accept, `--setup-inflight` at a time; more in flight only queues), each
   ticking from its accept; then one interval of settling;
4. steady: the same CPU figures over `--seconds`, plus ticks/s (`call:billed` received) against
   N/interval, and the drift: server-side from the `pairly_call_tick_drift_seconds` histogram of
   GET /metrics (buckets diffed over the window, percentiles interpolated inside a bucket), and
   client-side = arrival of `call:billed` minute n - (accepted_at + (n-1) x interval), with
   accepted_at both the arrival of the accept's ack and the call record's `accepted_at` (read from
   GET /api/calls/history at the end);
5. ends: every call ended by its caller (`--end-inflight` at a time, none sent after
   `--end-deadline`); both parties must get `call:ended`, whose billed minutes are compared with the
   last `call:billed` minute the caller saw; the drift during set-up and during the ends is shown
   too (the node under other load);
6. the server stopped: its warning/error records summarised (the first of each kind in full; the
   log then kept in the temp dir), and `python -m server reconcile` on the store the run left: the
   books balance and every settled call's record matches the minutes the ledger charged (the data
   dir is kept when it does not pass, or with `--keep-data`).

The CPU share spent on ticking is steady minus idle (server, and store: the ledger writes happen
there). The accept ack arrives after the server stamped `accepted_at` (an upper bound of it), so the
drift against the ack understates the lateness by up to the accept's latency; the drift against the
record is the lateness of the event at the client (server drift + charge + delivery). Calls are
accepted one after another, so their boundaries are spread over the interval rather than falling
due at once. Client, server and store share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import re
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
from loadtests.benchjson import Figure, emit
from loadtests.common import ROOT, percentile, raise_nofile, rss_kb, wait_http
from server.auth import mint_token
from server.store import free_port

SECRET = "bench-secret-0123456789-0123456789-abcdef"
NS = "/call"
DRIFT_METRIC = "pairly_call_tick_drift_seconds"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NAN = float("nan")
T = TypeVar("T")
Sample = tuple["Call", int, float]  # (call, minute, monotonic arrival of its call:billed)


# -- processes --------------------------------------------------------------------------------------
@dataclass
class Node:
    """The server under test, its log, and the store processes under it (killed on exit as well)."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    metrics_token: str
    store_pids: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        """SIGTERM (SIGKILL after 30 s); how it went, e.g. 'exit 0 after 2.1 s'."""
        started = time.monotonic()
        killed = ""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                killed = ", killed after 30 s"
        left = [pid for pid in self.store_pids if Path(f"/proc/{pid}").exists()]
        for pid in left:  # the server stops its store; this covers a server that did not
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return (f"exit {self.proc.returncode} after {time.monotonic() - started:.1f} s{killed}"
                + (f"; store {left} still running: killed" if left else ""))


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
        "PAIRLY_SIGNUP_BONUS": "1000000",  # no caller runs out during the bench
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


def descendants(pid: int) -> set[int]:
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


def machine_jiffies() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, every process, from /proc/stat."""
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
    busy, total = machine_jiffies()
    return CpuSnap(time.monotonic(), cpu_seconds(node.proc.pid), sum(cpu_seconds(p) for p in node.store_pids),
                   time.process_time(), busy, total)


@dataclass
class Cpu:
    """CPU over a window, each as % of one core (`machine`: % of all cores, every process)."""

    seconds: float
    server: float
    store: float
    me: float
    machine: float


def cpu_between(a: CpuSnap, b: CpuSnap) -> Cpu:
    wall = b.at - a.at
    return Cpu(wall, 100 * (b.server - a.server) / wall, 100 * (b.store - a.store) / wall,
               100 * (b.me - a.me) / wall, 100 * (b.busy - a.busy) / max(1.0, b.total - a.total))


# -- the server's drift histogram -------------------------------------------------------------------
@dataclass
class Hist:
    buckets: list[tuple[float, float]]  # (upper bound, cumulative count), +Inf last
    total: float
    count: float

    def __sub__(self, earlier: Hist) -> Hist:
        return Hist([(b, c - c0) for (b, c), (_, c0) in zip(self.buckets, earlier.buckets, strict=True)],
                    self.total - earlier.total, self.count - earlier.count)

    def quantile(self, q: float) -> float:
        """Prometheus-style: linear inside the bucket holding the q-th observation; the last finite
        bound when it falls in +Inf (see `beyond`)."""
        if self.count <= 0:
            return NAN
        rank = q * self.buckets[-1][1]
        lo_bound, lo_count = 0.0, 0.0
        for bound, count in self.buckets:
            if count >= rank:
                if bound == float("inf"):
                    return lo_bound
                if count == lo_count:
                    return bound
                return lo_bound + (bound - lo_bound) * (rank - lo_count) / (count - lo_count)
            lo_bound, lo_count = bound, count
        return lo_bound

    def beyond(self, q: float) -> bool:
        """The q-th observation is above the largest finite bucket."""
        return self.count > 0 and self.buckets[-2][1] < q * self.count

    def describe(self) -> str:
        if self.count <= 0:
            return "no ticks"
        p50, p99 = self.quantile(0.5), self.quantile(0.99)
        return (f"p50 {'>' if self.beyond(0.5) else ''}{p50 * 1000:.0f} ms  "
                f"p99 {'>' if self.beyond(0.99) else ''}{p99 * 1000:.0f} ms  "
                f"mean {self.total / self.count * 1000:.0f} ms  over {self.count:.0f} ticks")


def read_hist(node: Node) -> Hist:
    req = urllib.request.Request(node.url + "/metrics", headers={"Authorization": f"Bearer {node.metrics_token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
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
    return Hist(sorted(buckets), total, count)


# -- the clients ------------------------------------------------------------------------------------
@dataclass
class Call:
    index: int
    call_id: str = ""
    acked_at: float = 0.0  # monotonic arrival of the accept's ack (0: not accepted)
    accepted_at: float = 0.0  # the record's accepted_at (wall clock, ms precision), read at the end
    last_minute: int = 0  # the last `call:billed` minute the caller saw
    steady_ticks: int = 0
    ended: dict[str, Any] = field(default_factory=dict)  # role -> its call:ended payload


@dataclass
class Bench:
    interval: float
    phase: str = "setup"
    calls: dict[str, Call] = field(default_factory=dict)
    samples: dict[str, list[Sample]] = field(default_factory=dict)  # phase -> minutes >= 2 received
    wallet_events: Counter[str] = field(default_factory=Counter)  # phase -> wallet:updated received
    out_of_order: int = 0
    other_events: Counter[str] = field(default_factory=Counter)
    ended_count: int = 0
    expect_ended: int = 0
    all_ended: asyncio.Event = field(default_factory=asyncio.Event)

    def handler(self, role: str) -> Callable[[str, Any, float], None]:
        def on_event(event: str, data: Any, at: float) -> None:
            if event == "call:billed":
                self.billed(data, at)
            elif event == "wallet:updated":
                self.wallet_events[self.phase] += 1
            elif event == "call:ended":
                call = self.calls.get(data.get("call_id", ""))
                if call is not None and call.acked_at and role not in call.ended:
                    call.ended[role] = data
                    self.ended_count += 1
                    if self.expect_ended and self.ended_count >= self.expect_ended:
                        self.all_ended.set()
            elif event not in ("call:incoming", "call:accepted"):
                self.other_events[event] += 1

        return on_event

    def billed(self, data: Any, at: float) -> None:
        call = self.calls.get(data["call_id"])
        if call is None:
            return
        minute = int(data["minute"])
        if minute != call.last_minute + 1:
            self.out_of_order += 1
        call.last_minute = max(call.last_minute, minute)
        if minute >= 2 and call.acked_at:  # minute 1 is charged by the accept itself
            self.samples.setdefault(self.phase, []).append((call, minute, at))
            if self.phase == "steady":
                call.steady_ticks += 1


async def bounded(items: list[T], work: Callable[[T], Awaitable[None]], limit: int, deadline: float) -> int:
    """Run `work` over `items`, `limit` at a time, starting no new item after the monotonic `deadline`
    (those in flight finish); returns how many were started."""
    sem = asyncio.Semaphore(limit)
    started = 0

    async def one(item: T) -> None:
        nonlocal started
        async with sem:
            if time.monotonic() >= deadline:
                return
            started += 1
            await work(item)

    await asyncio.gather(*(one(i) for i in items))
    return started


async def call_ok(client: RawClient, event: str, data: Any, failures: Counter[str]) -> dict[str, Any] | None:
    """The ack of `event` when ok; else None, the error counted in `failures`."""
    try:
        ack = await client.call(event, data, timeout=60)
    except TimeoutError:
        failures[f"{event}: no ack within 60 s"] += 1
        return None
    if not isinstance(ack, dict) or not ack.get("ok"):
        error = ack.get("error", {}) if isinstance(ack, dict) else {}
        failures[f"{event}: {error.get('code', ack)}: {error.get('message', '')}"] += 1
        return None
    return ack


def drifts(samples: list[Sample], interval: float, wall_minus_mono: float, *, by_ack: bool) -> list[float]:
    if by_ack:
        return [at - (c.acked_at + (m - 1) * interval) for c, m, at in samples]
    return [at + wall_minus_mono - (c.accepted_at + (m - 1) * interval) for c, m, at in samples if c.accepted_at]


def ms(values: list[float]) -> str:
    if not values:
        return "no ticks"
    return (f"p50 {percentile(values, 50) * 1000:.0f} ms  p99 {percentile(values, 99) * 1000:.0f} ms  "
            f"max {max(values) * 1000:.0f} ms  over {len(values)} ticks")


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
        node.store_pids = descendants(node.proc.pid)
        print(f"calls={n} interval={interval:g}s seconds={seconds:g} cpus={os.cpu_count()} "
              f"server pid={node.proc.pid} store pids={sorted(node.store_pids)}", flush=True)
        if not node.store_pids:
            print("warning: no store process under the server; store CPU will read 0", flush=True)

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            # 1. connect
            started = time.monotonic()
            users = callers + callees
            for first in range(0, len(users), 1000):
                part = users[first:first + 1000]
                auths = [{"token": mint_token(SECRET, u, ttl_s=4 * 3600)} for u in part]
                opened = await asyncio.wait_for(open_many(session, node.url, NS, auths, concurrency=50), 120)
                for offset, client in enumerate(opened):
                    client.on_event = bench.handler("caller" if first + offset < n else "callee")
                clients += opened
            connect_s = time.monotonic() - started
            print(f"connected {len(clients)} /call sockets in {connect_s:.1f} s ({len(clients) / connect_s:.0f}/s); "
                  f"server RSS {rss_kb(node.proc.pid) / 1024:.0f} MiB", flush=True)
            caller_of, callee_of = clients[:n], clients[n:]

            # 2. idle
            await asyncio.sleep(2.0)
            a = cpu_snap(node)
            await asyncio.sleep(seconds)
            idle = cpu_between(a, cpu_snap(node))
            print(f"idle: server {idle.server:.1f}% store {idle.store:.1f}% of one core "
                  f"(machine {idle.machine:.0f}% of all cores, this client {idle.me:.1f}%)", flush=True)

            # 3. set-up
            state = [Call(i) for i in range(n)]
            setup_latency: list[float] = []
            failures: Counter[str] = Counter()

            async def set_up(call: Call) -> None:
                t0 = time.monotonic()
                ack = await call_ok(caller_of[call.index], "call:invite", {"to": callees[call.index], "media": "audio"},
                                    failures)
                if ack is None:
                    return
                call.call_id = ack["call_id"]
                bench.calls[call.call_id] = call
                if await call_ok(callee_of[call.index], "call:accept", {"call_id": call.call_id}, failures) is None:
                    return
                call.acked_at = time.monotonic()
                setup_latency.append(call.acked_at - t0)

            async def progress(what: str, count: Callable[[], int], since: float) -> None:
                while True:
                    await asyncio.sleep(15)
                    print(f"  ... {what}: {count()} after {time.monotonic() - since:.0f} s", flush=True)

            h_setup = await asyncio.to_thread(read_hist, node)
            started = time.monotonic()
            reporter = asyncio.create_task(progress("calls accepted", lambda: len(setup_latency), started))
            try:
                await bounded(state, set_up, args.setup_inflight, started + args.setup_deadline)
            finally:
                reporter.cancel()
            setup_s = time.monotonic() - started
            live = [c for c in state if c.acked_at]
            print(f"set up {len(live)}/{n} calls in {setup_s:.1f} s ({len(live) / setup_s:.1f} calls/s; "
                  f"invite+accept p50 {percentile(setup_latency, 50) * 1000:.0f} ms "
                  f"p99 {percentile(setup_latency, 99) * 1000:.0f} ms)"
                  + (f"; failures {dict(failures)}" if failures else "")
                  + ("" if len(live) == n else f"; set-up deadline {args.setup_deadline:g} s"), flush=True)
            if not live:
                raise RuntimeError("no call could be set up")
            await asyncio.sleep(interval + 0.5)  # the last accepts' work and their next tick are over

            # 4. steady
            h_steady = await asyncio.to_thread(read_hist, node)
            a = cpu_snap(node)
            bench.phase = "steady"
            await asyncio.sleep(seconds)
            bench.phase = "ending"
            b = cpu_snap(node)
            h_ending = await asyncio.to_thread(read_hist, node)
            steady = cpu_between(a, b)
            rss_steady = rss_kb(node.proc.pid) / 1024
            steady_samples = bench.samples.get("steady", [])
            ticks_per_s = len(steady_samples) / steady.seconds
            print(f"steady: server {steady.server:.1f}% store {steady.store:.1f}% of one core (machine "
                  f"{steady.machine:.0f}%, this client {steady.me:.1f}%), {ticks_per_s:.0f} call:billed/s", flush=True)

            # 5. ends
            bench.expect_ended = 2 * len(live)
            if bench.ended_count >= bench.expect_ended:
                bench.all_ended.set()
            end_failures: Counter[str] = Counter()

            async def end(call: Call) -> None:
                await call_ok(caller_of[call.index], "call:end", {"call_id": call.call_id}, end_failures)

            started = time.monotonic()
            reporter = asyncio.create_task(progress("calls:ended events", lambda: bench.ended_count, started))
            try:
                ended_started = await bounded(live, end, args.end_inflight, started + args.end_deadline)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(bench.all_ended.wait(), 60)
            finally:
                reporter.cancel()
            end_s = time.monotonic() - started
            bench.phase = "done"
            h_done = await asyncio.to_thread(read_hist, node)

            # The records' accepted_at (the exact boundaries), after everything measured.
            wall_minus_mono = time.time() - time.monotonic()
            history_failures: Counter[str] = Counter()

            async def accepted(call: Call) -> None:
                headers = {"Authorization": f"Bearer {mint_token(SECRET, callers[call.index], ttl_s=3600)}"}
                try:
                    async with session.get(f"{node.url}/api/calls/history?limit=1", headers=headers,
                                           timeout=aiohttp.ClientTimeout(total=60)) as resp:
                        body = await resp.json()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    history_failures[type(exc).__name__] += 1
                    return
                for item in body.get("calls", ()):
                    if item["call_id"] == call.call_id and item.get("accepted_at"):
                        call.accepted_at = dt.datetime.fromisoformat(item["accepted_at"]).timestamp()

            await bounded(live, accepted, 50, time.monotonic() + 600)
            for client in clients:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 2)
            clients = []

        # -- the summary --
        expected = len(live) / interval
        tick_server, tick_store = steady.server - idle.server, steady.store - idle.store
        tick_total = tick_server + tick_store
        per_tick = tick_total / 100 / ticks_per_s if ticks_per_s else NAN
        per_tick_server = tick_server / 100 / ticks_per_s if ticks_per_s else NAN
        server_steady = h_ending - h_steady
        by_record = drifts(steady_samples, interval, wall_minus_mono, by_ack=False)
        by_ack = drifts(steady_samples, interval, wall_minus_mono, by_ack=True)
        per_call = [c.steady_ticks for c in live]
        both = sum(1 for c in live if len(c.ended) == 2)
        # billed_minutes of call:ended - the caller's last call:billed minute: the end charges the minutes
        # begun before it that no tick charged yet (without a call:billed), so 0 or 1 unless ticks lag.
        extra = Counter(int(c.ended["caller"]["billed_minutes"]) - c.last_minute for c in live if "caller" in c.ended)
        lagging = {k: v for k, v in sorted(extra.items()) if k not in (0, 1)}
        reasons = Counter(str(c.ended["caller"]["reason"]) if "caller" in c.ended else "no call:ended" for c in live)
        minutes = sum(int(c.ended.get("caller", {}).get("billed_minutes", 0)) for c in live)
        credits = sum(int(c.ended.get("caller", {}).get("credits", 0)) for c in live)

        print()
        print(f"=== {len(live)} concurrent billed calls on one node, {interval:g} s interval, "
              f"{steady.seconds:.1f} s windows, {os.cpu_count()} cores shared with the client ===")
        print(f"{'% of one core':34}{'idle':>10}{'billed':>10}{'ticking':>10}")
        print(f"{'server process':34}{idle.server:10.1f}{steady.server:10.1f}{tick_server:10.1f}")
        print(f"{'store (ledger writes)':34}{idle.store:10.1f}{steady.store:10.1f}{tick_store:10.1f}")
        print(f"{'server + store':34}{idle.server + idle.store:10.1f}{steady.server + steady.store:10.1f}"
              f"{tick_total:10.1f}")
        print(f"{'this client process':34}{idle.me:10.1f}{steady.me:10.1f}")
        print(f"{'whole machine (% of all cores)':34}{idle.machine:10.1f}{steady.machine:10.1f}")
        print(f"ticks: {ticks_per_s:.0f}/s received (expected {expected:.0f}/s = calls / interval), "
              f"{server_steady.count / steady.seconds:.0f}/s seen by the server's histogram, "
              f"{bench.wallet_events['steady'] / steady.seconds:.0f} wallet:updated/s alongside; per call: "
              f"{min(per_call)}..{max(per_call)} (expected ~{steady.seconds / interval:.1f}); out of order "
              f"{bench.out_of_order}")
        print(f"drift, server histogram:          {server_steady.describe()}")
        print(f"drift, client vs record:          {ms(by_record)}  (accepted_at from the call record; includes "
              "the charge and the delivery)")
        print(f"drift, client vs accept ack:      {ms(by_ack)}  (the ack arrives after accepted_at: understated)")
        worst = max(server_steady.quantile(0.99), percentile(by_record, 99) if by_record else NAN)
        print(f"target drift p99 < 1 s: {'met' if worst < 1 else 'NOT met'} ({worst * 1000:.0f} ms, the larger of "
              f"server and client-vs-record); target ticking < 5% of one core: "
              f"{'met' if tick_total < 5 else 'NOT met'} ({tick_total:.1f}% server + store, {tick_server:.1f}% "
              f"server alone)")
        print(f"per tick: {per_tick * 1e6:.0f} us CPU (server + store), {per_tick_server * 1e6:.0f} us of it in the "
              f"server; server RSS {rss_steady:.0f} MiB with {2 * n} sockets and {len(live)} calls")
        busiest = max(steady.server, steady.store)
        if ticks_per_s < 0.95 * expected or server_steady.quantile(0.5) > 0.25 * interval or busiest > 90:
            print(f"NOTE: the node is saturated at {len(live)} calls every {interval:g} s ({ticks_per_s:.0f} ticks/s "
                  f"done of {expected:.0f} due, server drift p50 {server_steady.quantile(0.5) * 1000:.0f} ms, busiest "
                  f"process at {busiest:.0f}% of its core): ticks run late, the per-tick figures are at saturation")
        if per_tick > 0 and tick_store > 0 and per_tick_server > 0:
            per_tick_store = tick_store / 100 / ticks_per_s
            bound = min(60 / per_tick_store, 60 / per_tick_server)
            print(f"one node bills ~{bound:,.0f} concurrent calls at a 60 s minute, ticking alone (the store's "
                  f"one core full at ~{60 / per_tick_store:,.0f}, the server's event loop at "
                  f"~{60 / per_tick_server:,.0f}); ~{0.05 * 60 / per_tick:,.0f} within the 5%-of-one-core budget "
                  f"(server + store). Assumes the CPU per tick measured here ({ticks_per_s:.0f} ticks/s) holds at "
                  "calls/60 ticks/s; leaves out the 2 "
                  "sockets per call (idle column) and each call's set-up and end")
        else:
            print("one node: ticking cost below this run's noise (billed CPU <= idle CPU); use more --calls/--seconds")
        print(f"under other load: set-up ({len(live) / setup_s:.1f} calls/s added): server "
              f"{(h_steady - h_setup).describe()}; client vs record "
              f"{ms(drifts(bench.samples.get('setup', []), interval, wall_minus_mono, by_ack=False))}")
        print(f"                  ends ({args.end_inflight} call:end in flight): server "
              f"{(h_done - h_ending).describe()}; client vs record "
              f"{ms(drifts(bench.samples.get('ending', []), interval, wall_minus_mono, by_ack=False))}")
        print(f"end: {both}/{len(live)} calls got call:ended on both sides in {end_s:.1f} s "
              f"({len(live) / end_s:.1f}/s; {ended_started} ends sent), reasons {dict(reasons)}; "
              f"billed_minutes - last call:billed minute: "
              f"0 for {extra.get(0, 0)}, 1 for {extra.get(1, 0)}, more {lagging or 'for none'}; {minutes} minutes, "
              f"{credits} credits"
              + (f"; failures {dict(end_failures)}" if end_failures else "")
              + (f"; history failures {dict(history_failures)}" if history_failures else "")
              + (f"; other events {dict(bench.other_events)}" if bench.other_events else ""), flush=True)
        ok = both == len(live) == n and not end_failures and not failures
        idle_what = f"idle node, same {2 * n:,} connections"
        load = f"{len(live):,} calls, {interval:g} s minute, {ticks_per_s:.0f} charges/s"
        emit("bench_calls", [
            Figure("call billing tick drift, server, p50", server_steady.quantile(0.5) * 1000, "ms", note=load),
            Figure("call billing tick drift, server, p99", server_steady.quantile(0.99) * 1000, "ms",
                   note="target < 1 s"),
            Figure("call billing tick drift at the client (charge + delivery), p50",
                   percentile(by_record, 50) * 1000 if by_record else NAN, "ms"),
            Figure("call billing tick drift at the client (charge + delivery), p99",
                   percentile(by_record, 99) * 1000 if by_record else NAN, "ms"),
            Figure("call billing: server process, % of one core while billing", steady.server, "%", idle.server,
                   idle_what),
            Figure("call billing: store, % of one core while billing", steady.store, "%", idle.store, idle_what),
            Figure("call billing CPU per charged minute, server", per_tick_server * 1e6, "us"),
            Figure("call billing CPU per charged minute, store",
                   tick_store / 100 / ticks_per_s * 1e6 if ticks_per_s else NAN, "us"),
            Figure("call set-up under billing load", len(live) / setup_s, "calls/s"),
            Figure("call:end under billing load", len(live) / end_s, "calls/s",
                   note=f"{both}/{len(live)} ended on both sides; {args.end_inflight} in flight"),
        ], doc="docs/calls.md")
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 1)
        print(f"server stopped: {node.stop()}", flush=True)
        report_log(node.log_path)
    keep = args.keep_data
    try:
        keep = not reconcile(data_dir) or keep
    finally:
        if keep:
            print(f"kept {data_dir} (server.log, db.log, the store's files)", flush=True)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0 if ok else 1


def reconcile(data_dir: str) -> bool:
    """`python -m server reconcile` on the store the run left (the server stopped); True when it passed."""
    env = {**os.environ, "PAIRLY_DATA_DIR": data_dir, "MONGO_URL": "", "REDIS_URL": "", "PAIRLY_JWT_SECRET": SECRET,
           "PAIRLY_LOG_LEVEL": "warning"}
    try:
        done = subprocess.run([sys.executable, "-m", "server", "reconcile"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
    except subprocess.TimeoutExpired:
        print("reconcile: no answer within 600 s", flush=True)
        return False
    lines = [line.strip() for line in (done.stdout + done.stderr).strip().splitlines()]
    if done.returncode == 0:
        print("reconcile (exit 0): " + " | ".join(lines[:12]), flush=True)
    else:
        print(f"reconcile (exit {done.returncode}):", flush=True)
        for line in lines[-30:]:
            print(f"    {line}", flush=True)
    return done.returncode == 0


def report_log(path: Path) -> None:
    """Count the server's warning/error records (with their tracebacks); print the first of each kind
    in full and keep the log outside the data dir."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return
    records: list[list[str]] = []
    for line in lines:
        if re.match(r"^\d{4}-\d\d-\d\dT", line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    bad = [r for r in records if re.search(r"\[(warning|error|critical)", r[0])]
    kinds: dict[tuple[str, str], list[list[str]]] = {}
    for record in bad:
        event = re.sub(r"^\S+\s+\[\s*\w+\s*\]\s*", "", record[0]).split("  ")[0]
        last = next((line for line in reversed(record) if line.strip()), "")
        kinds.setdefault((event, last if len(record) > 1 else ""), []).append(record)
    print(f"server log: {len(lines)} lines, {len(bad)} warning/error records", flush=True)
    if not bad:
        return
    kept = Path(tempfile.gettempdir()) / f"{path.parent.name}-server.log"
    shutil.copyfile(path, kept)
    for (event, last), group in kinds.items():
        print(f"  {len(group)} x {event}{': ' + last.strip() if last else ''}  (first:)", flush=True)
        for line in group[0][:60]:
            print(f"    {line}", flush=True)
    print(f"  full server log kept at {kept}", flush=True)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000, help="concurrent calls (2 sockets each)")
    parser.add_argument("--interval", type=float, default=5.0, help="billing interval in seconds (the 'minute')")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the idle and steady windows")
    parser.add_argument("--setup-inflight", type=int, default=20, help="invite+accept pairs in flight")
    parser.add_argument("--end-inflight", type=int, default=200, help="call:end requests in flight")
    parser.add_argument("--setup-deadline", type=float, default=900.0,
                        help="seconds after which set-up starts no new call; the run goes on with those set up")
    parser.add_argument("--end-deadline", type=float, default=300.0,
                        help="seconds after which no new call:end is sent (then 60 s more for call:ended)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data dir (logs, store)")
    args = parser.parse_args()
    raise_nofile()
    signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: through the finally blocks that stop the server
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
