"""Socket.IO handshakes are let in at a rate that follows the loop's lag and
the process's CPU, and only Socket.IO requests wait for it."""

import socket

import gevent

from service.entrypoints import admission
from service.entrypoints.admission import AdaptiveRate
from service.entrypoints.server import _opens_socketio


def waiting_handshakes(rate: AdaptiveRate, n: int) -> list[gevent.Greenlet]:
    greenlets = [gevent.spawn(rate.acquire) for _ in range(n)]
    gevent.sleep(0)
    return greenlets


def test_handshakes_beyond_the_burst_wait_and_are_let_in_at_the_rate():
    rate = AdaptiveRate(start_per_s=1000)  # a burst of 100 (BURST_S)
    greenlets = waiting_handshakes(rate, 150)
    assert rate.admitted == 100 and rate.waiting == 50
    rate.tick(elapsed_s=0.02, lag_s=0.0, busy=0.7)  # neither slow nor idle: 20 tokens
    gevent.sleep(0)
    assert rate.admitted == 120 and rate.per_s == 1000
    rate.tick(elapsed_s=0.05, lag_s=0.0, busy=0.7)
    gevent.joinall(greenlets, timeout=1)
    assert rate.admitted == 150 and rate.waiting == 0


def test_a_late_loop_or_a_busy_process_slows_handshakes_down():
    rate = AdaptiveRate(start_per_s=1000)
    rate.tick(0.02, lag_s=admission.LAG_TARGET_S * 2, busy=0.1)
    assert rate.per_s == 800
    rate.tick(0.02, lag_s=0.0, busy=admission.BUSY_HIGH + 0.1)
    assert rate.per_s == 640
    for _ in range(100):
        rate.tick(0.02, lag_s=1.0, busy=1.0)
    assert rate.per_s == admission.FLOOR_PER_S


def test_the_rate_grows_only_while_handshakes_wait_and_the_process_has_room():
    rate = AdaptiveRate(start_per_s=1000)
    rate.tick(0.02, lag_s=0.0, busy=0.1)
    assert rate.per_s == 1000  # nobody waits: no reason to grow
    greenlets = waiting_handshakes(rate, 150)
    rate.tick(0.0, lag_s=0.0, busy=0.1)
    assert rate.per_s == 1000 + admission.STEP_PER_S
    rate.tick(0.0, lag_s=0.0, busy=admission.BUSY_LOW + 0.1)  # busy enough: hold
    assert rate.per_s == 1000 + admission.STEP_PER_S
    gevent.killall(greenlets)
    assert rate.waiting == 0  # a killed waiter leaves the line


def test_only_a_socketio_request_waits_for_a_turn():
    for request, gated in ((b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n", True),
                           (b"POST /api/v1/notifications HTTP/1.1\r\n", False),
                           (b"GET /healthz HTTP/1.1\r\n", False)):
        client, server = socket.socketpair()
        with client, server:
            client.sendall(request)
            assert _opens_socketio(server) is gated
            assert server.recv(len(request)) == request  # peeked, not taken
