"""Every step is recorded in InfluxDB, and the node reports live state."""

from __future__ import annotations

import time

from service.adapters.influx import InfluxClient, InfluxSettings
from tests.support.backing_services import INFLUX_URL
from tests.support.influx_counts import wait_for_sum
from tests.support.py_client import PyClient, publish_n


def test_publish_delivery_and_ack_counts_reach_influxdb(server):
    influx = InfluxClient(InfluxSettings(url=INFLUX_URL, database=server.env["INFLUX_DB"]))
    alice = PyClient(server.url, server.token("alice"))
    bob = PyClient(server.url, server.token("bob"))
    try:
        publish_n(server, "alice", 7)
        server.publish({"user_ids": ["alice", "bob"], "category": "chat", "payload": {}})
        alice.wait_for(8)
        bob.wait_for(1)
        time.sleep(0.5)  # let the last acks land
    finally:
        alice.close()
        bob.close()
    assert wait_for_sum(influx, "notify_publish", 9) == 9
    assert wait_for_sum(influx, "notify_delivery", 9) == 9
    assert wait_for_sum(influx, "notify_ack", 9) == 9
    opened = influx.query('SELECT sum("count") FROM "notify_connection" WHERE "event" = \'opened\'')
    assert opened[0]["series"][0]["values"][0][1] == 2
    tags = influx.query('SHOW TAG VALUES FROM "notify_publish" WITH KEY = "node"')
    assert tags[0]["series"][0]["values"] == [["node", server.env["NODE_ID"]]]


def test_admin_routes_need_the_admin_token_and_answer_from_live_state(server):
    alice = PyClient(server.url, server.token("alice"))
    try:
        publish_n(server, "alice", 3)
        alice.wait_for(3)
        # a new user's connect reads nothing (nothing is owed): an app's read does
        assert server.request("GET", "/api/v1/users/alice/unread",
                              token=server.env["PUBLISH_TOKEN"]).status == 200
        for token in (None, "wrong", server.env["PUBLISH_TOKEN"]):
            response = server.request("GET", "/admin/api/performance/metrics", token=token)
            assert response.status == 401
        metrics = server.request("GET", "/admin/api/performance/metrics",
                                 token=server.env["ADMIN_TOKEN"]).json()
        assert metrics["connections"] == 1
        assert metrics["totals"]["published"] == 3  # tallied as they happen
        assert metrics["totals"]["delivered"] == 3
        assert metrics["process"]["rss_bytes"] > 0
        assert "schema" not in metrics["telemetry"]["dropped_by_reason"]  # only catalogue names
        assert metrics["rates"]["delivered_per_s"] > 0
        assert set(metrics["cache"]) == {"global", "user"}
        assert sum(c["hits"] + c["misses"] for c in metrics["cache"].values()) > 0
        deadline = time.monotonic() + 15  # latencies and statements land with the flushes
        while time.monotonic() < deadline and not (metrics["latency_ms"]
                                                   and metrics["storage"]["statements"]):
            time.sleep(0.5)
            metrics = server.request("GET", "/admin/api/performance/metrics",
                                     token=server.env["ADMIN_TOKEN"]).json()
        assert metrics["latency_ms"]["count"] == 3, metrics["latency_ms"]
        assert 0 <= metrics["latency_ms"]["p50"] <= metrics["latency_ms"]["p99"]
        # an append is one statement, WITH ... SELECT; a user's first stream WITH ... UPDATE
        assert metrics["storage"]["statements"]["select"]["count"] >= 1
        assert metrics["storage"]["statements"]["update"]["count"] >= 1
        health = server.request("GET", "/admin/api/performance/health",
                                token=server.env["ADMIN_TOKEN"]).json()
        assert health["components"]["storage"]["status"] == "healthy"
        assert set(health["components"]) >= {"delivery", "storage", "telemetry"}
    finally:
        alice.close()
    healthz = server.request("GET", "/healthz")
    assert healthz.status == 200 and healthz.json()["status"] in ("ok", "degraded")


def test_delivery_goes_on_when_influxdb_is_unreachable(pg_url, tmp_path):
    from tests.support.server_process import start_server, stop_server

    server = start_server({"DATABASE_URL": pg_url, "INFLUX_URL": "http://127.0.0.1:9"}, tmp_path)
    try:
        alice = PyClient(server.url, server.token("alice"))
        publish_n(server, "alice", 5)
        assert [n["offset"] for n in alice.wait_for(5, timeout=5)] == [1, 2, 3, 4, 5]
        alice.close()
        time.sleep(1.5)  # one writer round
        health = server.request("GET", "/admin/api/performance/health",
                                token=server.env["ADMIN_TOKEN"]).json()
        assert health["components"]["telemetry"]["status"] == "warning"
        assert server.request("GET", "/healthz").json()["status"] == "degraded"
    finally:
        assert stop_server(server) == 0
