"""The pre-call probe from the demo page: the page offers a WebRTC connection with a `probe` data channel
to the server's own aiortc peer (`call:probe`), echoes what the server sends, and shows the grade from
`call:probe:result`. Needs the server side of the probe (the call-quality work)."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.server.demo.browser import Cluster, Pages, shot, user

GRADES = {"excellent", "good", "fair", "poor"}


def test_probe_from_the_page_returns_a_grade(cluster: Cluster, pages: Pages) -> None:
    page = pages.open(cluster.node(0), user("carol"))
    page.get_by_test_id("probe-run").click()
    expect(page.get_by_test_id("probe-result")).not_to_have_text("testing…")
    # Either the grade or the refusal in words, e.g. "failed: … unknown event 'call:probe'".
    assert page.get_by_test_id("probe-result").inner_text().startswith("Grade:"), \
        page.get_by_test_id("probe-result").inner_text()
    result: dict[str, Any] = page.evaluate("window.pairly.probe.last")
    # Browser and server share the namespace's loopback: the path is as good as it gets.
    assert result["grade"] in GRADES, result
    assert 1.0 <= result["mos"] <= 4.5, result
    assert result["rtt_ms"]["p50"] <= result["rtt_ms"]["p95"], result
    assert page.get_by_test_id("probe-result").get_attribute("data-grade") == result["grade"]
    shot(page, f"probe-{cluster.count}node")
