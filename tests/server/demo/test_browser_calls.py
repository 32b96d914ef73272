"""Real WebRTC calls between two Chromium pages through the demo client: the pre-call gate, ringing,
accept, media flowing both ways (read from RTCPeerConnection.getStats() in both pages), per-minute
charges (a minute is BILLING_S seconds here), low-balance warnings, and the right `call:ended` — on one
node, and with caller and callee on different nodes sharing Redis."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from tests.server.demo.browser import BILLING_S, Cluster, Pages, shot, user

# Waits inside the page until every listed kind has received `least` RTP packets, or `timeout_ms` passed;
# returns the counters, which the test then checks.
WAIT_FOR_MEDIA = """async ([kinds, least, timeoutMs]) => {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await window.pairly.calls.stats();
    if (kinds.every((k) => s.inbound[k] >= least && s.outbound[k] >= least) || Date.now() > end) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
}"""


def _call(caller: Page, callee: Page, callee_id: str, caller_id: str, media: str) -> None:
    caller.get_by_test_id("contact").fill(callee_id)
    caller.get_by_test_id("contact-open").click()
    caller.get_by_test_id(f"call-{media}").click()
    expect(callee.get_by_test_id("call-state")).to_have_text(f"{caller_id} is calling ({media})")
    expect(caller.get_by_test_id("gate-callee")).to_have_text("reachable (online)")
    callee.get_by_test_id("call-accept").click()
    for page in (caller, callee):
        expect(page.get_by_test_id("call-state")).to_have_attribute("data-phase", "connected")


def _media_flows(page: Page, kinds: list[str]) -> None:
    stats: dict[str, Any] = page.evaluate(WAIT_FOR_MEDIA, [kinds, 20, 30_000])
    for kind in kinds:
        assert stats["inbound"][kind] >= 20, stats
        assert stats["outbound"][kind] >= 20, stats


def _ended(page: Page) -> dict[str, Any]:
    expect(page.get_by_test_id("call-state")).to_have_attribute("data-phase", "ended")
    ended: dict[str, Any] = page.evaluate("window.pairly.calls.lastEnded")
    return ended


def test_video_call_connects_is_billed_per_minute_and_ends_completed(cluster: Cluster, pages: Pages) -> None:
    a, b = user("alice"), user("bob")
    alice = pages.open(cluster.node(0), a)
    bob = pages.open(cluster.node(1), b)
    alice.get_by_test_id("package").select_option("small")
    alice.get_by_test_id("buy").click()
    expect(alice.get_by_test_id("balance")).to_have_text("60")

    _call(alice, bob, b, a, "video")
    expect(alice.get_by_test_id("gate-rate")).to_have_text("10 credits/min")
    expect(alice.get_by_test_id("gate-you-can-afford")).to_have_text("6 min")
    _media_flows(alice, ["audio", "video"])
    _media_flows(bob, ["audio", "video"])
    # Minute 1 is charged at accept, minute 2 at the first boundary.
    expect(alice.get_by_test_id("call-log")).to_contain_text("minute 2 charged: 10 credits")
    expect(alice.get_by_test_id("ice")).to_have_text("ICE servers: stun:127.0.0.1:3478")
    shot(alice, f"video-call-caller-{cluster.count}node")
    shot(bob, f"video-call-callee-{cluster.count}node")

    alice.get_by_test_id("call-hangup").click()
    caller_end, callee_end = _ended(alice), _ended(bob)
    assert caller_end == callee_end
    assert caller_end["reason"] == "completed"
    assert caller_end["billed_minutes"] >= 2
    assert caller_end["credits"] == 10 * caller_end["billed_minutes"]
    expect(alice.get_by_test_id("call-state")).to_contain_text("Call ended (completed)")
    expect(alice.get_by_test_id("balance")).to_have_text(str(60 - caller_end["credits"]))


def test_audio_call_warns_on_low_balance_and_ends_when_credits_run_out(cluster: Cluster, pages: Pages) -> None:
    a, b = user("alice"), user("bob")
    alice = pages.open(cluster.node(0), a)  # 10 credits: two minutes at 5 a minute
    bob = pages.open(cluster.node(1), b)

    _call(alice, bob, b, a, "audio")
    expect(alice.get_by_test_id("gate-you-can-afford")).to_have_text("2 min")
    # Media is read once the call is over too (the page keeps the last getStats() counters): the call
    # lasts two billed minutes of BILLING_S seconds, which a loaded machine could otherwise outrun.
    expect(alice.get_by_test_id("call-warning")).to_contain_text("Low balance")
    caller_end, callee_end = _ended(alice), _ended(bob)
    assert caller_end == callee_end
    assert caller_end["reason"] == "insufficient_credits"
    assert (caller_end["billed_minutes"], caller_end["credits"]) == (2, 10)
    assert caller_end["duration_s"] >= 2 * BILLING_S - 1
    for page in (alice, bob):
        last = page.evaluate("window.pairly.calls.lastStats")
        assert last["inbound"]["audio"] >= 20 and last["outbound"]["audio"] >= 20, last
        assert last["inbound"]["video"] == 0, last
    expect(alice.get_by_test_id("call-log")).to_contain_text("minute 2 charged: 5 credits, balance 0")
    expect(alice.get_by_test_id("notice-error").first).to_contain_text("ran out of credits")
    expect(alice.get_by_test_id("balance")).to_have_text("0")
    shot(alice, f"audio-call-ended-{cluster.count}node")
