"""The serving socket's options: pywsgi answers in two sends, so without
TCP_NODELAY a keep-alive client waits for its own delayed ACK. And each
WebSocket gets the bounded frame reader of the websocket_frames patch, unless
that patch is left out (its contract test: test_patch_websocket_frames.py)."""

import socket
import time
from types import SimpleNamespace

import pytest
from geventwebsocket.websocket import WebSocket

from service.adapters.patches import WEBSOCKET_FRAMES, PatchesInForce, check
from service.adapters.patches.websocket_frames import BoundedWebSocket
from service.entrypoints.server import NodeConnectionHandler


def test_each_accepted_connection_sends_without_nagle_delay():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, address = listener.accept()
        with client, accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            NodeConnectionHandler(accepted, address, SimpleNamespace())
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
            NodeConnectionHandler(accepted, address, SimpleNamespace(unsent_max_bytes=unsent))
            taken = _taken_by_kernel(accepted)
    if unsent:  # the bound, one send's overshoot and the client's small window
        assert taken <= unsent + 64 * 1024
    else:  # the kernel's send buffer, left alone, takes far more: the bound is what bounds
        assert taken > 4 * 64 * 1024


def test_a_socket_that_is_not_tcp_is_served_as_it_is():
    left, right = socket.socketpair()
    with left, right:
        NodeConnectionHandler(left, ("local", 0), SimpleNamespace())


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
        handler = NodeConnectionHandler(left, ("127.0.0.1", 50000), server)
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


@pytest.mark.parametrize(("patches", "expected"), [
    (None, BoundedWebSocket),  # no check at start-up: the installed versions decide
    (check(allow_unpatched=False), BoundedWebSocket),
    (PatchesInForce(frozenset({WEBSOCKET_FRAMES})), BoundedWebSocket),
    (PatchesInForce(frozenset()), WebSocket),  # left out: gevent-websocket's own reader
])
def test_each_websocket_reads_frames_with_the_reader_the_patches_in_force_give(patches,
                                                                              expected):
    server = SimpleNamespace(open_websockets=set(), application=object())
    if patches is not None:
        server.patches = patches
    left, right = socket.socketpair()
    seen = []
    with left, right:
        handler = NodeConnectionHandler(left, ("127.0.0.1", 50000), server)
        handler.websocket = WebSocket({}, SimpleNamespace(read=None, write=lambda data: None),
                                      handler)
        handler.environ = {}
        handler.application = lambda environ, start: seen.append(type(handler.websocket)) or []
        handler.run_websocket()
    assert seen == [expected]
