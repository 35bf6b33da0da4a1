"""Several nodes on one PostgreSQL log and one Redis: what is published on any
node reaches a user on any other, in order; presence covers every node; a
publish-only node hands its publishes on; a node killed with ``kill -9``
loses nothing that was acknowledged. Real Redis (a channel per test),
real PostgreSQL, the official socket.io-client."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from sqlalchemy import create_engine, text

from tests.support.backing_services import REDIS_URL, unique
from tests.support.free_port import free_port
from tests.support.js_clients import received_offsets
from tests.support.server_process import start_server, stop_server
from tests.support.waiting import wait_until


@pytest.fixture
def cluster_env(pg_url, influx_database):
    return {"DATABASE_URL": pg_url, "INFLUX_DB": influx_database, "REDIS_URL": REDIS_URL,
            "REDIS_CHANNEL": unique("notify_test"), "PRESENCE_INTERVAL": "1",
            "WORKERS": "1"}  # one process a node: these tests name nodes by NODE_ID


@pytest.fixture
def nodes(cluster_env, tmp_path):
    started = []

    def start(**extra: str):
        node = start_server({**cluster_env, **extra}, tmp_path)
        started.append(node)
        return node

    yield start
    for node in started:
        if node.process.poll() is None:
            assert stop_server(node) == 0, node.log_text()


def test_a_user_receives_in_order_what_is_published_on_every_node(nodes, js_client):
    # the log follower looks once a minute here: what arrives in time came through Redis
    a, b = nodes(LOG_FOLLOW_INTERVAL="60"), nodes(LOG_FOLLOW_INTERVAL="60")
    user = unique("u")
    client = js_client(b.url, b.token(user), "--timeout-ms", "30000")
    client.wait_for("connect")
    through_a = [a.publish({"user_id": user, "category": "t"})["offset"] for _ in range(20)]
    wait_until(lambda: len(received_offsets(client)) >= 20, timeout=10)
    assert received_offsets(client) == through_a

    published: list[int] = list(through_a)
    lock = threading.Lock()

    def publisher(node, k: int) -> None:
        for i in range(k):
            body = ({"broadcast": True} if i % 10 == 0 else {"user_id": user})
            answer = node.publish({**body, "category": "t", "payload": {"i": i}})
            with lock:
                published.append(answer["offset"])

    threads = [threading.Thread(target=publisher, args=(node, 60))
               for node in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_until(lambda: len(received_offsets(client)) >= len(published))
    offsets = received_offsets(client)
    assert offsets == sorted(published), "each entry once, in log order"


def test_presence_counts_users_per_node_and_in_total(nodes, js_client, influx):
    a, b = nodes(), nodes()
    alice, bob = unique("alice"), unique("bob")
    for node, user in ((a, alice), (b, alice), (b, bob)):
        js_client(node.url, node.token(user), "--timeout-ms", "30000").wait_for("connect")

    def presence():
        return a.request("GET", "/api/v1/presence", token=a.env["PUBLISH_TOKEN"]).json()

    wait_until(lambda: presence()["connections"] == 3)
    seen = presence()
    assert seen["users"] == 2, "alice is on both nodes and counts once"
    assert {n["node"]: (n["connections"], n["users"]) for n in seen["nodes"]} == {
        a.env["NODE_ID"]: (1, 1), b.env["NODE_ID"]: (2, 2)}
    answer = b.request("GET", f"/api/v1/users/{alice}/presence",
                       token=b.env["PUBLISH_TOKEN"]).json()
    assert answer == {"user_id": alice, "online": True,
                      "nodes": sorted([a.env["NODE_ID"], b.env["NODE_ID"]])}
    nobody = a.request("GET", f"/api/v1/users/{unique('x')}/presence",
                       token=a.env["PUBLISH_TOKEN"]).json()
    assert nobody["online"] is False and nobody["nodes"] == []

    def in_telemetry():  # each node records itself and the cluster as Redis shows it
        series = influx.query('SELECT last("connections"), last("cluster_users"), '
                              'last("cluster_connections") FROM "cluster" GROUP BY "node"'
                              )[0].get("series") or []
        return {s["tags"]["node"]: s["values"][0][1:] for s in series}

    wait_until(lambda: in_telemetry() == {a.env["NODE_ID"]: [1, 2, 3],
                                          b.env["NODE_ID"]: [2, 2, 3]}, timeout=20)
    stop_server(a)  # a clean stop withdraws its report at once
    wait_until(lambda: presence_of(b)["nodes"] and len(presence_of(b)["nodes"]) == 1)
    assert presence_of(b)["users"] == 2


def test_a_node_with_no_client_hears_the_others_writes_and_its_cache_follows(nodes, js_client):
    a, b = nodes(LOG_FOLLOW_INTERVAL="60"), nodes(LOG_FOLLOW_INTERVAL="60")
    user = unique("u")

    def unread_on_b() -> int:
        return b.request("GET", f"/api/v1/users/{user}/unread",
                         token=b.env["PUBLISH_TOKEN"]).json()["unread"]

    client = js_client(a.url, a.token(user), "--no-ack", "--timeout-ms", "30000")
    client.wait_for("connect")
    offsets = [a.publish({"user_id": user, "category": "t"})["offset"] for _ in range(3)]
    wait_until(lambda: received_offsets(client) == offsets, timeout=10)
    wait_until(lambda: unread_on_b() == 3, timeout=10)  # now cached on b
    assert unread_on_b() == 3
    a.publish({"user_id": user, "category": "t"})  # through a: b's cache hears of it
    wait_until(lambda: unread_on_b() == 4, timeout=5)


def presence_of(node) -> dict:
    return node.request("GET", "/api/v1/presence", token=node.env["PUBLISH_TOKEN"]).json()


def test_a_publish_only_node_refuses_clients_and_hands_its_publishes_on(nodes, js_client):
    deliverer, publisher = nodes(), nodes(WRITE_ONLY="1")
    user = unique("u")
    refused = js_client(publisher.url, publisher.token(user))
    error = refused.wait_for("connect_error")
    assert error["data"]["error"] == "publish_only_node", error
    client = js_client(deliverer.url, deliverer.token(user), "--expect", "5")
    client.wait_for("connect")
    offsets = [publisher.publish({"user_id": user, "category": "t"})["offset"]
               for _ in range(5)]
    client.finish()
    assert [n["offset"] for n in client.notifications()] == offsets
    assert presence_of(deliverer)["nodes"][0]["node"] == deliverer.env["NODE_ID"]
    assert len(presence_of(deliverer)["nodes"]) == 1, "a publish-only node is not present"


def test_a_node_killed_with_kill_9_loses_nothing(nodes, js_client, cluster_env):
    a, b = nodes(), nodes()
    user = unique("u")
    first = js_client(a.url, a.token(user), "--timeout-ms", "60000")
    first.wait_for("connect")
    acknowledged: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def publisher(node) -> None:
        while not stop.is_set():
            try:
                response = node.request("POST", "/api/v1/notifications",
                                        token=node.env["PUBLISH_TOKEN"],
                                        body={"user_id": user, "category": "t"})
            except Exception as exc:  # the killed node: connection refused or reset
                errors.append(type(exc).__name__)
                time.sleep(0.05)
                continue
            if response.status == 202:
                acknowledged.append(response.json()["id"])

    threads = [threading.Thread(target=publisher, args=(node,)) for node in (a, a, b, b)]
    for t in threads:
        t.start()
    wait_until(lambda: len(received_offsets(first)) >= 50)
    a.process.send_signal(signal.SIGKILL)
    a.process.wait()
    time.sleep(0.5)
    before = received_offsets(first)
    # the client reconnects to the surviving node, from the last offset it received
    second = js_client(b.url, b.token(user), "--last-offset", str(before[-1]),
                       "--timeout-ms", "60000")
    second.wait_for("connect")
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert errors, "the publishers to the killed node saw it die"
    engine = create_engine(cluster_env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            stored = {row[0] for row in conn.execute(
                text("SELECT id FROM log_entries WHERE id = ANY(:ids)"),
                {"ids": acknowledged})}
            expected = [row[0] for row in conn.execute(text(
                "SELECT log_offset FROM log_recipients WHERE user_id = :u "
                "ORDER BY log_offset"), {"u": user})]
    finally:
        engine.dispose()
    assert stored == set(acknowledged), "every 202 is in the log"
    wait_until(lambda: len(before) + len(received_offsets(second)) >= len(expected), 20)
    after = received_offsets(second)
    assert before + after == expected, "once each, in order, across the two nodes"


class PrivateRedis:
    """A redis-server of this test's own, which it may stop and start again."""

    def __init__(self, directory) -> None:
        self.port = free_port()
        self.directory = directory
        self.process = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import subprocess

        import redis

        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_a_redis_restart_stops_neither_local_nor_cross_node_delivery_for_good(
        nodes, js_client, private_redis):
    # the follower looks once a minute: only Redis (and gap filling) deliver across nodes
    a = nodes(REDIS_URL=private_redis.url, LOG_FOLLOW_INTERVAL="60")
    b = nodes(REDIS_URL=private_redis.url, LOG_FOLLOW_INTERVAL="60")
    far, near = unique("far"), unique("near")
    on_a = js_client(a.url, a.token(far), "--timeout-ms", "90000")
    on_b = js_client(b.url, b.token(near), "--timeout-ms", "90000")
    on_a.wait_for("connect")
    on_b.wait_for("connect")
    to_far = [b.publish({"user_id": far, "category": "t"})["offset"]]
    wait_until(lambda: received_offsets(on_a) == to_far, timeout=10)

    private_redis.stop()
    to_near = []
    for _ in range(10):  # local delivery never stops
        to_near.append(b.publish({"user_id": near, "category": "t"})["offset"])
        to_far.append(b.publish({"user_id": far, "category": "t"})["offset"])
        time.sleep(0.1)
    wait_until(lambda: received_offsets(on_b) == to_near, timeout=5)

    private_redis.start()
    deadline = time.monotonic() + 60
    while received_offsets(on_a) != to_far and time.monotonic() < deadline:
        to_far.append(b.publish({"user_id": far, "category": "t"})["offset"])
        time.sleep(0.5)
    assert received_offsets(on_a) == to_far, "across nodes again, with the outage filled in"
