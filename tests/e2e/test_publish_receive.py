"""Publish over HTTP, receive over Socket.IO: the JavaScript client and a
python-socketio client against a real `serve` process."""

from __future__ import annotations

import json
import time

import socketio

from tests.support.py_client import InOrderClient, PyClient, publish_n


def test_the_js_client_receives_in_order_and_acks(server, js_client):
    client = js_client(server.url, server.token("alice"), "--expect", "5", "--timeout-ms", "15000")
    client.wait_for("connect")
    answers = publish_n(server, "alice", 5)
    assert [a["offsets"] for a in answers] == [{"alice": i} for i in range(1, 6)]
    client.finish()
    received = client.notifications()
    assert [n["offset"] for n in received] == [1, 2, 3, 4, 5]
    assert [n["payload"]["seq"] for n in received] == [0, 1, 2, 3, 4]
    assert [n["id"] for n in received] == [a["id"] for a in answers]
    assert set(received[0]) == {"id", "offset", "category", "priority", "payload", "created_at"}
    acks = [e["reply"] for e in client.seen if e["event"] == "ack"]
    assert acks and all(reply["ok"] for reply in acks) and acks[-1]["offset"] == 5


def test_the_python_client_receives_in_order_and_another_user_gets_nothing(server):
    alice = PyClient(server.url, server.token("alice"))
    bob = PyClient(server.url, server.token("bob"))
    try:
        publish_n(server, "alice", 20)
        received = alice.wait_for(20)
        assert [n["offset"] for n in received] == list(range(1, 21))
        time.sleep(0.3)
        assert bob.received == []
        server.publish({"broadcast": True, "category": "news", "payload": {"hello": "all"}})
        assert [n["category"] for n in bob.wait_for(1)] == ["news"]
        assert alice.wait_for(21)[-1]["category"] == "news"
    finally:
        alice.close()
        bob.close()


def test_reconnecting_with_last_offset_replays_exactly_the_missed_ones(server, js_client):
    publish_n(server, "carol", 6)
    client = js_client(server.url, server.token("carol"), "--last-offset", "2", "--expect", "4")
    client.finish()
    assert [n["offset"] for n in client.notifications()] == [3, 4, 5, 6]
    # Acked up to 6: a reconnect without last_offset gets nothing new...
    quiet = js_client(server.url, server.token("carol"), "--timeout-ms", "1500")
    quiet.finish()
    assert quiet.notifications() == []
    # ...and exactly what was published while it was away.
    publish_n(server, "carol", 2, start=6)
    back = js_client(server.url, server.token("carol"), "--expect", "2")
    back.finish()
    assert [n["payload"]["seq"] for n in back.notifications()] == [6, 7]


def test_a_python_client_handles_batches_in_the_order_the_server_sent_them(server):
    """Why the replay test once saw 501.. before 1..500 (issue 18): the
    server sends in order, but python-engineio's threaded client handles each
    message in a thread of its own, so a batch that comes while the previous
    one is still being handled can overtake it. Forced here: the first
    batch's handler takes 0.5 s. The stock client records the second batch
    first; the in-order client (tests/support/py_client.py, what the suites
    use) records them as sent."""
    def slow_first(batch: list[dict]) -> None:
        if batch[0]["payload"]["seq"] == 0:
            time.sleep(0.5)  # the second batch arrives meanwhile

    seen = {}
    for name, client_class in (("stock", socketio.Client), ("in_order", InOrderClient)):
        user = f"order-{name}"
        client = PyClient(server.url, server.token(user), client_class=client_class)
        client.on_batch = slow_first
        try:
            for seq in range(2):  # critical: each goes out at once, as its own batch
                server.publish({"user_id": user, "category": "chat", "priority": "critical",
                                "payload": {"seq": seq}})
            seen[name] = [n["payload"]["seq"] for n in client.wait_for(2)]
        finally:
            client.close()
    assert seen == {"stock": [1, 0], "in_order": [0, 1]}


def test_the_offline_queue_is_the_unacknowledged_tail(server):
    publish_n(server, "dave", 3)
    first = PyClient(server.url, server.token("dave"), ack=False)
    assert len(first.wait_for(3)) == 3
    first.close()
    again = PyClient(server.url, server.token("dave"))
    try:
        assert [n["offset"] for n in again.wait_for(3)] == [1, 2, 3]
    finally:
        again.close()


def test_sqlite_default_serves_end_to_end(sqlite_server, js_client):
    client = js_client(sqlite_server.url, sqlite_server.token("erin"), "--expect", "3")
    client.wait_for("connect")
    publish_n(sqlite_server, "erin", 3)
    client.finish()
    assert [n["offset"] for n in client.notifications()] == [1, 2, 3]


def test_the_offline_queue_survives_a_server_restart(pg_url, influx_database, tmp_path):
    from tests.support.server_process import start_server, stop_server

    env = {"DATABASE_URL": pg_url, "INFLUX_DB": influx_database}
    first = start_server(env, tmp_path)
    try:
        reader = PyClient(first.url, first.token("gus"))
        publish_n(first, "gus", 3)
        assert len(reader.wait_for(3)) == 3
        deadline = time.monotonic() + 5  # until the server has the client's last ack
        while time.monotonic() < deadline and first.request(
                "GET", "/admin/api/performance/metrics",
                token=first.env["ADMIN_TOKEN"]).json()["totals"]["acked"] < 3:
            time.sleep(0.05)
        reader.close()
        publish_n(first, "gus", 4, start=3)  # while gus is away
    finally:
        assert stop_server(first) == 0
    second = start_server({**env, "PORT": first.env["PORT"]}, tmp_path)
    try:
        back = PyClient(second.url, second.token("gus"))
        received = back.wait_for(4)
        assert [n["offset"] for n in received] == [4, 5, 6, 7]
        assert [n["payload"]["seq"] for n in received] == [3, 4, 5, 6]
        back.close()
    finally:
        assert stop_server(second) == 0


def test_large_batches_arrive_compressed_and_decode_in_the_js_client(server, js_client):
    sent = [{"user_id": "kim", "category": "news", "payload": {"seq": i, "text": "é" * 150}}
            for i in range(30)]
    for body in sent:  # kim is away: the 30 come back as one replayed batch of ~8 KB
        server.publish(body)
    # both from offset 0: the two start at once, and without it whichever
    # connects second would start after what the first had acked
    packed = js_client(server.url, server.token("kim"), "--compression", "--last-offset", "0",
                       "--expect", "30")
    plain = js_client(server.url, server.token("kim"), "--last-offset", "0", "--expect", "30")
    for client in (packed, plain):
        client.finish()
        received = client.notifications()
        assert [n["offset"] for n in received] == list(range(1, 31)), client.seen
        assert [n["payload"] for n in received] == [b["payload"] for b in sent]
    assert any(e.get("compressed") for e in packed.seen if e["event"] == "notifications")
    assert not any(e.get("compressed") for e in plain.seen if e["event"] == "notifications")


def test_an_unknown_compression_scheme_is_refused(server, js_client):
    auth = json.dumps({"token": server.token("kim"), "compression": "brotli"})
    client = js_client(server.url, "x", "--auth-json", auth)
    refused = client.wait_for("connect_error")
    assert refused["data"]["field"] == "compression"
