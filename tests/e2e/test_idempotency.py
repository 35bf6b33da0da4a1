"""Idempotency-Key on POST /api/v1/notifications against real nodes on one
PostgreSQL log: a retry is answered the first result and stores nothing, on
the same node or on another one after the first was killed before its
answer reached the publisher."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from urllib.parse import urlparse

import pytest
import urllib3
from sqlalchemy import create_engine, text

from tests.support.backing_services import unique
from tests.support.server_process import start_server, stop_server

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HTTP = urllib3.PoolManager(retries=False)


def post(server, body: dict, key: str | None) -> urllib3.BaseHTTPResponse:
    headers = {"Content-Type": "application/json",
               "Authorization": f"Bearer {server.env['PUBLISH_TOKEN']}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return HTTP.request("POST", server.url + "/api/v1/notifications", body=json.dumps(body),
                        headers=headers, timeout=10.0)


def entries_with(pg_url: str, marker: str) -> int:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM log_entries WHERE payload LIKE :m"),
                                {"m": f"%{marker}%"}).scalar()
    finally:
        engine.dispose()


def test_a_retry_is_answered_the_first_result_and_another_body_is_refused(server, pg_url):
    body = {"user_id": "ida", "category": "order", "payload": {"marker": "m-retry"}}
    first = post(server, body, "order-1")
    again = post(server, body, "order-1")
    assert first.status == again.status == 202
    assert again.json() == first.json()
    assert entries_with(pg_url, "m-retry") == 1

    other = post(server, {**body, "payload": {"marker": "m-other"}}, "order-1")
    assert other.status == 409
    assert other.json()["error"] == "idempotency_conflict"
    assert other.json()["field"] == "Idempotency-Key"
    assert "Idempotency-Key" in other.json()["detail"]
    assert entries_with(pg_url, "m-other") == 0

    bad = post(server, body, "two words")
    assert bad.status == 422 and bad.json()["field"] == "Idempotency-Key"


@pytest.fixture
def two_nodes(pg_url, influx_database, tmp_path):
    env = {"DATABASE_URL": pg_url, "INFLUX_DB": influx_database, "REDIS_URL": REDIS_URL,
           "REDIS_CHANNEL": unique("notify_test"), "WORKERS": "1"}
    nodes = [start_server(env, tmp_path), start_server(env, tmp_path)]
    yield nodes
    for node in nodes:
        if node.process.poll() is None:
            assert stop_server(node) == 0, node.log_text()


def send_unanswered(server, body: dict, key: str) -> socket.socket:
    """The request, on a socket whose answer nobody reads: a publisher that
    timed out, or whose node died before answering."""
    address = urlparse(server.url)
    raw = json.dumps(body).encode()
    sock = socket.create_connection((address.hostname, address.port))
    sock.sendall(
        b"POST /api/v1/notifications HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {server.env['PUBLISH_TOKEN']}\r\n".encode()
        + f"Idempotency-Key: {key}\r\nContent-Length: {len(raw)}\r\n\r\n".encode() + raw)
    return sock


def test_a_node_killed_after_committing_and_the_retry_on_another_node_store_one_entry(
        two_nodes, pg_url):
    a, b = two_nodes
    body = {"user_id": "kay", "category": "order", "payload": {"marker": "m-killed"}}
    sock = send_unanswered(a, body, "order-killed")
    deadline = time.monotonic() + 10
    while entries_with(pg_url, "m-killed") == 0:  # committed: now kill it before we read
        assert time.monotonic() < deadline, a.log_text()
        time.sleep(0.005)
    a.process.send_signal(signal.SIGKILL)
    a.process.wait()
    sock.close()
    retry = post(b, body, "order-killed")
    assert retry.status == 202, retry.data
    assert entries_with(pg_url, "m-killed") == 1
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT id, log_offset FROM log_entries "
                                       "WHERE payload LIKE '%m-killed%'")).one()
    finally:
        engine.dispose()
    assert (retry.json()["id"], retry.json()["offset"]) == tuple(stored)


def test_a_node_killed_before_committing_and_the_retry_on_another_node_store_one_entry(
        two_nodes, pg_url):
    a, b = two_nodes
    body = {"user_id": "lee", "category": "order", "payload": {"marker": "m-stopped"}}
    a.process.send_signal(signal.SIGSTOP)  # the request waits in its backlog, unread
    sock = send_unanswered(a, body, "order-stopped")
    time.sleep(0.2)
    a.process.send_signal(signal.SIGKILL)
    a.process.wait()
    sock.close()
    assert entries_with(pg_url, "m-stopped") == 0
    first = post(b, body, "order-stopped")
    again = post(b, body, "order-stopped")
    assert first.status == again.status == 202 and first.json() == again.json()
    assert entries_with(pg_url, "m-stopped") == 1
