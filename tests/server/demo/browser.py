"""The browser-test harness: server nodes (one with its embedded store, or two sharing Redis and a store)
and Chromium, all inside a loopback-only network namespace (tests/support/netns.py), and pages signed in
as users of the demo client."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from server.store import _secantusd
from tests.conftest import TEST_SECRET
from tests.support.apps import ROOT, terminate
from tests.support.netns import LoopbackNamespace
from tests.support.services import log_dir

ARTIFACTS = ROOT / "artifacts" / "e2e"
CHROMIUM = os.environ.get("PAIRLY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",  # a synthetic camera and a beeping microphone
    "--use-fake-ui-for-media-stream",  # grant camera/microphone without asking
    "--allow-loopback-in-peer-connection",  # WebRTC may use 127.0.0.1 (the only address there is)
]
# Calls are billed every BILLING_S seconds here instead of every minute.
BILLING_S = 3
NODE_ENV = {
    "PAIRLY_MODE": "dev",
    "PAIRLY_JWT_SECRET": TEST_SECRET,
    "PAIRLY_LOG_LEVEL": "warning",
    "PAIRLY_LOG_FORMAT": "json",
    "PAIRLY_HOST": "127.0.0.1",
    "PAIRLY_CALL_BILLING_INTERVAL_S": str(BILLING_S),
    "PAIRLY_PRESENCE_GRACE_S": "0.2",
    "PAIRLY_RATE_LIMITS": "message:send=100/1",  # a test fills a history faster than a person types
    # The server's own WebRTC peer (the probe) offers loopback only; STUN points at loopback too, where
    # nothing answers — the pages still get a real ICE server list to pass to RTCPeerConnection.
    "PAIRLY_ICE_HOST_ADDRESSES": "127.0.0.1",
    "PAIRLY_STUN_URLS": "stun:127.0.0.1:3478",
}


@dataclass
class Node:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        terminate(self.proc)


@dataclass
class Cluster:
    """`count` nodes inside the namespace: one node keeps its own embedded store and no Redis; two share
    a redis-server and a SecantusDB started inside the namespace as well."""

    ns: LoopbackNamespace
    count: int
    nodes: list[Node] = field(default_factory=list)

    def start(self) -> Cluster:
        env = {**os.environ, **NODE_ENV}
        if self.count > 1:
            redis_port, store_port = self.ns.free_port(), self.ns.free_port()
            self.ns.popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", str(self.ns.dir), "--loglevel", "warning"])
            self.ns.popen([_secantusd(), "--host", "127.0.0.1", "--port", str(store_port), "--storage-path",
                           ":memory:", "--log-level", "WARNING", "--standalone"])
            self.ns.wait("port", str(redis_port))
            self.ns.wait("port", str(store_port))
            env.update({"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                        "MONGO_URL": f"mongodb://127.0.0.1:{store_port}/?directConnection=true&retryWrites=false"})
        for i in range(self.count):
            port = self.ns.free_port()
            log = log_dir() / f"e2e-node{i}-{port}.log"
            node_env = {**env, "PAIRLY_PORT": str(port), "PAIRLY_NODE_ID": f"e2e{i}",
                        "PAIRLY_DATA_DIR": str(self.ns.dir / f"node{i}")}
            proc = self.ns.popen([sys.executable, "-m", "server"], env=node_env, log=log, cwd=ROOT)
            self.nodes.append(Node(f"http://127.0.0.1:{port}", proc, log))
        for node in self.nodes:
            try:
                self.ns.wait("http", node.url + "/readyz", timeout=60)
            except TimeoutError as exc:
                raise RuntimeError(f"{exc}\n{node.log.read_text(errors='replace')[-2000:]}") from None
        return self

    def node(self, i: int) -> Node:
        return self.nodes[i % len(self.nodes)]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def launch(ns: LoopbackNamespace) -> Iterator[Browser]:
    """Chromium inside the namespace: Playwright's driver (and so the browser it starts) is launched
    through `ip netns exec`, named by PLAYWRIGHT_NODEJS_PATH for the moment Playwright starts it."""
    previous = os.environ.get("PLAYWRIGHT_NODEJS_PATH")
    os.environ["PLAYWRIGHT_NODEJS_PATH"] = ns.node_driver()
    try:
        pw = sync_playwright().start()
    finally:
        if previous is None:
            os.environ.pop("PLAYWRIGHT_NODEJS_PATH", None)
        else:
            os.environ["PLAYWRIGHT_NODEJS_PATH"] = previous
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        pw.stop()


class Pages:
    """Signed-in demo pages, each in its own browser context (its own sessionStorage: its own user)."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []

    def blank(self, node: Node, *, parser: str = "json") -> Page:
        """The sign-in screen in a fresh context."""
        context = self.browser.new_context(viewport={"width": 1280, "height": 760})
        self.contexts.append(context)
        page = context.new_page()
        page.goto(f"{node.url}/demo/?parser={parser}")
        page.locator("body[data-ready]").wait_for()  # the modules are loaded and listening
        return page

    def open(self, node: Node, user: str, *, parser: str = "json") -> Page:
        page = self.blank(node, parser=parser)
        page.get_by_test_id("signin-user").fill(user)
        page.get_by_test_id("signin-name").fill(user.capitalize())
        page.get_by_test_id("signin-submit").click()
        expect(page.get_by_test_id("conn")).to_have_text("connected")
        expect(page.get_by_test_id("balance")).not_to_have_text("\u2013")  # the placeholder until the wallet loads
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def user(name: str) -> str:
    """A fresh user id per test: the nodes (and their data) live for the whole module."""
    return f"{name}{uuid.uuid4().hex[:6]}"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


PageFactory = Callable[..., Page]
