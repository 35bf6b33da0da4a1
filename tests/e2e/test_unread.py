"""GET /api/v1/users/<user_id>/unread against a real `serve` process: the
count follows publishes and acks (served through the query cache)."""

from __future__ import annotations

import time

from tests.support.py_client import PyClient, publish_n

PUBLISH = "test-publish-token"


def unread(server, user_id: str, token: str | None = PUBLISH):
    return server.request("GET", f"/api/v1/users/{user_id}/unread", token=token)


def wait_for_unread(server, user_id: str, expected: int, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        answer = unread(server, user_id).json()
        if answer["unread"] == expected or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def test_the_unread_count_follows_publishes_and_acks(server):
    first = unread(server, "alice")
    assert first.status == 200
    assert first.json() == {"user_id": "alice", "unread": 0, "acked": 0, "head": 0}
    published = publish_n(server, "alice", 3)
    server.publish({"user_id": "bob", "category": "chat", "payload": {}})
    assert unread(server, "alice").json() == {  # the cached "no stream" is dropped
        "user_id": "alice", "unread": 3, "acked": 0, "head": 4}
    assert unread(server, "alice").json()["unread"] == 3  # again: a hit, the same
    server.publish({"broadcast": True, "category": "news", "payload": {}})
    assert unread(server, "alice").json()["unread"] == 4
    client = PyClient(server.url, server.token("alice"))
    try:
        client.wait_for(4)
        answer = wait_for_unread(server, "alice", 0)  # acks are written every 500 ms
    finally:
        client.close()
    assert answer == {"user_id": "alice", "unread": 0, "acked": 5, "head": 5}
    assert published[-1]["offset"] == 3


def test_the_unread_route_needs_the_publish_token_and_a_valid_user_id(server):
    assert unread(server, "alice", token=None).status == 401
    assert unread(server, "alice", token="wrong").status == 401
    bad = unread(server, "not%20valid")
    assert bad.status == 422 and bad.json()["field"] == "user_id"
