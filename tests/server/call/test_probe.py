"""`call:probe` with real aiortc peers on loopback: grades for a clean, a slow and a lossy path, audio
folded in, `unreachable`, the per-node cap, the per-user rate, malformed offers refused with nothing
started, and hundreds of probes leaving no task, UDP socket or peer connection behind."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from server.app import CORE, PROBES
from signaling.webrtc import host_addresses
from tests.server.call.conftest import CALL, call_env, error_code, ok, until
from tests.server.call.probe_support import LOOPBACK_ENV, run_probe
from tests.support.webrtc import LOOPBACK, ProbePeer, live_peer_connections, udp_sockets


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    return call_env(base_env, **LOOPBACK_ENV, PAIRLY_RATE_LIMITS="*=1000/1,call:probe=1000/1",
                    PAIRLY_PROBE_MAX_CONCURRENT="2")


async def test_a_clean_path_grades_excellent_and_is_remembered(app_server, clients) -> None:
    c = await clients(app_server, "pr-ann", namespaces=[CALL])
    result = await run_probe(c, ProbePeer())
    assert result["grade"] == "excellent" and result["mos"] >= 4.2
    assert result["loss_pct"] == 0 and 0 < result["rtt_ms"]["p50"] < 50
    assert result["rtt_ms"]["p50"] <= result["rtt_ms"]["p95"]
    prep = await ok(c, "call:prepare", {"to": "pr-bob", "media": "audio"})
    assert prep["probe"]["probe_id"] == result["probe_id"] and prep["probe"]["grade"] == "excellent"
    assert prep["probe"]["age_s"] >= 0 and prep["suggest_probe"] is False


async def test_late_echoes_raise_the_rtt_and_lower_the_score(app_server, clients) -> None:
    c = await clients(app_server, "pr-slow", namespaces=[CALL])
    clean = await run_probe(c, ProbePeer())
    slow = await run_probe(c, ProbePeer(delay_ms=150))
    assert 120 <= slow["rtt_ms"]["p50"] <= 180, slow
    assert slow["loss_pct"] == 0 and slow["mos"] < clean["mos"]


async def test_dropped_echoes_are_loss(app_server, clients) -> None:
    c = await clients(app_server, "pr-lossy", namespaces=[CALL])
    result = await run_probe(c, ProbePeer(drop_every=10))  # every 10th packet never comes back
    assert 7 <= result["loss_pct"] <= 13, result
    assert result["grade"] in ("good", "fair", "poor") and result["mos"] < 4.2


async def test_a_client_sending_audio_gets_rtp_figures_folded_in(app_server, clients) -> None:
    c = await clients(app_server, "pr-audio", namespaces=[CALL])
    result = await run_probe(c, ProbePeer(audio=True))
    assert result["grade"] in ("excellent", "good") and result["loss_pct"] < 5
    # The receiver's RTP figures were read, and the reported ones are at least as bad.
    assert result["audio"]["loss_pct"] <= result["loss_pct"] and result["audio"]["jitter_ms"] <= result["jitter_ms"]
    assert "audio" not in await run_probe(c, ProbePeer())


async def test_a_peer_that_never_connects_is_unreachable(app_server, clients) -> None:
    c = await clients(app_server, "pr-gone", namespaces=[CALL])
    peer = ProbePeer()
    offer = await peer.offer()
    await peer.close()  # its candidate port is gone: ICE can never complete
    result = c.next(CALL, "call:probe:result", timeout=10)
    ack = await ok(c, "call:probe", offer)
    got = await result
    assert got == {"probe_id": ack["probe_id"], "rtt_ms": None, "jitter_ms": None, "loss_pct": None, "mos": None,
                   "grade": "unreachable"}
    await until(lambda: not app_server.app[PROBES].active)


async def test_beyond_the_node_cap_probes_are_busy(app_server, clients) -> None:
    c = await clients(app_server, "pr-busy", namespaces=[CALL])
    # Two probes whose clients never take the answer: they hold the node's two slots until timeout.
    peers = [ProbePeer() for _ in range(2)]
    results = [c.next(CALL, "call:probe:result", timeout=10)]
    for peer in peers:
        await ok(c, "call:probe", await peer.offer())
    extra = ProbePeer()
    ack = await c.call(CALL, "call:probe", await extra.offer())
    assert error_code(ack) == "busy" and "2 probes" in ack["error"]["message"]
    await results[0]
    await until(lambda: not app_server.app[PROBES].active)
    for peer in peers:
        await peer.close()
    assert (await run_probe(c, extra))["grade"] == "excellent"  # a slot is free again


async def test_malformed_offers_are_refused_and_start_nothing(app_server, clients) -> None:
    c = await clients(app_server, "pr-bad", namespaces=[CALL])
    peer = ProbePeer()
    good = await peer.offer()
    no_channel = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # audio only, no data channel
    no_channel.addTransceiver("audio")
    with host_addresses(LOOPBACK):
        await no_channel.setLocalDescription(await no_channel.createOffer())
    video = good["sdp"] + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
    stripped = "\r\n".join(line for line in good["sdp"].split("\r\n")
                           if not line.startswith(("a=ice-ufrag", "a=ice-pwd", "a=fingerprint")))
    cases = [
        ("not an object", "offer"),
        ({"type": "answer", "sdp": good["sdp"]}, "type"),
        ({"type": "offer", "sdp": ""}, "sdp"),
        ({"type": "offer", "sdp": good["sdp"] + "a=x-pad:" + "x" * 20_000 + "\r\n"}, "bytes"),
        ({"type": "offer", "sdp": no_channel.localDescription.sdp}, "probe"),
        ({"type": "offer", "sdp": video}, "audio only"),
        ({"type": "offer", "sdp": "hello"}, "probe"),
        ({"type": "offer", "sdp": stripped}, "cannot be answered"),
    ]
    for payload, words in cases:
        ack = await c.call(CALL, "call:probe", payload)
        assert error_code(ack) == "invalid_payload", (payload, ack)
        assert words in ack["error"]["message"] or words == "offer", ack
    assert not app_server.app[PROBES].active and not c.received(CALL, "call:probe:result")
    await no_channel.close()
    await peer.close()


async def test_hundreds_of_probes_leave_nothing_behind(app_server, clients) -> None:
    c = await clients(app_server, "pr-many", namespaces=[CALL])
    await run_probe(c, ProbePeer())  # warm up: imports, codec tables, the store's collections
    await until(lambda: not app_server.app[PROBES].active)
    base = (len(asyncio.all_tasks()), udp_sockets(), live_peer_connections())
    probes = app_server.app[PROBES]
    # Short probes (2 packets each) to run a few hundred: the same code path as a 5 s one.
    probes.settings = dataclasses.replace(probes.settings, duration_s=0.02, interval_ms=10.0)
    for _ in range(200):
        peer = ProbePeer()
        result = c.next(CALL, "call:probe:result")
        ack = await ok(c, "call:probe", await peer.offer())
        server_pc = probes.active[ack["probe_id"]].pc
        await peer.accept(ack)
        assert (await result)["grade"] == "excellent"
        # The server closes its own peer: checked while the client's is still open, so that a close
        # started by the client (DTLS close_notify) cannot be what closed it.
        await until(lambda: ack["probe_id"] not in probes.active, step=0.005)  # noqa: B023
        assert server_pc.connectionState == "closed"
        await peer.close()
    del peer, server_pc  # the test's own references are not leaks
    await until(lambda: not probes.active)

    def settled() -> tuple[int, int, int] | None:
        state = (len(asyncio.all_tasks()), udp_sockets(), live_peer_connections())
        return state if all(now <= then for now, then in zip(state, base, strict=True)) else None

    # Closing is asynchronous on both sides (aiortc ends its transports' tasks): wait for the counts
    # to come back; a leak keeps them above the baseline and fails here.
    assert await until(settled)


async def test_a_probe_stops_when_its_socket_leaves(app_server, clients) -> None:
    c = await clients(app_server, "pr-left", namespaces=[CALL])
    peer = ProbePeer()
    ack = await ok(c, "call:probe", await peer.offer())  # the answer is never taken: it would wait
    probes = app_server.app[PROBES]
    server_pc = probes.active[ack["probe_id"]].pc
    await c.close()
    await until(lambda: not probes.active)
    assert server_pc.connectionState == "closed"
    # Stopped, not timed out: no verdict was recorded for the user.
    assert await app_server.app[CORE].db["call_probes"].find_one({"_id": "pr-left"}) is None
    await peer.close()
