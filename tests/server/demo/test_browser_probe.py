"""The pre-call probe from the demo page: the page offers a WebRTC connection with a `probe` data channel
to the server's own aiortc peer (`call:probe`), echoes what the server sends, and shows the grade from
`call:probe:result`; the pre-call gate then carries that verdict. Needs the server side of the probe (the
call-quality work)."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.server.demo.browser import Cluster, Pages, shot, user

GRADES = {"excellent", "good", "fair", "poor"}


def test_probe_from_the_page_returns_a_grade_and_the_gate_shows_it(cluster: Cluster, pages: Pages) -> None:
    dave = user("dave")
    pages.open(cluster.node(1), dave)
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

    # The gate before a call answers with the caller's last probe; cancelling while it rings ends it.
    page.get_by_test_id("contact").fill(dave)
    page.get_by_test_id("contact-open").click()
    page.get_by_test_id("call-audio").click()
    expect(page.get_by_test_id("gate-last-probe")).to_contain_text(result["grade"])
    expect(page.get_by_test_id("call-state")).to_have_attribute("data-phase", "ringing")
    shot(page, f"probe-{cluster.count}node")
    page.get_by_test_id("call-hangup").click()
    expect(page.get_by_test_id("call-state")).to_contain_text("Call ended (cancelled)")
