"""``serve --workers N``: one node on N processes sharing its port, on real
Redis (a channel per test), real PostgreSQL and InfluxDB, with the official
socket.io-client. Clients land on either worker; each still gets its own
entries and the broadcasts once, in log order; a reconnect replays; the
node-wide connection limit holds over the workers, also when it changes
live; telemetry carries each worker's node tag; SIGTERM stops every worker."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.backing_services import REDIS_URL, unique
from tests.support.free_port import free_port
from tests.support.js_clients import received_offsets
from tests.support.repository import ROOT
from tests.support.server_process import start_server, stop_server
from tests.support.waiting import wait_until

STOP_BOUND_S = 15.0


@pytest.fixture
def workers_env(pg_url, influx_database):
    return {"DATABASE_URL": pg_url, "INFLUX_DB": influx_database, "REDIS_URL": REDIS_URL,
            "REDIS_CHANNEL": unique("notify_test"), "PRESENCE_INTERVAL": "1",
            "WORKERS": "2"}


@pytest.fixture
def node(workers_env, tmp_path):
    started = []

    def start(**extra: str):
        running = start_server({**workers_env, **extra}, tmp_path)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            assert stop_server(running) == 0, running.log_text()


def worker_pids(parent: int) -> list[int]:
    """The processes whose parent is ``parent``, from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(int(entry.name))
    return sorted(pids)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def presence(node) -> dict[str, int]:
    """Connections per worker, as the workers report them to Redis."""
    answer = node.request("GET", "/api/v1/presence", token=node.env["PUBLISH_TOKEN"]).json()
    return {n["node"]: n["connections"] for n in answer["nodes"]}


def worker_ids(node) -> set[str]:
    return {f"{node.env['NODE_ID']}-w1", f"{node.env['NODE_ID']}-w2"}


