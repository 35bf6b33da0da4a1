"""Fixtures shared by the integration tests of the chaos run's network tools."""

from __future__ import annotations

import gevent.server
import pytest


@pytest.fixture
def echo_server():
    """A gevent echo server on loopback; ``accepted`` lists its peers, to see
    what reached it (pytest is not monkey-patched: gevent's own sockets)."""
    accepted: list = []

    def echo(sock, address) -> None:
        accepted.append(address)
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass
        finally:
            sock.close()

    server = gevent.server.StreamServer(("127.0.0.1", 0), echo)
    server.accepted = accepted
    server.start()
    yield server
    server.stop(timeout=1)
