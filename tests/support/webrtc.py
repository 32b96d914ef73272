"""A real aiortc client peer for `call:probe`: offers the `probe` data channel (and optionally a
silent audio track), echoes the server's packets back — on time, late, or not at all for some — and
keeps every address on loopback (host candidates pinned to 127.0.0.1, no STUN/TURN servers)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from signaling.webrtc import host_addresses

LOOPBACK = ["127.0.0.1"]


class ProbePeer:
    def __init__(self, *, delay_ms: float = 0.0, drop_every: int = 0, audio: bool = False) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("probe")
        self.delay_s = delay_ms / 1000
        self.drop_every = drop_every
        self.echoed = 0
        if audio:
            self.pc.addTrack(AudioStreamTrack())
        self.channel.on("message", self._on_message)

    def _on_message(self, message: Any) -> None:
        seq = json.loads(message)["seq"]
        if self.drop_every and seq % self.drop_every == 0:
            return
        self.echoed += 1
        if self.delay_s:
            asyncio.get_running_loop().call_later(self.delay_s, self._send, message)
        else:
            self._send(message)

    def _send(self, message: Any) -> None:
        if self.channel.readyState == "open":
            self.channel.send(message)

    async def offer(self, **extra: Any) -> dict[str, Any]:
        with host_addresses(LOOPBACK):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        return {"sdp": self.pc.localDescription.sdp, "type": "offer", **extra}

    async def accept(self, ack: dict[str, Any]) -> None:
        with host_addresses(LOOPBACK):
            await self.pc.setRemoteDescription(RTCSessionDescription(ack["sdp"], ack["type"]))

    async def close(self) -> None:
        await self.pc.close()


def udp_sockets() -> int:
    """Open UDP sockets of this process: socket fds whose inode is in /proc/self/net/udp{,6}."""
    inodes: set[str] = set()
    for table in ("/proc/self/net/udp", "/proc/self/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                inodes.update(line.split()[9] for line in f)
        except FileNotFoundError:
            continue
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def live_peer_connections() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, RTCPeerConnection))
