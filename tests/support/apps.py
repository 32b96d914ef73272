"""Run the real app: in-process on a free port, or as real `python -m server` processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from config.settings import Settings, load_settings
from server.app import create_app
from server.store import free_port
from tests.support.services import log_dir

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunningApp:
    app: web.Application
    url: str
    settings: Settings


def terminate(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM a process we started and wait for it; SIGKILL if it is not gone within `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_settings(env: Mapping[str, str]) -> Settings:
    return load_settings(dict(env))


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[RunningApp]:
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield RunningApp(app=app, url=f"http://127.0.0.1:{port}", settings=settings)
    finally:
        await runner.cleanup()


class NodeProcess:
    """One real server node: `python -m server` with its own port, sharing the test's stores."""

    def __init__(self, env: Mapping[str, str], name: str) -> None:
        self.port = free_port()
        self.name = name
        self.log_path = log_dir() / f"{name}-{self.port}.log"
        full = {**os.environ, **env, "PAIRLY_PORT": str(self.port), "PAIRLY_HOST": "127.0.0.1",
                "PAIRLY_NODE_ID": name, "PAIRLY_LOG_FORMAT": "json"}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "server"], cwd=ROOT, env=full,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"node {self.name} not ready: {self.log_text()[-2000:]}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        terminate(self.proc)
        self._log.close()
