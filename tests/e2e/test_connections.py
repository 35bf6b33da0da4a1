"""Connection limits, idle cleanup and ping/pong health, on a real server."""

from __future__ import annotations

import time

import websocket

from tests.support.influx_counts import connection_events
from tests.support.py_client import PyClient
from tests.support.raw_socketio import raw_socketio_client
from tests.support.server_process import start_server, stop_server


def test_limits_refuse_with_a_reason_and_the_rest_keep_working(pg_url, influx_database, tmp_path,
                                                             js_client):
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "MAX_CONNECTIONS": "3", "MAX_CONNECTIONS_PER_USER": "2"}, tmp_path)
    held = []
    try:
        held += [PyClient(server.url, server.token("alice")) for _ in range(2)]
        third = js_client(server.url, server.token("alice"), "--timeout-ms", "5000")
        refused = third.wait_for("connect_error")
        assert (refused["data"]["error"], refused["data"]["field"]) == ("connection_limit", "user")
        held.append(PyClient(server.url, server.token("bob")))
        fourth = js_client(server.url, server.token("carol"), "--timeout-ms", "5000")
        refused = fourth.wait_for("connect_error")
        assert (refused["data"]["error"], refused["data"]["field"]) == ("connection_limit", "node")
        server.publish({"user_id": "bob", "category": "c", "payload": {}})
        assert len(held[2].wait_for(1)) == 1  # those inside are served as before
    finally:
        for client in held:
            client.close()
        assert stop_server(server) == 0
    assert connection_events(influx_database, "refused", "connection_limit") == 2


def test_an_idle_connection_is_closed(pg_url, influx_database, tmp_path, js_client):
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "IDLE_TIMEOUT": "1"}, tmp_path)
    try:
        quiet = js_client(server.url, server.token("dora"), "--timeout-ms", "10000")
        quiet.wait_for("connect")
        started = time.monotonic()
        closed = quiet.wait_for("disconnect", timeout=8)
        assert closed["reason"] == "io server disconnect"
        assert 1.0 <= time.monotonic() - started < 4.0
    finally:
        assert stop_server(server) == 0
    assert connection_events(influx_database, "closed", "idle") == 1


def test_a_client_that_misses_pongs_is_dropped(pg_url, influx_database, tmp_path):
    """A raw Engine.IO client that connects properly, then never answers a ping."""
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "PING_INTERVAL": "1", "PING_TIMEOUT": "1"}, tmp_path)
    try:
        ws = raw_socketio_client(server, "eve")
        started = time.monotonic()
        pings = 0
        try:
            while time.monotonic() - started < 8:
                frame = ws.recv()  # never answered
                if frame == "2":
                    pings += 1
                if not frame:
                    break
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            pass
        elapsed = time.monotonic() - started
        assert pings >= 1 and elapsed < 6, (pings, elapsed)
    finally:
        assert stop_server(server) == 0
    assert connection_events(influx_database, "closed", "ping_timeout") == 1


def test_a_client_that_does_not_read_is_disconnected(pg_url, influx_database, tmp_path):
    """A raw client with a tiny receive buffer that stops reading: its unsent
    data grows past SEND_QUEUE_MAX_BYTES and the server closes it, while a
    reading client of the same user is served as before."""
    import socket as sockets

    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "SEND_QUEUE_MAX_BYTES": "200000", "BATCH_SIZE": "1"}, tmp_path)
    try:
        ws = raw_socketio_client(server, "hal",
                                 sockopt=((sockets.SOL_SOCKET, sockets.SO_RCVBUF, 4096),))
        reader = PyClient(server.url, server.token("hal"))  # reads, and keeps up
        blob = "x" * 60_000
        for i in range(150):  # 9 MB to a client that reads nothing
            server.publish({"user_id": "hal", "category": "bulk", "payload": {"i": i, "b": blob}})
        assert len(reader.wait_for(150, timeout=30)) == 150
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            metrics = server.request("GET", "/admin/api/performance/metrics",
                                     token=server.env["ADMIN_TOKEN"]).json()
            if metrics["connections"] == 1:
                break
            time.sleep(0.2)
        assert metrics["connections"] == 1  # only the reader is left
        reader.close()
        ws.close()
    finally:
        assert stop_server(server) == 0
    assert connection_events(influx_database, "closed", "slow_consumer") == 1


def test_closed_connections_leave_nothing_behind(pg_url, influx_database, tmp_path):
    """Weak references to each connection's objects: once closed, none may
    still be referenced after the grace period."""
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "LEAK_GRACE_S": "1", "PING_INTERVAL": "1", "PING_TIMEOUT": "1"},
                          tmp_path)
    try:
        clients = [PyClient(server.url, server.token(f"u{i % 5}")) for i in range(20)]
        for i in range(5):
            server.publish({"user_id": f"u{i}", "category": "c", "payload": {}})
        for client in clients:
            client.wait_for(1)
        metrics = server.request("GET", "/admin/api/performance/metrics",
                                 token=server.env["ADMIN_TOKEN"]).json()
        assert metrics["leaks"]["connection"]["alive"] == 20
        assert metrics["leaks"]["engineio_session"]["alive"] == 20
        for client in clients:
            client.close()
        time.sleep(3.5)  # past the grace: the ping interval and timeout
        leaks = server.request("GET", "/admin/api/performance/metrics",
                               token=server.env["ADMIN_TOKEN"]).json()["leaks"]
        assert leaks["connection"] == {"alive": 0, "leaked": 0}, leaks
        # python-engineio's service task keeps the last session it looked at in
        # a local variable while it waits for the next round: one, whatever the
        # number of connections. Anything more is a leak.
        assert leaks["engineio_session"]["leaked"] <= 1, leaks
    finally:
        assert stop_server(server) == 0


def test_a_client_that_reads_nothing_does_not_stop_a_clean_shutdown(pg_url, influx_database,
                                                                    tmp_path):
    """SIGTERM while a writer is blocked on a full socket: the server must
    still close everything and exit 0 (libev used to abort the process)."""
    import socket as sockets

    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "SEND_QUEUE_MAX_BYTES": "50000000", "BATCH_SIZE": "1"}, tmp_path)
    stalled = raw_socketio_client(server, "ivy",
                                  sockopt=((sockets.SOL_SOCKET, sockets.SO_RCVBUF, 4096),))
    try:
        for i in range(100):  # 6 MB: more than the socket buffers hold
            server.publish({"user_id": "ivy", "category": "bulk",
                            "payload": {"i": i, "b": "x" * 60_000}})
    finally:
        code = stop_server(server)
        stalled.close()
    assert code == 0, server.log_text()[-2000:]
