"""The serving socket's options: pywsgi answers in two sends, so without
TCP_NODELAY a keep-alive client waits for its own delayed ACK (~40 ms). And
the frames a client sends: bounded before they are read."""

import os
import socket
from types import SimpleNamespace

import pytest
from geventwebsocket.exceptions import FrameTooLargeException
from geventwebsocket.websocket import Header

from service.entrypoints.server import LeanWebSocketHandler, _unmask, _WebSocket


def test_each_accepted_connection_sends_without_nagle_delay():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, address = listener.accept()
        with client, accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            LeanWebSocketHandler(accepted, address, SimpleNamespace())
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_a_socket_that_is_not_tcp_is_served_as_it_is():
    left, right = socket.socketpair()
    with left, right:
        LeanWebSocketHandler(left, ("local", 0), SimpleNamespace())


# -- frames a client sends ----------------------------------------------------------


class _Stream:
    """What a WebSocket reads from: the bytes given, counting what was read."""

    def __init__(self, data: bytes) -> None:
        self._data, self.taken = data, 0

    def read(self, n: int) -> bytes:
        chunk = self._data[self.taken:self.taken + n]
        self.taken += len(chunk)
        return chunk

    def write(self, data: bytes) -> None:
        pass


def _client_frame(payload: bytes, *, fin: bool = True, opcode: int = 1,
                  declared: int | None = None) -> bytes:
    mask = b"\x01\x02\x03\x04"
    head = Header.encode_header(fin, opcode, mask, declared or len(payload), 0)
    return head + _masked(payload, mask)


def _masked(payload: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _websocket(data: bytes) -> tuple[_WebSocket, _Stream]:
    stream = _Stream(data)
    return _WebSocket({}, stream, SimpleNamespace()), stream


def test_a_client_frame_is_unmasked_as_gevent_websocket_would():
    for n in (0, 1, 3, 4, 5, 1000, 65_536):
        payload = os.urandom(n)
        header = Header(length=n)
        header.mask = os.urandom(4)
        assert _unmask(payload, header.mask) == bytes(header.mask_payload(payload))
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
