"""Socket.IO server that speaks both parsers on one endpoint: JSON (default) and msgpack.

The official msgpack parser sends every packet as one binary frame; the JSON parser sends text
frames (binary frames only as attachments right after a binary-event header). So the first packet
of a connection tells which parser the client uses: a binary frame that is not an expected
attachment is a msgpack packet. Replies to such a connection are re-encoded with msgpack; everyone
else gets the stock JSON encoding (pre-encoded once per emit, as before).
"""

from __future__ import annotations

from typing import Any

import socketio
import structlog
from engineio import packet as eio_packet
from socketio import packet as sio_packet
from socketio.msgpack_packet import MsgPackPacket

from server.eio import LeanEngineServer
from server.transports import TransportGuard

log = structlog.get_logger(__name__)

# Event names python-socketio uses for its own lifecycle calls into a handler (`connect`,
# `disconnect`), the client's lifecycle names, and the catch-all key. A client may put any string in
# an EVENT packet, and the stock server would hand `["disconnect"]` to the same entry point as a real
# disconnect; so client events carrying these names are marked as client events (see `ClientEvent`).
RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error", "__disconnect_final", "*"})


class ClientEvent(str):
    """A reserved event name that arrived in a client's EVENT packet, not from python-socketio itself.

    It compares equal to the plain name, so namespaces must test `isinstance(event, ClientEvent)`
    before treating `connect`/`disconnect` as lifecycle calls; everything else sees an unknown event.
    """

    __slots__ = ()


class DualParserServer(socketio.AsyncServer):  # type: ignore[misc]
    def __init__(self, *args: Any, guard: TransportGuard | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._msgpack_eio: set[str] = set()
        self.guard = guard

    def _engineio_server_class(self) -> type:
        return LeanEngineServer  # lighter per-connection queue and WebSocket (server/eio.py)

    # -- transports before auth (server/transports.py) --------------------------------------------
    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        if self.guard is not None and not self.guard.admit(eio_sid, environ, self._connect_deadline_passed):
            return False  # engineio answers the handshake 401
        return await super()._handle_eio_connect(eio_sid, environ)

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        await super()._handle_connect(eio_sid, namespace, data)
        if self.guard is not None and self.manager.sid_from_eio_sid(eio_sid, namespace or "/"):
            self.guard.authenticated(eio_sid)

    def _connect_deadline_passed(self, eio_sid: str) -> None:
        if self.guard is None or not self.guard.pending(eio_sid):
            return
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None and not socket.closed:
            log.info("transport_closed_no_namespace", eio_sid=eio_sid)
            self.eio.start_background_task(socket.close, wait=False)

    def uses_msgpack(self, eio_sid: str) -> bool:
        return eio_sid in self._msgpack_eio

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if not isinstance(data, bytes) or eio_sid in self._binary_packet:
            await super()._handle_eio_message(eio_sid, data)
            return
        try:
            pkt = MsgPackPacket(encoded_packet=data)
            kind = pkt.packet_type
        except Exception:
            log.info("bad_binary_frame", eio_sid=eio_sid, size=len(data))
            return
        self._msgpack_eio.add(eio_sid)
        if kind == sio_packet.CONNECT:
            await self._handle_connect(eio_sid, pkt.namespace, pkt.data)
        elif kind == sio_packet.DISCONNECT:
            await self._handle_disconnect(eio_sid, pkt.namespace, self.reason.CLIENT_DISCONNECT)
        elif kind == sio_packet.EVENT:
            await self._handle_event(eio_sid, pkt.namespace, pkt.id, pkt.data)
        elif kind == sio_packet.ACK:
            await self._handle_ack(eio_sid, pkt.namespace, pkt.id, pkt.data)
        else:
            log.info("bad_msgpack_packet", eio_sid=eio_sid, packet_type=kind)

    async def _handle_event_internal(
        self, server: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: Any
    ) -> None:
        # Every client EVENT packet (JSON, msgpack, binary) reaches handlers through here; the
        # library's own connect/disconnect calls never do.
        if data and isinstance(data[0], str) and data[0] in RESERVED_EVENTS:
            data = [ClientEvent(data[0]), *data[1:]]
        await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)

    async def _send_packet(self, eio_sid: str, pkt: Any) -> None:
        if eio_sid in self._msgpack_eio and not isinstance(pkt, MsgPackPacket):
            pkt = MsgPackPacket(pkt.packet_type, pkt.data, namespace=pkt.namespace, id=pkt.id)
        await super()._send_packet(eio_sid, pkt)

    async def _send_eio_packet(self, eio_sid: str, eio_pkt: Any) -> None:
        # Emits to rooms arrive here pre-encoded as JSON; re-encode for msgpack connections.
        if eio_sid in self._msgpack_eio and isinstance(eio_pkt.data, str):
            pkt = sio_packet.Packet(encoded_packet=eio_pkt.data)
            eio_pkt = eio_packet.Packet(
                eio_packet.MESSAGE,
                MsgPackPacket(pkt.packet_type, pkt.data, namespace=pkt.namespace, id=pkt.id).encode(),
            )
        await super()._send_eio_packet(eio_sid, eio_pkt)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        try:
            await super()._handle_eio_disconnect(eio_sid, reason)
        finally:
            self._msgpack_eio.discard(eio_sid)
            if self.guard is not None:
                self.guard.gone(eio_sid)
