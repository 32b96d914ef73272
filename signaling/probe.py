"""The pre-call probe (`call:probe`, docs/call-quality.md): a server-side aiortc peer measures the path to
a client over a WebRTC data channel named `probe`.

The client offers; the server answers with its own `RTCPeerConnection` (ICE servers from config,
host candidates on `PAIRLY_ICE_HOST_ADDRESSES`), then, once the channel is open, sends a
sequence-numbered, timestamped packet every `interval_ms` for `duration_s`; the client echoes each
one back unchanged. RTT p50/p95, jitter (RFC 3550 over the RTTs in arrival order) and loss come from
the echoes; when the client also sends audio, aiortc's receiver-side RTP loss and jitter are folded
in (the worse of the two). The result (`call:probe:result`) goes to the probing socket, the user's
latest verdict is kept for `call:prepare` and the user's next call, and the peer is closed.

Safety: at most `max_concurrent` probes per node (`busy`); a per-user rate (the `call:probe` entry
of `PAIRLY_RATE_LIMITS`, default 3 per 60 s, counted in Redis across nodes: `rate_limited`); offers
bounded in size and required to carry an SCTP data channel (`invalid_payload`); a connect timeout
after which the probe ends `unreachable`. All of it runs on the event loop as aiortc's own
coroutines; the CPU-heavy step, the DTLS handshake, takes a few milliseconds per probe
(loadtests/bench_probe.py measures the effect on chat latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiortc import RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription
from pymongo.asynchronous.database import AsyncDatabase

from config.errors import Busy, Conflict, InvalidPayload
from config.settings import ConfigError, Env
from signaling import mos as quality
from signaling.ice import IceConfig
from signaling.model import Doc, now, ts
from signaling.ports import CallEvents
from signaling.webrtc import host_addresses, machine_addresses

log = structlog.get_logger(__name__)

CHANNEL = "probe"
_PROBE_USER = "pairly-probe"  # TURN credentials of the server's own peer


@dataclass(frozen=True)
class ProbeSettings:
    duration_s: float = 5.0
    interval_ms: float = 50.0
    """One packet every interval: 100 packets over the default 5 s."""
    connect_timeout_s: float = 10.0
    """ICE, DTLS and the `probe` channel must be up by then, or the probe ends `unreachable`."""
    echo_grace_s: float = 1.0
    """How long after the last packet late echoes still count (later ones are lost)."""
    max_concurrent: int = 20
    max_sdp_bytes: int = 16 * 1024
    max_age_s: float = 3600.0
    """`call:prepare` suggests a new probe when the caller's last one is older (or absent)."""
    host_addresses: tuple[str, ...] | None = None
    """Addresses the probe peer gathers host candidates on; None: every interface (aioice's default)."""

    @classmethod
    def from_env(cls, env: Env) -> ProbeSettings:
        hosts = env.items("PAIRLY_ICE_HOST_ADDRESSES")
        for host in hosts:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ConfigError("PAIRLY_ICE_HOST_ADDRESSES", f"must be IP addresses; got {host!r}") from None
        settings = cls(
            duration_s=env.number("PAIRLY_PROBE_DURATION_S", cls.duration_s, min_value=0.01),
            interval_ms=env.number("PAIRLY_PROBE_INTERVAL_MS", cls.interval_ms, min_value=5.0),
            connect_timeout_s=env.number("PAIRLY_PROBE_TIMEOUT_S", cls.connect_timeout_s, min_value=0.5),
            echo_grace_s=env.number("PAIRLY_PROBE_ECHO_GRACE_S", cls.echo_grace_s, min_value=0.05),
            max_concurrent=env.integer("PAIRLY_PROBE_MAX_CONCURRENT", cls.max_concurrent, min_value=1),
            max_sdp_bytes=env.integer("PAIRLY_PROBE_MAX_SDP_BYTES", cls.max_sdp_bytes, min_value=512),
            max_age_s=env.number("PAIRLY_PROBE_MAX_AGE_S", cls.max_age_s, min_value=1.0),
            host_addresses=hosts or None,
        )
        if settings.interval_ms / 1000 > settings.duration_s:
            raise ConfigError("PAIRLY_PROBE_INTERVAL_MS", "must not exceed PAIRLY_PROBE_DURATION_S")
        return settings

    @property
    def packets(self) -> int:
        return max(1, int(self.duration_s * 1000 / self.interval_ms))


def parse_offer(data: Any, max_bytes: int) -> str:
    """The offer's SDP, or InvalidPayload: an object `{"sdp", "type": "offer"}` whose SDP parses,
    fits `max_bytes` and has an SCTP application section (where the `probe` channel lives)."""
    if not isinstance(data, dict):
        raise InvalidPayload("payload must be an object")
    if data.get("type") != "offer":
        raise InvalidPayload("type must be 'offer'")
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise InvalidPayload("sdp must be a non-empty string")
    if len(sdp.encode()) > max_bytes:
        raise InvalidPayload(f"sdp exceeds {max_bytes} bytes")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception:
        raise InvalidPayload("sdp is not a valid session description") from None
    if not any(m.kind == "application" and "SCTP" in m.profile for m in parsed.media):
        raise InvalidPayload(f"the offer must carry the '{CHANNEL}' data channel (an SCTP application section)")
    if any(m.kind not in ("audio", "application") for m in parsed.media):
        raise InvalidPayload("a probe offer may carry the data channel and audio only")
    return sdp


