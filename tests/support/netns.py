"""A network namespace with only `lo` up, for the browser tests.

Chromium, the server nodes and their stores all run inside it, so no WebRTC candidate on any address but
loopback can exist, whatever the browsers gather. The test process itself stays outside (it shares the
session's Redis and store fixtures with the rest of the suite) and drives the browsers through
Playwright's driver, which is started inside the namespace and talks to the test over pipes.

Creating the namespace needs root and iproute2 (`ip netns`). If it cannot be made the tests fail with
that message: they never fall back to the host's network.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from server.store import free_port

_POLL = """
import socket, sys, time, urllib.request
kind, target, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        if kind == "port":
            socket.create_connection(("127.0.0.1", int(target)), timeout=1).close()
            sys.exit(0)
        with urllib.request.urlopen(target, timeout=1) as resp:
            if resp.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(f"{target} not ready after {timeout} s")
"""


class NamespaceUnavailable(RuntimeError):
    pass


class LoopbackNamespace:
    def __init__(self) -> None:
        self.name = f"pairly-e2e-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._created = False
        self._procs: list[subprocess.Popen[bytes]] = []
        self.dir = Path(tempfile.mkdtemp(prefix="pairly-e2e-"))

    def create(self) -> None:
        if shutil.which("ip") is None:
            raise NamespaceUnavailable("the browser tests need `ip` (iproute2) to make a loopback-only network "
                                       "namespace; `make test` installs it")
        self._ip("netns", "add", self.name)
        self._created = True
        self._ip("-n", self.name, "link", "set", "lo", "up")
        links = self._ip("-n", self.name, "-o", "link", "show")
        names = [line.split(":")[1].strip() for line in links.splitlines() if line.strip()]
        if names != ["lo"]:
            raise NamespaceUnavailable(f"namespace {self.name} has interfaces {names}, expected only lo")

    def _ip(self, *args: str) -> str:
        result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            self.delete()
            raise NamespaceUnavailable(
                f"cannot set up the loopback-only network namespace for the browser tests "
                f"(`ip {' '.join(args)}`: {result.stderr.strip() or f'exit {result.returncode}'}); "
                "they need root — they never run on the host's network instead")
        return result.stdout

    @property
    def prefix(self) -> list[str]:
        """Run a command inside: `ip netns exec` enters the namespace and execs it (same pid)."""
        return ["ip", "netns", "exec", self.name]

    def popen(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, log: Path | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen([*self.prefix, *argv], env=dict(env) if env is not None else None, cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT)
        if log:
            out.close()  # type: ignore[union-attr]
        self._procs.append(proc)
        return proc

    def wait(self, kind: str, target: str, timeout: float = 30.0) -> None:
        """Block until a port accepts connections (`kind="port"`) or a URL answers 200 inside."""
        result = subprocess.run([*self.prefix, sys.executable, "-c", _POLL, kind, target, str(timeout)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise TimeoutError(result.stderr.strip() or f"{target} not ready")

    def node_driver(self) -> str:
        """A launcher for Playwright's bundled Node.js that runs it (and so Chromium) inside the namespace;
        Playwright starts it when PLAYWRIGHT_NODEJS_PATH names it."""
        import playwright

        node = Path(playwright.__file__).parent / "driver" / "node"
        script = self.dir / "node-in-netns"
        script.write_text(f'#!/bin/sh\nexec {" ".join(self.prefix)} "{node}" "$@"\n')
        script.chmod(0o755)
        return str(script)

    def free_port(self) -> int:
        # Nothing else listens in a fresh namespace; a port free on the host is as good as any.
        return free_port()

    def delete(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self._procs.clear()
        if self._created:
            # Whatever is still running inside (a store a killed node left behind, a stray browser
            # process) is ours: end it, so nothing outlives the tests.
            pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False)
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, check=False)
            self._created = False
        shutil.rmtree(self.dir, ignore_errors=True)
