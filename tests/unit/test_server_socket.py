"""The serving socket's options: pywsgi answers in two sends, so without
TCP_NODELAY a keep-alive client waits for its own delayed ACK (~40 ms)."""

import socket
from types import SimpleNamespace

from service.entrypoints.server import LeanWebSocketHandler


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
