"""Fixtures for the browser tests (harness in browser.py). Everything here is module-scoped: one namespace,
one browser and one cluster per topology serve all the tests of a module, each test with its own users."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.server.demo.browser import Cluster, Pages, launch
from tests.support.netns import LoopbackNamespace

# Waiting for what a page shows is waiting for an event (a socket message re-rendering the page), bounded
# generously for a loaded 2-core machine; nothing asserts on how long it took.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def netns() -> Iterator[LoopbackNamespace]:
    ns = LoopbackNamespace()
    ns.create()  # fails the tests with the reason if it cannot be made: never a fallback to the host network
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture(scope="module")
def browser(netns: LoopbackNamespace) -> Iterator[Browser]:
    yield from launch(netns)


@pytest.fixture(scope="module", params=[1, 2], ids=["one-node", "two-nodes"])
def cluster(request: pytest.FixtureRequest, netns: LoopbackNamespace) -> Iterator[Cluster]:
    started = Cluster(netns, request.param)
    try:
        yield started.start()
    finally:
        started.stop()


@pytest.fixture
def pages(browser: Browser) -> Iterator[Pages]:
    opened = Pages(browser)
    yield opened
    opened.close()
