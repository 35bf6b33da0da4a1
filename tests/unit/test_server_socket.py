"""The serving socket's options: pywsgi answers in two sends, so without
TCP_NODELAY a keep-alive client waits for its own delayed ACK (~40 ms). And
the frames a client sends: bounded before they are read."""

import logging
import os
import random
import socket
import time
from types import SimpleNamespace

import pytest
from geventwebsocket.exceptions import FrameTooLargeException, WebSocketError
from geventwebsocket.websocket import Header, WebSocket
from hypothesis import given, settings
from hypothesis import strategies as st

from service.entrypoints.server import LeanWebSocketHandler, _unmask, _WebSocket


def test_each_accepted_connection_sends_without_nagle_delay():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, address = listener.accept()
        with client, accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            LeanWebSocketHandler(accepted, address, SimpleNamespace())
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def _taken_by_kernel(sock: socket.socket) -> int:
    """Bytes the kernel accepts for a peer that reads nothing."""
    sock.setblocking(False)
    taken, chunk = 0, b"x" * 8192
    for _ in range(3):  # the send buffer may grow between tries
        while True:
            try:
                taken += sock.send(chunk)
            except BlockingIOError:
                break
        time.sleep(0.02)
    return taken


@pytest.mark.parametrize("unsent", [0, 64 * 1024])
def test_the_kernel_holds_at_most_the_unsent_bound_for_a_client_that_stops_reading(unsent):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(listener.getsockname())
        accepted, address = listener.accept()
        with client, accepted:
            LeanWebSocketHandler(accepted, address, SimpleNamespace(unsent_max_bytes=unsent))
            taken = _taken_by_kernel(accepted)
    if unsent:  # the bound, one send's overshoot and the client's small window
        assert taken <= unsent + 64 * 1024
    else:  # the kernel's send buffer, left alone, takes far more: the bound is what bounds
        assert taken > 4 * 64 * 1024


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


_HANDLER = SimpleNamespace(logger=logging.getLogger(__name__))


def _websocket(data: bytes) -> tuple[_WebSocket, _Stream]:
    stream = _Stream(data)
    return _WebSocket({}, stream, _HANDLER), stream


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


# -- two connections from one address -------------------------------------------------


class _ClosingWebSocket:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_a_handler_outlived_by_a_new_connection_from_its_port_still_closes_its_websocket():
    """A client that gave up waiting dials again from the same port while
    the server still runs the first handler: both end cleanly."""
    import gevent
    from gevent.event import Event

    from service.entrypoints.server import NoClientRegistry

    server = SimpleNamespace(clients=NoClientRegistry(), open_websockets=set())
    gates, handlers, pairs, sockets = [Event(), Event()], [], [], []
    for gate in gates:
        left, right = socket.socketpair()
        pairs.append((left, right))
        handler = LeanWebSocketHandler(left, ("127.0.0.1", 50000), server)
        sockets.append(_ClosingWebSocket())
        handler.websocket, handler.environ = sockets[-1], {}
        handler.application = lambda environ, start, gate=gate: iter([gate.wait()] and [])
        handlers.append(handler)
    running = [gevent.spawn(h.run_websocket) for h in handlers]
    gevent.sleep(0)
    gates[0].set()  # the old one ends first, then the new one
    running[0].join()
    gates[1].set()
    running[1].join()
    try:
        assert all(g.successful() for g in running), [g.exception for g in running]
        assert all(ws.closed for ws in sockets)
    finally:
        for left, right in pairs:
            left.close()
            right.close()
