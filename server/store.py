"""MongoDB: one `AsyncMongoClient` per process, an embedded SecantusDB child when no MONGO_URL is set.

The embedded store is a real MongoDB-compatible server (`secantusd-py`, WiredTiger storage) run as a
child process with its data under `PAIRLY_DATA_DIR/db`; the same PyMongo code talks to it.

Two settings differ from the driver's and SecantusDB's defaults (figures in docs/architecture.md,
"Embedded store settings"): its URL turns retryable writes off (SecantusDB keeps each retryable
write's reply for 30 min, up to 10,000, and scans them on every retryable write; our writes are
idempotent by key), and its oplog is capped at `PAIRLY_EMBEDDED_OPLOG_MAX_ENTRIES` (nothing of ours
reads it). An external `MONGO_URL` keeps the driver's defaults.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pymongo
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import PyMongoError

from config.settings import EMBEDDED_OPLOG_MAX_ENTRIES
from server.metrics import Metrics

Doc = dict[str, Any]


class StoreUnavailable(RuntimeError):
    """The store could not be reached within the configured wait."""


class _LatencyListener(monitoring.CommandListener):
    def __init__(self, metrics: Metrics) -> None:
        self._hist = metrics.store_latency

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        return None

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._hist.labels(event.command_name).observe(event.duration_micros / 1e6)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._hist.labels(event.command_name).observe(event.duration_micros / 1e6)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _secantusd() -> str:
    candidate = Path(sys.executable).with_name("secantusd-py")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("secantusd-py")
    if found is None:
        raise StoreUnavailable("secantusd-py not found: install the 'secantusdb' package or set MONGO_URL")
    return found


class EmbeddedStore:
    """A SecantusDB child process on a free loopback port. `storage=':memory:'` for throw-away data."""

    def __init__(self, storage: str, port: int | None = None, log_path: Path | None = None, *,
                 oplog_max_entries: int = EMBEDDED_OPLOG_MAX_ENTRIES) -> None:
        self.storage = storage
        self.port = port or free_port()
        self.oplog_max_entries = oplog_max_entries
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Carries `retryWrites=false`, so every client of this store (the app's, the reconcile CLI's,
        the tests' and benchmarks', which pass it on as MONGO_URL) skips retryable writes."""
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true&retryWrites=false"

    @property
    def _pidfile(self) -> Path | None:
        return None if self.storage == ":memory:" else Path(self.storage + ".pid")

    def _reap_orphan(self) -> None:
        """A previous server killed with SIGKILL leaves its store running and holding the data lock."""
        pidfile = self._pidfile
        if pidfile is None or not pidfile.exists():
            return
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (ValueError, OSError):
            return
        if b"secantusd" in cmdline:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)

    def start(self) -> None:
        if self.storage != ":memory:":
            Path(self.storage).mkdir(parents=True, exist_ok=True)
            self._reap_orphan()
        out = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(
            [_secantusd(), "--host", "127.0.0.1", "--port", str(self.port),
             "--storage-path", self.storage, "--log-level", "WARNING", *self._oplog_args()],
            stdout=out,
            stderr=out,
            # Own process group: Ctrl-C in a terminal reaches the server, which stops the store itself.
            start_new_session=True,
        )
        if self._pidfile is not None:
            self._pidfile.write_text(str(self._proc.pid))
            # Operator commands (`python -m server ban ...`) reach a running server's store through it.
            Path(self.storage + ".port").write_text(str(self.port))

    def _oplog_args(self) -> list[str]:
        # 0: no oplog at all (a standalone server: nothing of ours reads the oplog, and transactions,
        # which the ledger needs, work there too); else a replica set with the oplog capped at N.
        if self.oplog_max_entries == 0:
            return ["--standalone"]
        return ["--oplog-max-entries", str(self.oplog_max_entries)]

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None


def make_client(url: str, metrics: Metrics | None = None, *, timeout_s: float = 5.0) -> AsyncMongoClient[Doc]:
    listeners = [_LatencyListener(metrics)] if metrics is not None else []
    return AsyncMongoClient(
        url,
        tz_aware=True,
        serverSelectionTimeoutMS=int(timeout_s * 1000),
        connectTimeoutMS=int(timeout_s * 1000),
        event_listeners=listeners,
        appname="pairly",
    )


async def wait_until_reachable(client: AsyncMongoClient[Doc], timeout_s: float, what: str) -> None:
    """Ping until the server answers, or raise `StoreUnavailable` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with pymongo.timeout(min(2.0, max(0.1, deadline - time.monotonic()))):
                await client.admin.command("ping")
            return
        except PyMongoError as exc:
            last = exc
            await asyncio.sleep(0.2)
    raise StoreUnavailable(f"MongoDB at {what} not reachable after {timeout_s:.0f}s: {last}")


async def ping(client: AsyncMongoClient[Doc], timeout_s: float = 1.0) -> str | None:
    """None when the store answers within `timeout_s`, else the reason."""
    try:
        with pymongo.timeout(timeout_s):
            await client.admin.command("ping")
        return None
    except PyMongoError as exc:
        return f"mongodb: {type(exc).__name__}"


def redact(url: str) -> str:
    """The URL without credentials, for logs and errors."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