def publish_fresh(node, body: dict) -> dict:
    """On a new TCP connection each time, so the kernel spreads the publishes
    over the workers too."""
    host, port = node.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", "/api/v1/notifications", body=json.dumps(body),
                     headers={"Authorization": f"Bearer {node.env['PUBLISH_TOKEN']}",
                              "Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    assert response.status == 202, data
    return json.loads(data)


def test_two_workers_deliver_once_in_order_replay_and_stop_on_sigterm(node, js_client, influx):
    server = node()
    workers = worker_pids(server.process.pid)
    assert len(workers) == 2
    users: list[str] = []
    clients = {}

    def connect_more(k: int) -> None:
        for _ in range(k):
            user = unique("u")
            users.append(user)
            clients[user] = js_client(server.url, server.token(user), "--timeout-ms", "60000")
        for user in users[-k:]:
            clients[user].wait_for("connect")

    connect_more(8)
    # the kernel spreads connections by a hash: keep adding until both workers hold some
    while True:
        wait_until(lambda: sum(presence(server).values()) == len(users), timeout=15)
        if all(presence(server).get(w, 0) > 0 for w in worker_ids(server)):
            break
        assert len(users) < 32, presence(server)
        connect_more(4)

    expected: dict[str, list[int]] = {u: [] for u in users}
    lock = threading.Lock()

    def publisher(k: int) -> None:
        for i in range(40):
            if i % 5 == 0:
                body = {"broadcast": True}
            elif i % 7 == 0:
                body = {"user_ids": [users[(k + i) % len(users)], users[(k + i + 1) % len(users)]]}
            else:
                body = {"user_id": users[(k * 3 + i) % len(users)]}
            answer = publish_fresh(server, {**body, "category": "t", "payload": {"k": k, "i": i}})
            with lock:
                if body.get("broadcast"):
                    for user in users:
                        expected[user].append(answer["offset"])
                else:
                    for user, offset in answer["offsets"].items():
                        expected[user].append(offset)

    threads = [threading.Thread(target=publisher, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(len(offsets) for offsets in expected.values())
    wait_until(lambda: sum(len(received_offsets(c)) for c in clients.values()) >= total,
               timeout=20)
    time.sleep(0.5)  # nothing more may come: a duplicate would show now
    for user, client in clients.items():
        assert received_offsets(client) == sorted(expected[user]), f"{user}: once, in order"

    # replay: a user away gets what they missed, from whichever worker they reach
    away = users[0]
    last = received_offsets(clients[away])[-1]
    clients[away].close()
    missed = [publish_fresh(server, {"user_id": away, "category": "t"})["offset"]
              for _ in range(5)]
    back = js_client(server.url, server.token(away), "--last-offset", str(last),
                     "--expect", "5", "--timeout-ms", "15000")
    back.finish()
    assert [n["offset"] for n in back.notifications()] == missed

    def by_worker(measurement: str, field: str = "count") -> dict[str, int]:
        result = influx.query(f'SELECT sum("{field}") FROM "{measurement}" GROUP BY "node"')
        return {s["tags"]["node"]: s["values"][0][1] for s in result[0].get("series") or []}

    # telemetry: each worker under its own node tag, and together they account for it all
    wait_until(lambda: sum(by_worker("notify_delivery").values()) == total + 5, timeout=30)
    assert set(by_worker("notify_delivery")) == worker_ids(server)
    publishes = 4 * 40 + 5
    wait_until(lambda: sum(by_worker("notify_publish", "requests").values()) == publishes,
               timeout=30)
    assert set(by_worker("notify_publish", "requests")) == worker_ids(server), "both published"

    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=STOP_BOUND_S) == 0, server.log_text()
    assert time.monotonic() - started < STOP_BOUND_S
    assert not [pid for pid in workers if alive(pid)], "every worker stopped"
    log = server.log_text()
    assert log.count("service.serve: stopped") == 2, log


def test_the_node_wide_connection_limit_is_divided_and_follows_live_changes(node, js_client):
    server = node(MAX_CONNECTIONS="2")  # one per worker
    accepted, refused = _settle([js_client(server.url, server.token(unique("u")),
                                           "--timeout-ms", "60000") for _ in range(4)])
    assert len(accepted) <= 2 and len(refused) >= 2, "never more than the node's limit"
    for error in refused:
        assert (error["data"]["error"], error["data"]["field"]) == ("connection_limit", "node")
    wait_until(lambda: sum(presence(server).values()) == len(accepted), timeout=15)
    assert all(n <= 1 for n in presence(server).values()), presence(server)

    answer = server.request("PUT", "/api/v1/config", token=server.env["ADMIN_TOKEN"],
                            body={"parameters": {"max_connections": 6}})  # three per worker
    assert answer.status == 200, answer.data
    more = [js_client(server.url, server.token(unique("u")), "--timeout-ms", "60000")
            for _ in range(6)]
    now_accepted, _ = _settle(more)
    assert now_accepted, "a worker with room accepts, whichever it is"
    assert len(accepted) + len(now_accepted) <= 6
    wait_until(lambda: sum(presence(server).values()) == len(accepted) + len(now_accepted),
               timeout=15)
    assert all(n <= 3 for n in presence(server).values()), presence(server)


def _settle(clients) -> tuple[list, list[dict]]:
    """Each client's first outcome: the ones that connected, and the errors
    of those refused."""
    accepted, refused = [], []
    for client in clients:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            event = client.events.get(timeout=deadline - time.monotonic())
            client.seen.append(event)
            if event["event"] == "connect":
                accepted.append(client)
                break
            if event["event"] == "connect_error":
                refused.append(event)
                break
        else:
            raise AssertionError(f"no outcome: {client.seen}")
    return accepted, refused


def test_a_worker_that_dies_stops_the_node_with_a_failure(node):
    server = node()
    first, second = worker_pids(server.process.pid)
    os.kill(first, signal.SIGKILL)
    assert server.process.wait(timeout=STOP_BOUND_S) == 1
    assert not alive(second), "the other worker was stopped too"
    assert "stopping the others" in server.log_text()


def run_serve(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service", "serve", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=30)


def test_workers_without_redis_are_refused_with_one_line(tmp_path, pg_url):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "WORKERS")}
    env.update({"VAR_DIR": str(tmp_path / "var"), "DATABASE_URL": pg_url,
                "PORT": str(free_port())})
    done = run_serve(["--workers", "2"], env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "REDIS_URL" in done.stderr, done.stderr


def test_a_taken_port_is_refused_once_by_the_supervisor(tmp_path, workers_env):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        env = {**os.environ, **workers_env, "VAR_DIR": str(tmp_path / "var"),
               "HOST": "127.0.0.1", "PORT": str(holder.getsockname()[1])}
        done = run_serve(["--workers", "2"], env)
    assert done.returncode == 5, done.stderr
    assert "cannot listen on" in done.stderr
    assert "serving on" not in done.stdout, "no worker started"
