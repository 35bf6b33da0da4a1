"""The history routes in process, on the in-memory log behind the real query
cache: the answer's shape (the Socket.IO form plus ``read``), read marks
through the ack path, the cache, and who may call them (publish token, the
user's own token of either kind, no one else). Errors go through the one
mapping (service.entrypoints.error_answers)."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta

import jwt
import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.adapters.jwt_tokens import jwt_verifier
from service.adapters.tokens import UserTokens
from service.domain.cache import TtlLruCache
from service.domain.errors import OffsetOutOfRange
from service.domain.history import HistoryQuery
from service.domain.model import PublishRequest, utcnow
from service.entrypoints.auth import BearerAuth
from service.entrypoints.error_answers import register_http_errors
from service.entrypoints.history_api import history_blueprint
from service.service_layer.cached_log import CachedNotificationLog
from service.service_layer.user_history import History
from tests.support.fakes import InMemoryNotificationLog, RecordingTelemetry

PUBLISH = "unit-publish-token"
SECRET = "unit-user-secret"
JWT_SECRET = "a-shared-secret-of-32-bytes-or-more!"
_ids = itertools.count()


class Node:
    def __init__(self) -> None:
        self.inner = InMemoryNotificationLog()
        cache = {"max_entries": 100, "max_bytes": 1 << 20, "ttl_s": 3600.0,
                 "clock": lambda: 0.0}
        self.log = CachedNotificationLog(self.inner, TtlLruCache(**cache), TtlLruCache(**cache))
        self.history = History(self.log, self.log)
        self.tokens = UserTokens(SECRET, 3600, jwt=jwt_verifier(
            secret=JWT_SECRET, public_key="", jwks_url="", audience="", issuer=""))
        app = Flask("unit")
        register_http_errors(app)
        app.register_blueprint(history_blueprint(
            self.history, BearerAuth("publish", {"publish": PUBLISH}), self.tokens))
        self.client = app.test_client()

    def publish(self, category: str = "chat", priority: str = "normal", **target: object) -> int:
        request = PublishRequest.from_body({**target, "category": category,
                                            "priority": priority, "payload": {"k": "v"}})
        return self.log.append(request, f"{next(_ids):032x}", utcnow()).offset

    def get(self, user: str, query: str = "", token: str | None = PUBLISH):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(f"/api/v1/users/{user}/notifications{query}", headers=headers)

    def mark(self, user: str, body: object, token: str | None = PUBLISH):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.post(f"/api/v1/users/{user}/read", json=body, headers=headers)


@pytest.fixture
def node() -> Node:
    return Node()


def test_items_are_the_socketio_form_plus_read(node):
    for i in range(3):
        node.publish(user_id="alice", priority="high" if i == 1 else "normal")
    node.publish(user_id="bob")
    node.publish(broadcast=True, category="news")
    node.history.mark_read("alice", 2)
    answer = node.get("alice").get_json()
    stream, _ = node.inner.read("alice", 0, 100)
    assert answer["items"] == [{**n.to_wire(), "read": n.offset <= 2} for n in stream]
    assert [i["offset"] for i in answer["items"]] == [1, 2, 3, 5]
    assert {k: v for k, v in answer.items() if k != "items"} == {
        "user_id": "alice", "has_more": False, "next_before": None, "next_after": 5,
        "acked": 2, "head": 5}


def test_pages_go_both_ways_with_filters(node):
    for i in range(10):
        node.publish(user_id="alice", category="news" if i % 2 else "chat")
    first = node.get("alice", "?limit=3&category=news").get_json()
    assert [i["offset"] for i in first["items"]] == [6, 8, 10] and first["has_more"]
    older = node.get("alice", f"?limit=3&category=news&before={first['next_before']}")
    assert [i["offset"] for i in older.get_json()["items"]] == [2, 4]
    newer = node.get("alice", "?after=4&limit=2&priority=normal").get_json()
    assert [i["offset"] for i in newer["items"]] == [5, 6] and newer["next_after"] == 6


def test_a_read_mark_moves_the_ack_forward_only_and_not_past_the_head(node):
    for _ in range(4):
        node.publish(user_id="alice")
    answer = node.mark("alice", {"offset": 3})
    assert (answer.status_code, answer.get_json()) == (
        200, {"user_id": "alice", "acked": 3, "unread": 1, "head": 4})
    assert node.mark("alice", {"offset": 1}).get_json()["acked"] == 3  # backwards: no-op
    assert node.inner.acked["alice"] == 3
    beyond = node.mark("alice", {"offset": 5})
    assert beyond.status_code == 409
    assert beyond.get_json()["error"] == "offset_out_of_range"
    assert beyond.get_json()["field"] == "offset"
    with pytest.raises(OffsetOutOfRange):
        node.history.mark_read("alice", 99)


def test_the_cached_page_is_dropped_by_an_ack_and_by_a_publish_to_the_user(node):
    node.publish(user_id="alice")
    node.publish(user_id="alice")
    query = HistoryQuery()
    first = node.history.page("alice", query)
    reads = node.inner.reads
    assert node.history.page("alice", query) == first and node.inner.reads == reads  # a hit
    node.publish(user_id="bob")  # another user's stream: still a hit, with the new head
    page, position = node.history.page("alice", query)
    assert node.inner.reads == reads and position.head == 3
    node.log.ack_many({"alice": 2})  # what a Socket.IO ack's flush writes
    assert node.history.page("alice", query)[1].acked == 2 and node.inner.reads == reads + 1
    node.publish(user_id="alice")
    assert [n.offset for n in node.history.page("alice", query)[0].items] == [1, 2, 4]


def test_the_publish_token_or_the_users_own_token_and_no_other(node):
    node.publish(user_id="alice")
    own = node.tokens.issue("alice")
    as_jwt = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, JWT_SECRET,
                        algorithm="HS256")
    for token in (PUBLISH, own, as_jwt):
        assert node.get("alice", token=token).status_code == 200, token
    assert node.mark("alice", {"offset": 1}, token=as_jwt).get_json()["acked"] == 1
    for token in (node.tokens.issue("bob"),
                  jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, JWT_SECRET,
                             algorithm="HS256")):
        for answer in (node.get("alice", token=token), node.mark("alice", {"offset": 1}, token)):
            assert answer.status_code == 403
            assert answer.get_json()["error"] == "forbidden"
            assert answer.get_json()["field"] == "user_id"
    expired = jwt.encode({"sub": "alice", "exp": int(time.time()) - 120}, JWT_SECRET,
                         algorithm="HS256")
    for token in (None, "wrong", PUBLISH + "x", expired):
        answer = node.get("alice", token=token)
        assert answer.status_code == 401 and answer.get_json()["field"] == "Authorization"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert "expired" in node.get("alice", token=expired).get_json()["detail"]


@pytest.mark.parametrize(("query", "field"), [
    ("?limit=101", "limit"), ("?limit=0", "limit"), ("?before=x", "before"),
    ("?before=3&after=1", "before"), ("?priority=urgent", "priority"), ("?after=-1", "after"),
])
def test_bad_parameters_are_422_naming_them(node, query, field):
    answer = node.get("alice", query)
    assert answer.status_code == 422
    assert answer.get_json() | {"detail": ""} == {"error": "invalid_input", "detail": "",
                                                  "field": field}


@pytest.mark.parametrize(("body", "status", "field"), [
    ({}, 422, "offset"), ({"offset": "3"}, 422, "offset"), ({"offset": 1.5}, 422, "offset"),
    ({"offset": True}, 422, "offset"), ({"offset": -1}, 422, "offset"),
    ({"offset": 1, "more": 2}, 422, "more"), ([1], 422, "body"),
])
def test_bad_read_bodies_are_refused_naming_the_field(node, body, status, field):
    answer = node.mark("alice", body)
    assert (answer.status_code, answer.get_json()["field"]) == (status, field)


def test_a_bad_user_id_is_422_and_an_empty_body_400(node):
    answer = node.get("not%20valid")
    assert (answer.status_code, answer.get_json()["field"]) == (422, "user_id")
    empty = node.client.post("/api/v1/users/alice/read",
                             headers={"Authorization": f"Bearer {PUBLISH}"})
    assert (empty.status_code, empty.get_json()["error"]) == (400, "malformed_request")


_QUERY_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)


@settings(max_examples=300, derandomize=True, database=None, deadline=timedelta(seconds=2),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["before", "after", "limit", "category", "priority",
                                        "x"]),
                       st.one_of(_QUERY_TEXT, st.integers(-5, 2**64).map(str)), max_size=4))
def test_any_query_gets_a_page_or_a_422_naming_a_parameter(node, args):
    if not node.inner.entries:
        for i in range(5):
            node.publish(user_id="alice", category="news" if i % 2 else "chat")
    answer = node.client.get("/api/v1/users/alice/notifications", query_string=args,
                             headers={"Authorization": f"Bearer {PUBLISH}"})
    body = answer.get_json()
    if answer.status_code == 200:
        assert len(body["items"]) <= 100
    else:
        assert answer.status_code == 422, body
        assert body["field"] in args


def test_a_mark_past_the_cached_head_asks_the_log_itself():
    """Another node may have appended what this node's cached head has not
    heard of yet: the uncached head decides."""
    node = Node()
    node.publish(user_id="alice")
    node.inner.append(PublishRequest.from_body({"user_id": "alice", "category": "c"}),
                      "elsewhere", utcnow())  # committed behind the cache's back
    assert node.log.head() == 1
    asked = []

    def log_head() -> int:
        asked.append(True)
        return node.inner.head()

    history = History(node.log, node.log, log_head)
    assert history.mark_read("alice", 1).acked == 1 and asked == []  # within the cached head
    assert history.mark_read("alice", 2).acked == 2 and asked == [True]
    with pytest.raises(OffsetOutOfRange, match="beyond the log's head 2"):
        history.mark_read("alice", 3)


def test_a_read_mark_is_counted_as_an_ack_of_the_entries_it_newly_covers():
    log = InMemoryNotificationLog()
    telemetry = RecordingTelemetry()
    history = History(log, log, telemetry=telemetry)
    request = PublishRequest.from_body({"user_id": "alice", "category": "chat",
                                        "payload": {"k": "v"}})
    for _ in range(5):
        log.append(request, f"{next(_ids):032x}", utcnow())
    history.mark_read("alice", 3)
    history.mark_read("alice", 2)  # backwards: an event, nothing newly covered
    history.mark_read("alice", 5)
    assert telemetry.total("notify_ack") == 5
    assert telemetry.total("notify_ack", "acks") == 3
