"""gevent-websocket's frame reader, bounded and faster.

Replaces, in gevent-websocket 0.10.1: ``geventwebsocket.websocket.WebSocket``
``read_frame``, ``read_message`` and ``validate_utf8``. The WSGI handler
(entrypoints/server.py) puts it in place on each WebSocket gevent-websocket
builds by changing the object's class: the same slots, only methods differ.

Why (the figures are in docs/library-patches.md):

- gevent-websocket reads a frame whole, whatever length its header gives,
  joins continuation frames without a bound, and unmasks byte by byte in
  Python: one huge frame from a client that had not even authenticated held
  its size in memory and froze every other connection and publish, before
  Engine.IO refused it as too large. Here a message longer than a client may
  send (MAX_FRAME_BYTES) is refused from its header, before it is read, and
  the unmasking is one integer XOR;
- the header is parsed inline rather than into a Header object, and the mask
  is read with the payload: a client's ack is one small frame;
- the pure-Python UTF-8 validator is skipped: a text message is decoded as
  UTF-8 right after, which refuses the same input (and closes with 1007, as
  the validator would).

Contract test: tests/unit/test_patch_websocket_frames.py.
"""

from __future__ import annotations

import logging

from geventwebsocket.exceptions import FrameTooLargeException, ProtocolError, WebSocketError
from geventwebsocket.websocket import Header, WebSocket

from service.adapters.patches import WEBSOCKET_FRAMES, PatchesInForce, in_force
from service.adapters.socketio_server import MAX_FRAME_BYTES

log = logging.getLogger(__name__)


class BoundedWebSocket(WebSocket):
    """gevent-websocket's WebSocket, reading a client's frames bounded by
    MAX_FRAME_BYTES, without its pure-Python UTF-8 validator."""

    __slots__ = ()

    def validate_utf8(self, message: bytes) -> None:
        return None

    def read_frame(self) -> tuple[bool, int, bytes]:
        """(fin, opcode, payload) of the next frame. The header is parsed
        here rather than into a Header object, and the mask is read with the
        payload."""
        read = self.stream.read
        head = read(2)
        if len(head) != 2:
            raise WebSocketError("Unexpected EOF while decoding header")
        first, second = head[0], head[1]
        if first & Header.HEADER_FLAG_MASK:
            raise ProtocolError("reserved bits set")
        fin, opcode, length = bool(first & Header.FIN_MASK), first & Header.OPCODE_MASK, \
            second & Header.LENGTH_MASK
        if opcode > 0x07:  # a control frame
            if not fin:
                raise ProtocolError(f"Received fragmented control frame: {head!r}")
            if length > 125:
                raise FrameTooLargeException(
                    f"Control frame cannot be larger than 125 bytes: {head!r}")
        if length >= 126:
            size = 2 if length == 126 else 8
            extended = read(size)
            if len(extended) != size:
                raise WebSocketError("Unexpected EOF while decoding header")
            length = int.from_bytes(extended, "big")
        if length > MAX_FRAME_BYTES:
            self._refuse_too_large(length)
        masked = second & Header.MASK_MASK
        want = length + 4 if masked else length
        if not want:
            return fin, opcode, b""
        try:
            data = self.raw_read(want)
        except Exception:  # as gevent-websocket: a failed read is a short one
            data = b""
        if len(data) != want:
            raise WebSocketError("Unexpected EOF reading frame payload")
        return fin, opcode, unmask(data[4:], data[:4]) if masked else data

    def read_message(self) -> bytes | bytearray | str | None:
        """gevent-websocket's, with the message's length bounded."""
        opcode = None
        message: bytes | bytearray = bytearray()
        while True:
            fin, f_opcode, payload = self.read_frame()
            if f_opcode in (self.OPCODE_TEXT, self.OPCODE_BINARY):
                if opcode:
                    raise ProtocolError(f"expected a continuation frame, got {f_opcode!r}")
                opcode = f_opcode
            elif f_opcode == self.OPCODE_CONTINUATION:
                if not opcode:
                    raise ProtocolError("Unexpected frame with opcode=0")
            elif f_opcode == self.OPCODE_PING:
                self.handle_ping(None, payload)
                continue
            elif f_opcode == self.OPCODE_PONG:
                continue
            elif f_opcode == self.OPCODE_CLOSE:
                self.handle_close(Header(fin, f_opcode, 0, len(payload)), payload)
                return None
            else:
                raise ProtocolError(f"Unexpected opcode={f_opcode!r}")
            if len(message) + len(payload) > MAX_FRAME_BYTES:
                self._refuse_too_large(len(message) + len(payload))
            if fin and not message:  # one frame: no copy into the bytearray
                message = payload
                break
            message += payload
            if fin:
                break
        if opcode == self.OPCODE_TEXT:
            return self._decode_bytes(message)
        return message

    def _refuse_too_large(self, length: int) -> None:
        log.info("closing a WebSocket whose client sent a message of %d bytes or more "
                 "(at most %d)", length, MAX_FRAME_BYTES)
        raise FrameTooLargeException(f"a message of {length} bytes; at most {MAX_FRAME_BYTES}")


def unmask(payload: bytes, mask: bytes) -> bytes:
    """A client's frame payload XOR its 4-byte mask, repeated."""
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


def bounded_websocket_class(patches: PatchesInForce | None) -> type[WebSocket] | None:
    """The class to give gevent-websocket's WebSockets, or None to leave them
    as they are (the patch left out). Given no ``patches``, the installed
    gevent-websocket must be the version this was written for."""
    return BoundedWebSocket if in_force(patches, WEBSOCKET_FRAMES) else None
