"""The node's books on a real node: a few hundred notifications, published
concurrently, to users who read, users who are offline and a client that
reads nothing (its queue engages backpressure, so entries are deferred);
every ``notify_books`` point the node wrote to the real InfluxDB balances
(``unaccounted`` 0), and what it says was published is what
``notify_publish`` counted."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import websocket

from service.adapters.influx import InfluxClient, InfluxSettings
from tests.support.backing_services import INFLUX_URL
from tests.support.py_client import PyClient
from tests.support.server_process import start_server, stop_server
from tests.support.waiting import wait_for

OUTCOMES = ("live", "queued", "deferred", "dropped")


def stalled_client(server, user: str) -> websocket.WebSocket:
    """Connected, then never reads: a tiny receive buffer fills at once."""
    ws = websocket.create_connection(
        server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
        timeout=10, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    assert ws.recv().startswith("0")
    ws.send("40" + json.dumps({"token": server.token(user)}))
    assert ws.recv().startswith("40")
    return ws


def engaged(server) -> bool:
    return server.request("GET", "/admin/api/performance/metrics",
                          token=server.env["ADMIN_TOKEN"]).json()["backpressure"]["engaged"]


def test_every_books_point_balances_and_counts_what_was_published(pg_url, influx_database,
                                                                  tmp_path):
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "BACKPRESSURE_HIGH_WATER_BYTES": "300000",
                           "SEND_QUEUE_MAX_BYTES": "50000000", "BATCH_SIZE": "5"}, tmp_path)
    readers = {u: PyClient(server.url, server.token(u)) for u in ("ann", "bob")}
    expected = dict.fromkeys(readers, 0)
    stalled = None

    def send(body: dict) -> None:
        server.publish(body)

    def publish_all(bodies: list[dict]) -> None:
        with ThreadPoolExecutor(8) as pool:  # concurrent: the group commit batches them
            list(pool.map(send, bodies))
        for body in bodies:
            users = list(readers) if body.get("broadcast") else body.get(
                "user_ids", [body.get("user_id")])
            for user in users:
                if user in expected:
                    expected[user] += 1

    try:
        # first: the only streams are the readers', so each reaches 2
        publish_all([{"broadcast": True, "category": "c", "payload": {}}] * 5)
        mixed = [{"user_id": u, "category": "c", "payload": {"i": i}}
                 for i in range(40) for u in ("ann", "bob", "olga")]
        mixed += [{"user_ids": ["ann", "oscar", "bob"], "category": "c", "payload": {}}] * 20
        publish_all(mixed)
        # sleeps while publishing on: at least one periodic point lands mid-run
        for _ in range(4):
            publish_all([{"user_id": u, "category": "c", "payload": {}}
                         for u in ("ann", "olga")] * 10)
            time.sleep(3)
        stalled = stalled_client(server, "ivy")
        for i in range(60):  # 3.6 MB for a client that reads nothing
            server.publish({"user_id": "ivy", "category": "bulk",
                            "payload": {"i": i, "b": "x" * 60_000}})
        assert wait_for(lambda: engaged(server), 15.0)
        publish_all([{"user_id": u, "category": "c", "priority": p, "payload": {}}
                     for u in ("ann", "bob", "olga") for p in ("normal", "high", "critical")]
                    * 5)  # deferred (normal, high) while engaged; critical goes at once
        stalled.close()
        stalled = None
        assert wait_for(lambda: not engaged(server), 15.0)
        for user, client in readers.items():
            assert len(client.wait_for(expected[user], timeout=20)) == expected[user], user
    finally:
        if stalled is not None:
            stalled.close()
        for client in readers.values():
            client.close()
        assert stop_server(server) == 0, server.log_text()[-3000:]  # its last point goes out

    influx = InfluxClient(InfluxSettings(url=INFLUX_URL, database=influx_database))
    result = influx.query('SELECT * FROM "raw"."notify_books"')[0]
    [series] = result["series"]
    books = [dict(zip(series["columns"], values, strict=True)) for values in series["values"]]
    assert len(books) >= 3  # at start, every 10 s, at the stop
    assert [b["unaccounted"] for b in books] == [0] * len(books), books
    assert all(b["pending"] >= 0 for b in books)
    last = books[-1]
    published = influx.query('SELECT sum("count") FROM "raw"."notify_publish"')
    assert last["published"] == published[0]["series"][0]["values"][0][1] == (
        5 * 2 + 40 * 3 + 20 * 3 + 4 * 20 + 60 + 45)
    by_outcome = influx.query('SELECT sum("count") FROM "raw"."notify_dispatch" '
                              'GROUP BY "outcome"')[0]["series"]
    dispatched = {s["tags"]["outcome"]: s["values"][0][1] for s in by_outcome}
    assert {o: last[o] for o in OUTCOMES if last[o]} == dispatched
    assert last["pending"] == 0
    assert last["live"] and last["queued"] and last["deferred"]
    # the start-up annotation names its actor, as every config_change point does
    changes = influx.query('SELECT "actor", "text" FROM "raw"."config_change" '
                           "WHERE \"kind\" = 'startup'")[0]["series"][0]["values"]
    assert [row[1] for row in changes] == ["node"]