class ProbeStore:
    """Each user's latest probe verdict (`call_probes`, `_id` = user): for `call:prepare` and to
    attach to the user's next call."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.probes = db["call_probes"]

    async def save(self, user: str, result: Doc) -> None:
        await self.probes.replace_one({"_id": user}, {**result, "_id": user, "at": now()}, upsert=True)

    async def latest(self, users: list[str]) -> dict[str, Doc]:
        return {d["_id"]: d async for d in self.probes.find({"_id": {"$in": users}})}


def verdict(doc: Doc | None, at: float) -> Doc | None:
    """A stored probe as `call:prepare` and call records show it."""
    if doc is None:
        return None
    return {"probe_id": doc.get("probe_id"), "grade": doc.get("grade"), "mos": doc.get("mos"),
            "age_s": max(0, round(at - ts(doc["at"])))}


@dataclass
class _Probe:
    probe_id: str
    user: str
    sid: str
    pc: RTCPeerConnection
    channel: asyncio.Future[RTCDataChannel] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    sent: dict[int, float] = field(default_factory=dict)
    rtts: list[float] = field(default_factory=list)
    """RTTs in ms, in arrival order."""
    sending: bool = True
    all_echoed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once sending is over and every packet sent has come back."""
    audio: list[MediaStreamTrack] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class ProbeService:
    def __init__(self, *, settings: ProbeSettings, ice: IceConfig, events: CallEvents, store: ProbeStore,
                 node: str) -> None:
        self.settings = settings
        self.ice = ice
        self.events = events
        self.store = store
        self.node = node
        self.active: dict[str, _Probe] = {}
        self._hosts = list(settings.host_addresses) if settings.host_addresses else machine_addresses()

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        log.info("probe_ready", hosts=self._hosts, max_concurrent=self.settings.max_concurrent)

    async def stop(self) -> None:
        for probe in list(self.active.values()):
            await self._abort(probe)

    async def device_gone(self, sid: str) -> None:
        """The probing socket left: nobody will read the result, stop now."""
        for probe in [p for p in self.active.values() if p.sid == sid]:
            await self._abort(probe)

    # -- the event ---------------------------------------------------------------------------------
    async def probe(self, user: str, sid: str, data: Any) -> Doc:
        offer = parse_offer(data, self.settings.max_sdp_bytes)
        self._check_capacity()
        probe = _Probe("p" + secrets.token_hex(8), user, sid, RTCPeerConnection(self._configuration()))
        self.active[probe.probe_id] = probe  # no await since the check: the cap holds
        self._listen(probe)
        try:
            await probe.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            with host_addresses(self._hosts):
                await probe.pc.setLocalDescription(await probe.pc.createAnswer())
        except Exception as exc:
            await self._close(probe)
            log.info("probe_offer_refused", user=user, error=str(exc))
            raise InvalidPayload("the offer cannot be answered: check its ICE and DTLS attributes") from None
        if probe.probe_id not in self.active:  # the socket left while the answer was being made
            raise Conflict("the probe was stopped: the connection closed")
        probe.task = asyncio.create_task(self._run(probe), name=f"probe-{probe.probe_id}")
        answer = probe.pc.localDescription
        return {"probe_id": probe.probe_id, "sdp": answer.sdp, "type": answer.type}

    def _check_capacity(self) -> None:
        if len(self.active) >= self.settings.max_concurrent:
            raise Busy(f"this server is running its maximum of {self.settings.max_concurrent} probes; retry shortly")

    def _configuration(self) -> RTCConfiguration:
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
                   for s in self.ice.servers(_PROBE_USER, time.time())]
        return RTCConfiguration(iceServers=servers)

    def _listen(self, probe: _Probe) -> None:
        pc = probe.pc

        @pc.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            if channel.label != CHANNEL or probe.channel.done():
                channel.close()
                return
            channel.on("message", lambda message: self._echo(probe, message))
            probe.channel.set_result(channel)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                probe.audio.append(track)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "failed" and not probe.channel.done():
                probe.channel.cancel()

    def _echo(self, probe: _Probe, message: Any) -> None:
        """An echo back from the client: its RTT, once per sequence number; anything else is ignored."""
        arrived = time.perf_counter()
        try:
            seq = json.loads(message)["seq"] if isinstance(message, str) else None
        except (ValueError, TypeError, KeyError):
            return
        sent = probe.sent.pop(seq, None) if isinstance(seq, int) else None
        if sent is None:
            return
        probe.rtts.append((arrived - sent) * 1000)
        if not probe.sent and not probe.sending:
            probe.all_echoed.set()

    # -- measuring ---------------------------------------------------------------------------------
    async def _run(self, probe: _Probe) -> None:
        try:
            result = await self._measure(probe)
            await self.events.to_device(self.node, probe.sid, "call:probe:result", result)
            await self.store.save(probe.user, result)
            log.info("probe_done", user=probe.user, probe=probe.probe_id, grade=result["grade"], mos=result["mos"])
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("probe_failed", probe=probe.probe_id)
        finally:
            await self._close(probe)

    async def _measure(self, probe: _Probe) -> Doc:
        s = self.settings
        try:
            channel = await asyncio.wait_for(asyncio.shield(probe.channel), s.connect_timeout_s)
        except (TimeoutError, asyncio.CancelledError):
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # the probe itself is being stopped
                raise
            # Timed out, or ICE failed (the channel future was cancelled): never connected.
            return {"probe_id": probe.probe_id, "rtt_ms": None, "jitter_ms": None, "loss_pct": None, "mos": None,
                    "grade": quality.UNREACHABLE}
        drains = [asyncio.create_task(_drain(t), name="probe-audio") for t in probe.audio]
        sent = 0
        try:
            start = time.perf_counter()
            for seq in range(s.packets):
                # Paced against the start, so a late wake-up does not stretch the probe.
                delay = start + seq * s.interval_ms / 1000 - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if channel.readyState != "open":
                    break
                probe.sent[seq] = time.perf_counter()
                sent += 1
                channel.send(json.dumps({"probe": probe.probe_id, "seq": seq, "t": round(time.time() * 1000, 3)}))
            probe.sending = False
            if not probe.sent:
                probe.all_echoed.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(probe.all_echoed.wait(), s.echo_grace_s)
            rtp = await _rtp_figures(probe.pc)
        finally:
            for task in drains:
                task.cancel()
            await asyncio.gather(*drains, return_exceptions=True)
        # Loss counts the packets sent: a channel closed early ends the probe, it is not loss.
        return summarise(probe.probe_id, sent, probe.rtts, rtp)

    async def _abort(self, probe: _Probe) -> None:
        if probe.task is not None and not probe.task.done():
            probe.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe.task
        await self._close(probe)

    async def _close(self, probe: _Probe) -> None:
        self.active.pop(probe.probe_id, None)
        if not probe.channel.done():
            probe.channel.cancel()
        try:
            await probe.pc.close()
        except Exception:
            log.exception("probe_close_failed", probe=probe.probe_id)


