"""Backpressure on a real server: a client that stops reading fills the send
queues past the high-water mark; the node pushes back per priority, and
delivers what it held back once the queues drain."""

from __future__ import annotations

import socket
import time

from tests.support.py_client import PyClient
from tests.support.raw_socketio import raw_socketio_client
from tests.support.server_process import start_server, stop_server


def pressure(server) -> dict:
    return server.request("GET", "/admin/api/performance/metrics",
                          token=server.env["ADMIN_TOKEN"]).json()["backpressure"]


def wait_until(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_full_send_queues_refuse_low_defer_normal_and_pass_critical(pg_url, influx_database,
                                                                    tmp_path):
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "BACKPRESSURE_HIGH_WATER_BYTES": "300000",
                           "SEND_QUEUE_MAX_BYTES": "50000000", "BATCH_SIZE": "1"}, tmp_path)
    try:
        stalled = raw_socketio_client(server, "ivy",
                                      sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
        joe = PyClient(server.url, server.token("joe"))
        for i in range(100):  # 6 MB for a client that reads nothing: more than socket buffers
            server.publish({"user_id": "ivy", "category": "bulk",
                            "payload": {"i": i, "b": "x" * 60_000}})
        assert wait_until(lambda: pressure(server)["engaged"]), pressure(server)
        assert server.request("GET", "/healthz").json()["components"]["delivery"] == "warning"

        low = server.request("POST", "/api/v1/notifications", token=server.env["PUBLISH_TOKEN"],
                             body={"user_id": "joe", "category": "c", "priority": "low"})
        assert low.status == 429 and int(low.headers["Retry-After"]) >= 1
        assert low.json()["error"] == "overloaded" and low.json()["field"] == "priority"
        server.publish({"user_id": "joe", "category": "c", "priority": "normal",
                        "payload": {"n": 1}})  # 202: stored, held back
        time.sleep(1.0)
        assert joe.received == []
        server.publish({"user_id": "joe", "category": "c", "priority": "critical",
                        "payload": {"n": 2}})
        got = joe.wait_for(2)  # critical goes at once, with what waited before it
        assert [n["payload"]["n"] for n in got] == [1, 2]

        server.publish({"user_id": "joe", "category": "c", "priority": "high",
                        "payload": {"n": 3}})
        stalled.close()  # its queue goes with it: the pressure is released
        assert wait_until(lambda: not pressure(server)["engaged"]), pressure(server)
        assert [n["payload"]["n"] for n in joe.wait_for(3)] == [1, 2, 3]
        ok = server.request("POST", "/api/v1/notifications", token=server.env["PUBLISH_TOKEN"],
                            body={"user_id": "joe", "category": "c", "priority": "low"})
        assert ok.status == 202
        joe.close()
    finally:
        assert stop_server(server) == 0, server.log_text()


def test_over_the_memory_budget_connections_and_low_publishes_are_refused(
        pg_url, influx_database, tmp_path, js_client):
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "MEMORY_BUDGET_MB": "16"}, tmp_path)  # less than the process holds
    try:
        assert wait_until(lambda: pressure(server)["over_memory_budget"])
        refused = js_client(server.url, server.token("amy")).wait_for("connect_error")
        assert refused["data"]["error"] == "connection_limit"
        assert refused["data"]["field"] == "memory"
        low = server.request("POST", "/api/v1/notifications", token=server.env["PUBLISH_TOKEN"],
                             body={"user_id": "amy", "category": "c", "priority": "low"})
        assert low.status == 429
        assert server.request("GET", "/healthz").json()["components"]["delivery"] == "critical"
    finally:
        assert stop_server(server) == 0, server.log_text()
