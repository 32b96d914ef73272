"""Where the memory of idle connections goes: tracemalloc snapshots of a server diffed across N devices.

    .venv/bin/python -m loadtests.mem_profile [--connections 1000] [--warmup 200]
        [--namespaces /chat,/presence,/call] [--bare] [--top 25] [--frames 40]

Starts `python -m server` (embedded defaults, as `make run`) or the bare python-socketio server under
tracemalloc, opens `--warmup` idle devices (caches, lazily built objects and interned strings settle),
snapshots, opens `--connections` more, snapshots again and prints the difference per connection:
by allocation site (the innermost frame outside the standard library, so `asyncio.Queue()` called by
engineio counts as engineio) and by package. Each snapshot is taken after a full `gc.collect()`, so
these are live objects; RSS (`loadtests.bench_connections`) also holds garbage not yet collected and
allocator overhead. Tracing slows the server several times: keep N around 1,000. Bounded: the server
is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import runpy
import signal
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

from loadtests.bench_connections import SECRET
from loadtests.common import raise_nofile, rss_kb, start_server, wait_http
from loadtests.idle_clients import IdleClients, auth_json
from server.auth import mint_token

_STDLIB = sysconfig.get_paths()["stdlib"]
_ROOT = str(Path(__file__).resolve().parents[1])
_PACKAGES = ("engineio", "socketio", "aiohttp", "multidict", "yarl", "structlog", "prometheus_client",
             "redis", "pymongo", "uvloop", "msgpack")


# -- traced server (child process) ------------------------------------------------------------------
def _serve(bare: bool, frames: int) -> None:
    tracemalloc.start(frames)
    out = os.environ["PAIRLY_TRACE_OUT"]
    count = 0

    def dump(_signum: int, _frame: object) -> None:
        nonlocal count
        gc.collect()
        count += 1
        path = f"{out}.{count}"
        tracemalloc.take_snapshot().dump(path + ".tmp")
        os.replace(path + ".tmp", path)

    signal.signal(signal.SIGUSR1, dump)
    if bare:
        runpy.run_module("loadtests.bare_server", run_name="__main__")
    else:
        from server.__main__ import main

        sys.exit(main(["run"]))


# -- driver -----------------------------------------------------------------------------------------
def _site(tb: tracemalloc.Traceback) -> tuple[str, str]:
    """(allocation site, package) of a traceback: innermost frame outside the standard library."""
    for frame in reversed(tb):
        name = frame.filename
        if name.startswith(_STDLIB) and "site-packages" not in name:
            continue
        if "site-packages" in name:
            rel = name.split("site-packages/", 1)[1]
            return f"{rel}:{frame.lineno}", rel.split("/", 1)[0]
        if name.startswith(_ROOT):
            rel = name[len(_ROOT) + 1:]
            return f"{rel}:{frame.lineno}", rel.split("/", 1)[0] + "/ (ours)"
        return f"{name}:{frame.lineno}", "other"
    frame = tb[-1]
    rel = frame.filename[len(_STDLIB) + 1:] if frame.filename.startswith(_STDLIB) else frame.filename
    return f"{rel}:{frame.lineno}", "stdlib (no caller outside it)"


def _snapshot(pid: int, out: str, n: int) -> tracemalloc.Snapshot:
    path = f"{out}.{n}"
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 300
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError("no snapshot from the server")
        time.sleep(0.2)
    return tracemalloc.Snapshot.load(path)


async def _run(url: str, pid: int, out: str, args: argparse.Namespace) -> None:
    namespaces = args.namespaces.split(",")
    bare = args.bare

    def auth(i: int) -> str:
        return auth_json(None if bare else mint_token(SECRET, f"user{i}", ttl_s=3600))

    clients = IdleClients(url, namespaces)
    try:
        await clients.open(args.warmup, auth)
        await asyncio.sleep(2.0)
        rss0 = rss_kb(pid)
        before = _snapshot(pid, out, 1)
        await clients.open(args.connections, auth, start=args.warmup)
        await asyncio.sleep(2.0)  # background upserts, presence commits
        rss1 = rss_kb(pid)
        after = _snapshot(pid, out, 2)
    finally:
        await clients.close()
    n = args.connections
    diffs = after.compare_to(before, "traceback")
    sites: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    packages: dict[str, int] = defaultdict(int)
    for d in diffs:
        site, package = _site(d.traceback)
        sites[site] += d.size_diff
        counts[site] += d.count_diff
        packages[package] += d.size_diff
    total = sum(d.size_diff for d in diffs)
    print(f"server: {'bare python-socketio' if bare else 'pairly'}  namespaces: {','.join(namespaces)}  "
          f"devices: {clients.ok} ok, {clients.failed} failed (after {args.warmup} warm-up)")
    print(f"traced (live Python allocations): {total / n / 1024:.2f} KB per connection; "
          f"RSS under tracing: {(rss1 - rss0) / n:.1f} KB per connection")
    print("\nby package (KB per connection):")
    for package, size in sorted(packages.items(), key=lambda kv: -kv[1]):
        if abs(size) / n >= 10:
            print(f"  {size / n / 1024:7.2f}  {package}")
    print(f"\ntop {args.top} allocation sites (KB per connection, blocks per connection):")
    for site, size in sorted(sites.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {size / n / 1024:7.2f}  {counts[site] / n:6.1f}  {site}")
    for wanted in args.trace:
        print(f"\nlargest tracebacks allocating at {wanted} (outermost frame first, KB per connection):")
        found = sorted((d for d in diffs if _site(d.traceback)[0] == wanted), key=lambda d: -d.size_diff)
        for d in found[:3]:
            print(f"  {d.size_diff / n / 1024:.2f} KB, {d.count_diff / n:.1f} blocks:")
            for line in d.traceback.format(most_recent_first=False)[-24:]:
                print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--namespaces", default="/chat,/presence,/call")
    parser.add_argument("--bare", action="store_true", help="profile the bare python-socketio server")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--trace", action="append", default=[], metavar="SITE",
                        help="also print the full tracebacks of one allocation site, e.g. engineio/json.py:16")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.bare, args.frames)
        return
    raise_nofile()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "snap")
        env = {"PAIRLY_JWT_SECRET": SECRET, "PAIRLY_LOG_LEVEL": "warning", "PAIRLY_TRACE_OUT": out,
               "PAIRLY_MAX_TRANSPORTS_PER_IP": "1000000", "PAIRLY_CONNECT_DEADLINE_S": "600",
               "PAIRLY_DATA_DIR": str(Path(tmp) / "var")}
        cmd = [sys.executable, "-m", "loadtests.mem_profile", "--serve", "--frames", str(args.frames)]
        server = start_server(cmd + (["--bare"] if args.bare else []), env)
        try:
            wait_http(server.url + ("/" if args.bare else "/readyz"), 120, accept_any_status=args.bare)
            asyncio.run(_run(server.url, server.proc.pid, out, args))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