def summarise(probe_id: str, sent: int, rtts: list[float], rtp: tuple[float, float] | None) -> Doc:
    """The `call:probe:result` payload from the echoes (and the RTP receiver's loss % and jitter ms)."""
    loss = 100.0 * (sent - len(rtts)) / sent if sent else 100.0
    jitter = quality.rfc3550_jitter(rtts)
    if rtp is not None:
        loss, jitter = max(loss, rtp[0]), max(jitter, rtp[1])
    rtt = {"p50": round(quality.percentile(rtts, 50), 2), "p95": round(quality.percentile(rtts, 95), 2)} \
        if rtts else None
    score = quality.mos(rtt["p50"] if rtt else 0.0, jitter, loss) if rtts else 1.0
    out = {"probe_id": probe_id, "rtt_ms": rtt, "jitter_ms": round(jitter, 2), "loss_pct": round(loss, 2),
           "mos": score, "grade": quality.grade(score)}
    if rtp is not None:  # what the client's audio alone showed (already folded into the figures above)
        out["audio"] = {"loss_pct": round(rtp[0], 2), "jitter_ms": round(rtp[1], 2)}
    return out


async def _drain(track: MediaStreamTrack) -> None:
    """Read the client's audio so aiortc keeps decoding it (the receiver's statistics are what count)."""
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


async def _rtp_figures(pc: RTCPeerConnection) -> tuple[float, float] | None:
    """(loss %, jitter ms) of the received audio, from aiortc's inbound RTP statistics; None without
    audio. RTP jitter is in timestamp units: divided by the codec's clock rate."""
    remote = pc.remoteDescription
    rates = {m.kind: m.rtp.codecs[0].clockRate for m in SessionDescription.parse(pc.localDescription.sdp).media
             if m.kind == "audio" and m.rtp.codecs} if remote is not None else {}
    if "audio" not in rates:
        return None
    received = lost = 0
    jitter_units = 0
    for stat in (await pc.getStats()).values():
        if getattr(stat, "type", None) == "inbound-rtp" and getattr(stat, "kind", None) == "audio":
            received += stat.packetsReceived
            lost += max(0, stat.packetsLost)
            jitter_units = max(jitter_units, stat.jitter)
    if received + lost == 0:
        return None
    return 100.0 * lost / (received + lost), 1000.0 * jitter_units / rates["audio"]
