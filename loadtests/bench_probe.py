"""Does the aiortc probe stall the socket loop? Chat latency on one node with 0, then N concurrent
probes running, in the same run.

    .venv/bin/python -m loadtests.bench_probe [--probes 0,5,10,20] [--rate 50] [--seconds 10]
                                              [--probe-duration 5]

Starts one `python -m server` on a free loopback port (embedded store in a temporary data dir, free
messages so the store does not dominate, WebRTC pinned to 127.0.0.1, no STUN). A paced chat load of
`--rate` messages/s between 5 user pairs measures send→deliver latency (p50/p99) at the recipient.
For each N in `--probes`, a separate worker process (so the client peers' DTLS and echo work do not
run on the measuring loop) keeps N probes running back to back: offer, answer, echo every packet,
wait for `call:probe:result`, again. The figure: the largest N whose chat p99 stays within 2x the
unloaded p99 of the same run. Both processes share this machine's cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
import uuid
from typing import Any

import socketio

from loadtests.benchjson import Figure, emit
from loadtests.common import percentile, raise_nofile, start_server, wait_http
from server.auth import mint_token

SECRET = "bench-secret-0123456789-0123456789-abcdef"
PAIRS = 5


def _server_env(data_dir: str, max_probes: int, probe_duration: float) -> dict[str, str]:
    return {
        "PAIRLY_MODE": "dev", "PAIRLY_DATA_DIR": data_dir, "MONGO_URL": "", "REDIS_URL": "",
        "PAIRLY_JWT_SECRET": SECRET, "PAIRLY_LOG_LEVEL": "warning",
        "PAIRLY_RATE_LIMITS": "*=1000000/1,message:send=1000000/1,call:probe=1000000/1",
        "PAIRLY_SIGNUP_BONUS": "0", "PAIRLY_PRICE_MESSAGE": "0", "PAIRLY_MAX_CONNECTIONS_PER_USER": "1000",
        "PAIRLY_MAX_TRANSPORTS_PER_IP": "1000000", "PAIRLY_STUN_URLS": "none",
        "PAIRLY_ICE_HOST_ADDRESSES": "127.0.0.1", "PAIRLY_PROBE_MAX_CONCURRENT": str(max(1, max_probes)),
        "PAIRLY_PROBE_DURATION_S": str(probe_duration),
    }


# -- chat load -------------------------------------------------------------------------------------
async def _chat_client(url: str, user: str, latencies: list[float], measuring: list[bool]) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)

    async def on_message(data: Any) -> None:
        if measuring[0]:
            latencies.append(time.perf_counter() - float(data["text"]))

    sio.on("message:new", on_message, namespace="/chat")
    await sio.connect(url, namespaces=["/chat"], auth={"token": mint_token(SECRET, user, ttl_s=3600)},
                      transports=["websocket"], wait_timeout=10)
    return sio


async def chat_phase(url: str, rate: float, seconds: float) -> tuple[float, float, int]:
    """Paced sends for `seconds` (after a 1 s warm-up); (p50 ms, p99 ms, delivered)."""
    latencies: list[float] = []
    measuring = [False]
    tag = uuid.uuid4().hex[:6]
    users = [(f"bp{tag}a{i}", f"bp{tag}b{i}") for i in range(PAIRS)]
    clients = {u: await _chat_client(url, u, latencies, measuring) for pair in users for u in pair}
    senders = [(clients[a], b) for a, b in users] + [(clients[b], a) for a, b in users]

    async def send(sio: socketio.AsyncClient, to: str) -> None:
        with contextlib.suppress(Exception):
            await sio.call("message:send", {"to": to, "client_id": uuid.uuid4().hex,
                                            "text": repr(time.perf_counter())}, namespace="/chat", timeout=30)

    pending: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    n = 0
    while (elapsed := time.perf_counter() - start) < seconds + 1:
        measuring[0] = elapsed >= 1
        sio, to = senders[n % len(senders)]
        task = asyncio.create_task(send(sio, to))
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
    await asyncio.gather(*pending)
    await asyncio.sleep(0.5)
    measuring[0] = False
    for sio in clients.values():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sio.disconnect(), 2)
    ms = [x * 1000 for x in latencies]
    return percentile(ms, 50), percentile(ms, 99), len(ms)


# -- probe worker (a separate process) ------------------------------------------------------------
async def probe_worker(url: str, count: int) -> None:
    from tests.support.webrtc import ProbePeer  # loopback-pinned aiortc client peer

    done = 0
    errors = 0

    async def loop(i: int) -> None:
        nonlocal done, errors
        sio = socketio.AsyncClient(reconnection=False)
        results: asyncio.Queue[Any] = asyncio.Queue()
        sio.on("call:probe:result", results.put, namespace="/call")
        await sio.connect(url, namespaces=["/call"], auth={"token": mint_token(SECRET, f"bpw{i}", ttl_s=3600)},
                          transports=["websocket"], wait_timeout=10)
        while True:
            peer = ProbePeer()
            try:
                ack = await sio.call("call:probe", await peer.offer(), namespace="/call", timeout=30)
                if not ack.get("ok"):
                    errors += 1
                    await asyncio.sleep(0.5)
                    continue
                await peer.accept(ack)
                await asyncio.wait_for(results.get(), 60)
                done += 1
            finally:
                await peer.close()

    tasks = [asyncio.create_task(loop(i)) for i in range(count)]
    try:
        while True:
            await asyncio.sleep(1)
            print(json.dumps({"done": done, "errors": errors}), flush=True)
    finally:
        for t in tasks:
            t.cancel()


# -- driver ----------------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> None:
    counts = [int(x) for x in args.probes.split(",")]
    data_dir = tempfile.mkdtemp(prefix="pairly-bench-probe-")
    server = start_server([sys.executable, "-m", "server"], _server_env(data_dir, max(counts), args.probe_duration))
    rows = []
    try:
        wait_http(server.url + "/readyz", 60)
        for count in counts:
            worker = None
            if count:
                worker = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "loadtests.bench_probe", "--worker", server.url, "--probes", str(count),
                    stdout=asyncio.subprocess.PIPE)
                await asyncio.sleep(args.probe_duration)  # let the probes reach their steady state
            p50, p99, delivered = await chat_phase(server.url, args.rate, args.seconds)
            probes_done = 0
            if worker is not None:
                worker.terminate()
                out, _ = await asyncio.wait_for(worker.communicate(), 15)
                lines = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
                probes_done = lines[-1]["done"] if lines else 0
            rows.append((count, p50, p99, delivered, probes_done))
            print(f"probes={count:4d}  chat p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  ({delivered} msgs, "
                  f"{probes_done} probes completed)", flush=True)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    base = rows[0][2] if rows and rows[0][0] == 0 else None
    if base:
        ok = [c for c, _, p99, _, _ in rows if p99 <= 2 * base]
        print(f"unloaded chat p99 {base:.1f} ms; largest probe count with p99 <= 2x: {max(ok) if ok else 'none'}")
    unloaded = "no probes, same run"
    figures = [Figure(f"chat p99 ({args.rate:g} msg/s) with {count} concurrent probes", p99, "ms",
                      base, unloaded, f"p50 {p50:.1f} ms; {done} probes completed")
               for count, p50, p99, _, done in rows if count]
    if base:
        figures.insert(0, Figure("largest probe count with chat p99 within 2x unloaded",
                                 float(max(ok)) if ok else float("nan"), "probes",
                                 note=f"unloaded chat p99 {base:.1f} ms, same run"))
    emit("bench_probe", figures, doc="docs/call-quality.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", default="0,5,10,20", help="comma-separated concurrent probe counts (0 first)")
    parser.add_argument("--rate", type=float, default=50.0, help="chat messages per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--probe-duration", type=float, default=5.0)
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_nofile()
    if args.worker:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(probe_worker(args.worker, int(args.probes)))
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
