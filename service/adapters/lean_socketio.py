"""python-socketio's server on the lean Engine.IO sessions
(``lean_engineio.py``), with two changes to how client messages are taken:

- a message that is not a Socket.IO packet is the client's garbage: one log
  line and the connection closed, rather than a traceback and an open
  connection;
- an ack in the exact form clients send is given to its handler without the
  packet decoder and the JSON parser (each client sends one per batch).
"""

from __future__ import annotations

import logging
from typing import Any

import socketio

from service.adapters.lean_engineio import LeanEngineIOServer

log = logging.getLogger(__name__)

# A Socket.IO EVENT packet on "/" with no ack id, for the event "ack"
_ACK_PREFIX = '2["ack",{"offset":'


class LeanSocketIOServer(socketio.Server):
    """python-socketio on LeanEngineIOServer."""

    def _engineio_server_class(self) -> type:
        return LeanEngineIOServer

    def _handle_eio_message(self, eio_sid: str, data: Any) -> Any:
        # (a message while a binary event waits for its attachments is one of them)
        if (type(data) is str and data.startswith(_ACK_PREFIX)
                and eio_sid not in self._binary_packet and self._handled_as_ack(eio_sid, data)):
            return None
        return self._handle_decoded(eio_sid, data)

    def _handled_as_ack(self, eio_sid: str, data: str) -> bool:
        """An ack exactly as the clients send it, ``2["ack",{"offset":N}]``
        with no reply asked for, given to the ack handler without the packet
        decoder, the JSON parser and the dispatcher: each client sends one
        per batch it receives, so these were a third of a busy node's CPU.
        What this does not recognise takes the general path, which gives
        the handler the same arguments. False if it was not handled."""
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

    def _handle_decoded(self, eio_sid: str, data: Any) -> Any:
        """A message that is not a Socket.IO packet is the client's garbage,
        not our bug: one log line, and the connection closed, where
        python-socketio would log a traceback and keep it open. Told apart
        by where the error was raised (the packet decoder, or python-socketio
        refusing a packet type a client may not send), so a well-formed
        message costs nothing more."""
        try:
            return super()._handle_eio_message(eio_sid, data)
        except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
            # RecursionError: JSON nested a few thousand deep (a 6 KB packet),
            # which left the connection open with no answer and a traceback
            if not _clients_fault(exc):
                raise
            log.info("%s: malformed Socket.IO packet, closing connection: %s", eio_sid, exc)
            self.eio.disconnect(eio_sid)
            return None

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


def _clients_fault(exc: BaseException) -> bool:
    """Raised while decoding the packet (at any depth: the JSON parser
    under it), or by python-socketio's dispatcher itself refusing it."""
    tb, last = exc.__traceback__, None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.endswith(("socketio/packet.py", "socketio/msgpack_packet.py")):
            return True
        last, tb = code, tb.tb_next
    return (last is not None and last.co_filename.endswith("socketio/server.py")
            and last.co_name == "_handle_eio_message")
