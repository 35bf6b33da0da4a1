"""How python-socketio takes a client's messages: decoded and checked apart
from their dispatch, and acks taken without the decoder.

Replaces, in python-socketio 5.18.1: ``socketio.Server._handle_eio_message``
(decode, then dispatch) and ``socketio.Server._handle_event`` (the event's
shape); ``SessionsServer`` also overrides ``socketio.Server._engineio_server_class``
to run on the Engine.IO sessions of engineio_sessions.py.

Why:

- a message that is not a Socket.IO packet a client may send is the
  client's garbage, not our bug: one log line and the connection closed,
  where python-socketio logs a traceback and keeps the connection open
  (JSON nested a few thousand deep, a 6 KB packet, left it open with no
  answer). Told apart structurally: ``client_packet`` decodes the message
  and checks its type, and runs no handler; anything it raises is the
  client's fault. ``dispatch`` then hands the packet to python-socketio's
  handlers, and what they raise is ours: it propagates, as upstream;
- an ack in the exact form clients send is given to its handler without the
  packet decoder and the JSON parser: each client sends one per batch, and
  these were a large share of a busy node's CPU (docs/library-patches.md).

Contract test: tests/unit/test_patch_socketio_messages.py.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from socketio import packet

from service.adapters.patches import ENGINEIO_SESSIONS, SOCKETIO_MESSAGES, PatchesInForce
from service.adapters.patches.engineio_sessions import WebSocketSessionServer

log = logging.getLogger(__name__)

# A Socket.IO EVENT packet on "/" with no ack id, for the event "ack"
_ACK_PREFIX = '2["ack",{"offset":'
# What decoding a client's garbage raises (RecursionError: JSON nested too deep)
MALFORMED = (ValueError, TypeError, KeyError, IndexError, RecursionError)
_CLIENT_TYPES = (packet.CONNECT, packet.DISCONNECT, packet.EVENT, packet.ACK)


class CheckedMessagesServer(socketio.Server):
    """python-socketio's server; a client's message is decoded and checked
    before, and apart from, its dispatch."""

    def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        # (a message while a binary event waits for its attachments is one of them)
        if (type(data) is str and data.startswith(_ACK_PREFIX)
                and eio_sid not in self._binary_packet and self._handled_as_ack(eio_sid, data)):
            return
        try:
            pkt = self.client_packet(eio_sid, data)
        except MALFORMED as exc:
            log.info("%s: malformed Socket.IO packet, closing connection: %s", eio_sid, exc)
            self.eio.disconnect(eio_sid)
            return
        if pkt is not None:
            self.dispatch(eio_sid, pkt)

    def client_packet(self, eio_sid: str, data: Any) -> packet.Packet | None:
        """The client's message as a complete packet a client may send, or
        None while a binary packet waits for its attachments. Runs no
        handler: whatever this raises is the client's fault. (Upstream's
        checks, in upstream's order.)"""
        waiting = self._binary_packet.get(eio_sid)
        if waiting is not None:
            if not waiting.add_attachment(data):
                return None
            del self._binary_packet[eio_sid]
            return waiting
        pkt = self.packet_class(encoded_packet=data)
        if pkt.packet_type in (packet.BINARY_EVENT, packet.BINARY_ACK):
            if not self.manager.sid_from_eio_sid(eio_sid, pkt.namespace or "/"):
                raise ValueError("Unexpected binary packet")
            self._binary_packet[eio_sid] = pkt
            return None
        if pkt.packet_type == packet.CONNECT_ERROR:
            raise ValueError("Unexpected CONNECT_ERROR packet.")
        if pkt.packet_type not in _CLIENT_TYPES:
            raise ValueError("Unknown packet type.")
        return pkt

    def dispatch(self, eio_sid: str, pkt: packet.Packet) -> None:
        """Upstream's dispatch of a decoded packet to python-socketio's
        handlers (and through them ours): what they raise is not the client's."""
        kind = pkt.packet_type
        if kind == packet.CONNECT:
            self._handle_connect(eio_sid, pkt.namespace, pkt.data)
        elif kind == packet.DISCONNECT:
            self._handle_disconnect(eio_sid, pkt.namespace, self.reason.CLIENT_DISCONNECT)
        elif kind in (packet.EVENT, packet.BINARY_EVENT):
            self._handle_event(eio_sid, pkt.namespace, pkt.id, pkt.data)
        else:
            self._handle_ack(eio_sid, pkt.namespace, pkt.id, pkt.data)

    def _handled_as_ack(self, eio_sid: str, data: str) -> bool:
        """An ack exactly as the clients send it, ``2["ack",{"offset":N}]``
        with no reply asked for, given to the ack handler without the packet
        decoder, the JSON parser and the dispatcher. What this does not
        recognise takes the general path, which gives the handler the same
        arguments. False if it was not handled."""
        digits = data[len(_ACK_PREFIX):-2]
        if not (data.endswith("}]") and 0 < len(digits) <= 20 and digits.isascii()
                and digits.isdigit() and (digits[0] != "0" or digits == "0")):
            return False
        handler = self.handlers.get("/", {}).get("ack")
        sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        if handler is None or sid is None or not self.manager.is_connected(sid, "/"):
            return False
        handler(sid, {"offset": int(digits)})
        return True

    def _handle_event(self, eio_sid: str, namespace: str, id: Any, data: Any) -> Any:
        """An event is ``[name, *args]`` with a string name that is not one
        python-socketio keeps for itself (a client emitting ``connect`` would
        run the connect handler outside a handshake); anything else (``42``,
        ``42[]``, ``42[1]``, ``42["connect"]``) is refused the same way."""
        if not (isinstance(data, list) and data and isinstance(data[0], str)
                and data[0] not in self.reserved_events):
            log.info("%s: malformed Socket.IO event, closing connection", eio_sid)
            self.eio.disconnect(eio_sid)
            return None
        return super()._handle_event(eio_sid, namespace, id, data)


class SessionsServer(CheckedMessagesServer):
    """CheckedMessagesServer on the Engine.IO sessions of engineio_sessions.py."""

    def _engineio_server_class(self) -> type:
        return WebSocketSessionServer


def socketio_server_class(patches: PatchesInForce) -> type[socketio.Server]:
    """The server class for the patches in force (the sessions are plugged
    in through python-socketio's private hook: both or neither's version)."""
    if SOCKETIO_MESSAGES not in patches:
        return socketio.Server
    return SessionsServer if ENGINEIO_SESSIONS in patches else CheckedMessagesServer
