"""The WebSocket frames patch (service/adapters/patches/websocket_frames.py)
held to gevent-websocket's own reader: any sequence of frames a client may
send reads the same through both; then the deliberate difference, a message
longer than a client may send refused from its header."""

import logging
import os
import random
from types import SimpleNamespace

import pytest
from geventwebsocket.exceptions import FrameTooLargeException, WebSocketError
from geventwebsocket.websocket import Header, WebSocket
from hypothesis import given, settings
from hypothesis import strategies as st

from service.adapters.patches.websocket_frames import BoundedWebSocket, unmask
from service.adapters.socketio_server import MAX_FRAME_BYTES


class _Stream:
    """What a WebSocket reads from: the bytes given, counting what was read."""

    def __init__(self, data: bytes) -> None:
        self._data, self.taken, self.written = data, 0, b""

    def read(self, n: int) -> bytes:
        chunk = self._data[self.taken:self.taken + n]
        self.taken += len(chunk)
        return chunk

    def write(self, data: bytes) -> None:
        self.written += data


def _client_frame(payload: bytes, *, fin: bool = True, opcode: int = 1,
                  declared: int | None = None) -> bytes:
    mask = b"\x01\x02\x03\x04"
    head = Header.encode_header(fin, opcode, mask, declared or len(payload), 0)
    return head + _masked(payload, mask)


def _masked(payload: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


_HANDLER = SimpleNamespace(logger=logging.getLogger(__name__))


def _websocket(data: bytes) -> tuple[BoundedWebSocket, _Stream]:
    stream = _Stream(data)
    return BoundedWebSocket({}, stream, _HANDLER), stream


def test_a_client_frame_is_unmasked_as_gevent_websocket_would():
    for n in (0, 1, 3, 4, 5, 1000, 65_536):
        payload = os.urandom(n)
        header = Header(length=n)
        header.mask = os.urandom(4)
        assert unmask(payload, header.mask) == bytes(header.mask_payload(payload))
    ws, _ = _websocket(_client_frame(b'42["ack",{"offset":1}]'))
    assert ws.read_message() == '42["ack",{"offset":1}]'


def test_a_frame_longer_than_a_client_may_send_is_refused_before_it_is_read():
    ws, stream = _websocket(_client_frame(b"x" * 100, declared=1 << 40))
    with pytest.raises(FrameTooLargeException):
        ws.read_message()
    assert stream.taken <= 14  # the header only


def test_continuation_frames_are_bounded_together():
    part = b"x" * 30_000
    frames = (_client_frame(part, fin=False) + _client_frame(part, fin=False, opcode=0)
              + _client_frame(part, opcode=0))
    ws, _ = _websocket(frames)
    with pytest.raises(FrameTooLargeException):
        ws.read_message()
    ws, _ = _websocket(_client_frame(part[:100], fin=False) + _client_frame(part[:100], opcode=0))
    assert ws.read_message() == "x" * 200


# lengths around each of the header's three length encodings (7, 16, 64 bits)
_LENGTHS = (st.integers(0, 300) | st.sampled_from([125, 126, 127, 65_535, 65_536])
            | st.integers(60_000, 65_536))
_FRAGMENTS = st.lists(st.builds(lambda n, seed: random.Random(seed).randbytes(n),
                                _LENGTHS, st.integers(0, 1000)), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None)
@given(messages=st.lists(st.tuples(_FRAGMENTS, st.booleans(), st.booleans(), st.booleans()),
                         min_size=1, max_size=4))
def test_frames_read_as_gevent_websocket_reads_them(messages):
    """Any sequence of messages a client may send (fragmented or not, text or
    binary, masked or not, with a ping between fragments), at any length
    encoding, reads as gevent-websocket's own reader reads it."""
    wire = b""
    for fragments, binary, masked, ping in messages:
        if sum(map(len, fragments)) > 65_536:
            fragments = fragments[:1]
        if not binary:
            fragments = [b"a" * len(f) for f in fragments]  # valid UTF-8
        for i, part in enumerate(fragments):
            last = i == len(fragments) - 1
            opcode = 0 if i else (2 if binary else 1)
            mask = b"\x0a\x0b\x0c\x0d" if masked else b""
            wire += Header.encode_header(last, opcode, mask, len(part), 0) + (
                _masked(part, mask) if masked else part)
            if ping and not last:
                wire += Header.encode_header(True, 9, mask, 3, 0) + (
                    _masked(b"hey", mask) if masked else b"hey")
    ours, _ = _websocket(wire)
    theirs = WebSocket({}, _Stream(wire), _HANDLER)
    for _ in messages:
        assert ours.read_message() == theirs.read_message()
    with pytest.raises(WebSocketError):  # nothing left: both see the end
        ours.read_message()


def test_a_close_frame_ends_the_messages():
    mask = b"\x01\x02\x03\x04"
    close = Header.encode_header(True, 8, mask, 2, 0) + _masked(b"\x03\xe8", mask)
    ws, _ = _websocket(_client_frame(b"hi") + close)
    assert ws.read_message() == "hi"
    assert ws.read_message() is None


def test_invalid_utf8_closes_the_websocket_as_gevent_websockets_validator_does():
    frame = _client_frame(b"ok \xff\xfe not utf-8")
    handler = SimpleNamespace(logger=_HANDLER.logger,
                              server=SimpleNamespace(application=object()))
    outcomes = []
    for cls in (BoundedWebSocket, WebSocket):
        stream = _Stream(frame)
        ws = cls({}, stream, handler)
        try:
            outcome = ("read", ws.receive())
        except WebSocketError as exc:
            outcome = ("refused", type(exc))
        outcomes.append((outcome, stream.written, ws.closed))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] == (("read", None), b"\x88\x00", True)  # a close frame, and closed


def test_gevent_websocket_reads_a_frame_too_long_whole_where_ours_reads_its_header_only():
    payload = b"x" * (MAX_FRAME_BYTES + 1)
    ours = _Stream(_client_frame(payload))
    with pytest.raises(FrameTooLargeException):
        BoundedWebSocket({}, ours, _HANDLER).read_message()
    theirs = _Stream(_client_frame(payload))
    assert WebSocket({}, theirs, _HANDLER).read_message() == payload.decode()
    assert ours.taken <= 14 < len(payload) < theirs.taken
