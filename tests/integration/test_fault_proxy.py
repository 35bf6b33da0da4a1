"""FaultProxy against a real echo server on loopback, with real sockets.

pytest is not monkey-patched, so the echo server, the proxy and the clients
all use gevent's sockets: a blocking stdlib call would stop the hub, and the
proxy with it."""

from __future__ import annotations

import errno
import time

import gevent
import gevent.server
import pytest
from gevent import socket

from bench.chaos_proxy import QUEUE_LIMIT, FaultProxy


@pytest.fixture
def proxy(echo_server):
    proxy = FaultProxy("echo", ("127.0.0.1", 0), ("127.0.0.1", echo_server.server_port))
    proxy.start()
    yield proxy
    proxy.stop()


def connect(proxy, timeout=5.0):
    sock = socket.create_connection(proxy.address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def round_trip(sock, payload=b"ping"):
    started = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - started


def wait_until(condition, timeout=2.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        gevent.sleep(0.01)


def test_pass_echoes_and_counts(proxy):
    with connect(proxy) as sock:
        round_trip(sock, b"hello")
        assert proxy.open_connections == 1
    wait_until(lambda: proxy.open_connections == 0)
    assert proxy.bytes_forwarded == 10
    assert proxy.connections_total == 1
    assert proxy.resets == 0


def test_unknown_mode_names_the_valid_ones(proxy):
    with pytest.raises(ValueError, match="pass, blackhole, reset, delay, throttle"):
        proxy.set("drop")
    with pytest.raises(ValueError, match="bytes_per_s"):
        proxy.set("throttle")


def test_delay_applies_each_way_and_keeps_order_without_serialising(proxy):
    with connect(proxy) as sock:
        assert round_trip(sock) < 0.1
        proxy.set("delay", delay_ms=200)
        assert 0.4 <= round_trip(sock) < 0.8  # 200 ms each way
        # many chunks in flight at once: each is delayed, none waits for another
        started = time.monotonic()
        payload = b"".join(b"%05d;" % i for i in range(300))
        for i in range(300):
            sock.sendall(b"%05d;" % i)
            gevent.sleep(0.001)
        assert recv_exactly(sock, len(payload)) == payload
        assert 0.4 <= time.monotonic() - started < 1.5
        proxy.set("pass")
        assert round_trip(sock) < 0.1


def test_throttle_limits_each_direction(proxy):
    proxy.set("throttle", bytes_per_s=50_000)
    payload = bytes(range(256)) * 400  # 100 KB
    with connect(proxy, timeout=10) as sock:
        started = time.monotonic()
        sender = gevent.spawn(sock.sendall, payload)
        assert recv_exactly(sock, len(payload)) == payload
        took = time.monotonic() - started
        sender.get()
    assert 1.5 <= took < 3.5, took


def test_a_full_queue_stops_reading_instead_of_growing(proxy):
    proxy.set("throttle", bytes_per_s=10_000)
    with connect(proxy) as sock:
        sock.settimeout(0.05)
        sent, block = 0, b"x" * 65536
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:  # a sender that never reads its echoes
            try:
                sent += sock.send(block)
            except TimeoutError:
                pass
        assert sent > QUEUE_LIMIT  # the queue did fill...
        assert proxy.queued_bytes <= QUEUE_LIMIT + 65536  # ...and stopped there


def test_blackhole_holds_bytes_without_closing_and_heals(proxy, echo_server):
    with connect(proxy) as held:
        round_trip(held)
        proxy.set("blackhole")
        held.settimeout(0.5)
        held.sendall(b"lost?")
        with pytest.raises(TimeoutError):  # no answer, no FIN (b""), no RST
            held.recv(100)
        seen = len(echo_server.accepted)
        with connect(proxy) as fresh:  # accepted, but nothing comes back
            fresh.settimeout(0.5)
            fresh.sendall(b"hello")
            with pytest.raises(TimeoutError):
                fresh.recv(100)
            assert len(echo_server.accepted) == seen  # its "SYN" has not crossed yet
            proxy.set("pass")
            fresh.settimeout(2)
            assert recv_exactly(fresh, 5) == b"hello"
        held.settimeout(2)
        assert recv_exactly(held, 5) == b"lost?"  # held, not dropped: TCP would retransmit
        with connect(proxy) as new:
            round_trip(new)
    assert proxy.resets == 0


def test_reset_resets_existing_and_new_connections(proxy):
    with connect(proxy) as old:
        round_trip(old)
        proxy.set("reset")
        with pytest.raises(ConnectionResetError) as excinfo:
            old.recv(100)
        assert excinfo.value.errno == errno.ECONNRESET
    wait_until(lambda: proxy.open_connections == 0)
    with connect(proxy) as new:
        with pytest.raises(ConnectionResetError):
            new.recv(100)
    assert proxy.resets == 2
    proxy.set("pass")
    with connect(proxy) as healed:
        round_trip(healed)


def test_upstream_down_resets_the_client_and_the_proxy_goes_on(echo_server):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()
    proxy = FaultProxy("nowhere", ("127.0.0.1", 0), ("127.0.0.1", closed_port))
    proxy.start()
    try:
        with connect(proxy) as sock, pytest.raises(ConnectionResetError):
            sock.recv(100)
        assert proxy.upstream_failures == 1
        proxy.target = ("127.0.0.1", echo_server.server_port)
        with connect(proxy) as sock:
            round_trip(sock)
    finally:
        proxy.stop()


def test_stop_closes_listener_and_connections(proxy):
    with connect(proxy) as sock:
        round_trip(sock)
        proxy.stop()
        assert sock.recv(100) == b""  # a FIN
        assert proxy.open_connections == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(proxy.address, timeout=1)
