"""A user's history and read mark against a real `serve` process on
PostgreSQL: paging both ways with filters, marking read over HTTP (the
unread count and the `read` flags follow), acks from the official
socket.io-client showing in the history, and who may call the routes
(the publish token; the user's own token, itsdangerous or JWT)."""

from __future__ import annotations

import time

import jwt
import pytest

from tests.support.server_process import start_server, stop_server

JWT_SECRET = "an-e2e-jwt-secret-of-32-bytes-or-more"


@pytest.fixture
def node(pg_url, influx_database, tmp_path):
    running = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                            "JWT_SECRET": JWT_SECRET}, tmp_path)
    yield running
    assert stop_server(running) == 0, running.log_text()


def history(node, user: str, query: str = "", token: str | None = None) -> tuple[int, dict]:
    token = node.env["PUBLISH_TOKEN"] if token is None else token
    answer = node.request("GET", f"/api/v1/users/{user}/notifications{query}", token=token or None)
    return answer.status, answer.json()


def mark_read(node, user: str, offset, token: str | None = None) -> tuple[int, dict]:
    token = node.env["PUBLISH_TOKEN"] if token is None else token
    answer = node.request("POST", f"/api/v1/users/{user}/read", token=token or None,
                          body={"offset": offset})
    return answer.status, answer.json()


def unread(node, user: str) -> dict:
    return node.request("GET", f"/api/v1/users/{user}/unread",
                        token=node.env["PUBLISH_TOKEN"]).json()


def walk(node, user: str, filters: str, forward: bool) -> list[int]:
    """Every page, followed by its cursors; the offsets in offset order."""
    seen: list[int] = []
    cursor = "&after=0" if forward else ""
    for _ in range(50):
        status, page = history(node, user, f"?limit=4{filters}{cursor}")
        assert status == 200, page
        offsets = [item["offset"] for item in page["items"]]
        assert offsets == sorted(offsets) and len(offsets) <= 4
        if forward:
            seen += offsets
            if not page["has_more"]:
                return seen
            cursor = f"&after={page['next_after']}"
        else:
            seen = offsets + seen
            if page["next_before"] is None:
                return seen
            cursor = f"&before={page['next_before']}"
    raise AssertionError("the cursors did not end")


def wait_until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_history_pages_marks_and_acks_agree(node, js_client):
    sent = []
    for i in range(13):
        body = {"user_id": "alice", "category": "news" if i % 3 == 0 else "chat",
                "priority": "high" if i % 4 == 0 else "normal", "payload": {"i": i}}
        sent.append({**body, "offset": node.publish(body)["offset"]})
        if i == 5:
            node.publish({"user_id": "bob", "category": "chat", "payload": {}})
    sent.append({"category": "news", "priority": "normal",
                 "offset": node.publish({"broadcast": True, "category": "news",
                                         "payload": {}})["offset"]})
    offsets = [s["offset"] for s in sent]

    # both directions, with and without filters, each entry once
    assert walk(node, "alice", "", forward=False) == offsets
    assert walk(node, "alice", "", forward=True) == offsets
    news = [s["offset"] for s in sent if s["category"] == "news"]
    assert walk(node, "alice", "&category=news", forward=False) == news
    high_chat = [s["offset"] for s in sent if s["category"] == "chat"
                 and s["priority"] == "high"]
    assert walk(node, "alice", "&category=chat&priority=high", forward=True) == high_chat

    # the items as Socket.IO delivers them, none read yet
    status, page = history(node, "alice", "?limit=100")
    assert status == 200 and [i["offset"] for i in page["items"]] == offsets
    assert set(page["items"][0]) == {"id", "offset", "category", "priority", "payload",
                                     "created_at", "read"}
    assert page["items"][0]["payload"] == {"i": 0} and not any(i["read"] for i in page["items"])
    assert unread(node, "alice")["unread"] == 14

    # a read mark moves the unread count and the flags; backwards changes nothing
    mark = offsets[4]
    status, answer = mark_read(node, "alice", mark)
    assert status == 200 and answer == {"user_id": "alice", "acked": mark, "unread": 9,
                                        "head": offsets[-1]}
    assert unread(node, "alice")["unread"] == 9
    page = history(node, "alice", "?limit=100")[1]
    assert [i["read"] for i in page["items"]] == [o <= mark for o in offsets]
    assert mark_read(node, "alice", offsets[1])[1]["acked"] == mark
    status, refused = mark_read(node, "alice", offsets[-1] + 1)
    assert status == 409 and refused["error"] == "offset_out_of_range"
    assert refused["field"] == "offset"

    # the official client is replayed what is not read yet, and acks it
    client = js_client(node.url, node.token("alice"), "--expect", str(len(offsets) - 5))
    replayed = [n["offset"] for e in client.finish() if e["event"] == "notifications"
                for n in e["batch"]]
    assert replayed == offsets[5:]
    all_read = wait_until(lambda: all(
        i["read"] for i in history(node, "alice", "?limit=100")[1]["items"]))
    assert all_read, history(node, "alice", "?limit=100")[1]
    assert unread(node, "alice")["unread"] == 0
    assert history(node, "alice")[1]["acked"] == offsets[-1]


def test_a_users_own_token_reads_and_marks_only_their_own(node):
    first = node.publish({"user_id": "alice", "category": "chat", "payload": {}})["offset"]
    node.publish({"user_id": "alice", "category": "chat", "payload": {}})
    own = node.token("alice")
    as_jwt = jwt.encode({"sub": "alice", "exp": int(time.time()) + 300}, JWT_SECRET,
                        algorithm="HS256")
    for token in (own, as_jwt):
        status, page = history(node, "alice", token=token)
        assert status == 200 and len(page["items"]) == 2
    status, answer = mark_read(node, "alice", first, token=as_jwt)
    assert status == 200 and answer["acked"] == first and answer["unread"] == 1
    assert [i["read"] for i in history(node, "alice", token=own)[1]["items"]] == [True, False]

    bobs = (node.token("bob"), jwt.encode({"sub": "bob", "exp": int(time.time()) + 300},
                                          JWT_SECRET, algorithm="HS256"))
    for token in bobs:
        for status, answer in (history(node, "alice", token=token),
                               mark_read(node, "alice", first + 1, token=token)):
            assert status == 403 and answer["error"] == "forbidden", answer
    assert unread(node, "alice")["unread"] == 1  # bob's marks changed nothing
    for token in ("", "not-a-token", node.env["ADMIN_TOKEN"]):
        status, answer = history(node, "alice", token=token)
        assert status == 401 and answer["field"] == "Authorization"
    status, answer = history(node, "alice", "?limit=101")
    assert status == 422 and answer["field"] == "limit"
