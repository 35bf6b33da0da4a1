"""service.client's retry policy against a real HTTP server in this process
(tests/support/scripted_http.py): what is retried, with which key, after
how long, and what is raised when it is not."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from service.client import PublishAnswer, Publisher, PublishGaveUp, PublishRejected
from tests.support.scripted_http import DROP, Reply, ScriptedServer, refused_url

TOKEN = "t0ken"
ACCEPTED = Reply(202, {"id": "abc123", "created_at": "2026-12-05T21:00:00.000Z", "offset": 7,
                       "recipients": 1, "offsets": {"alice": 7}})
BUSY = Reply(503, {"error": "storage_busy", "detail": "every connection is in use",
                   "retry_after": 0.3}, {"Retry-After": "1"})
UNAVAILABLE = Reply(503, {"error": "storage_unavailable", "detail": "the log is down"},
                    {"Retry-After": "1"})


def publisher(url, **kwargs) -> Publisher:
    options = {"timeout": 2.0, "max_attempts": 4, "backoff_initial": 0.01,
               "backoff_max": 0.05, "seed": 1, **kwargs}
    return Publisher(url, TOKEN, **options)


@pytest.fixture
def served():
    made = []

    def make(script):
        server = ScriptedServer(script)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def test_a_publish_sends_the_body_the_token_and_a_fresh_key_and_returns_the_answer(served):
    server = served([ACCEPTED])
    with publisher(server.url) as p:
        answer = p.publish(user_id="alice", category="chat", payload={"text": "hi"},
                           priority="high")
        p.publish(user_id="alice", category="chat")
    assert isinstance(answer, PublishAnswer)
    assert (answer.id, answer.offset, answer.recipients, answer.offsets) == (
        "abc123", 7, 1, {"alice": 7})
    assert answer.attempts == 1 and not answer.broadcast
    first, second = server.seen
    assert (first.method, first.path) == ("POST", "/api/v1/notifications")
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert first.headers["content-type"] == "application/json"
    assert first.json() == {"user_id": "alice", "category": "chat", "priority": "high",
                            "payload": {"text": "hi"}}
    assert second.json() == {"user_id": "alice", "category": "chat"}
    keys = server.keys()
    assert keys[0] and keys[1] and keys[0] != keys[1]  # one key per logical publish
    assert answer.idempotency_key == keys[0]


def test_broadcast_and_user_ids_bodies_and_a_caller_given_key(served):
    server = served([Reply(202, {"id": "b1", "created_at": "x", "offset": 9,
                                 "recipients": 40, "broadcast": True})])
    with publisher(server.url) as p:
        answer = p.broadcast(category="news", payload={"a": 1}, idempotency_key="order-1")
        p.publish(user_ids=["a", "b"], category="news")
    assert answer.broadcast and answer.offsets is None and answer.recipients == 40
    assert server.seen[0].json() == {"broadcast": True, "category": "news", "payload": {"a": 1}}
    assert server.seen[0].headers["idempotency-key"] == "order-1"
    assert server.seen[1].json() == {"user_ids": ["a", "b"], "category": "news"}


def test_not_exactly_one_target_is_refused_before_sending(served):
    server = served([ACCEPTED])
    with publisher(server.url) as p:
        for targets in ({}, {"user_id": "a", "broadcast": True}, {"user_ids": "ab"}):
            with pytest.raises(ValueError):
                p.publish(category="chat", **targets)
    assert server.seen == []


def test_a_503_then_a_202_is_one_publish_with_the_same_key_sent_twice(served):
    server = served([UNAVAILABLE, ACCEPTED])
    with publisher(server.url, max_wait=5.0) as p:
        answer = p.publish(user_id="alice", category="chat", payload={"n": 1})
    assert answer.offset == 7 and answer.attempts == 2
    first, second = server.seen
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.body == second.body  # the same bytes: the server's fingerprint matches
    assert second.at - first.at >= 1.0  # its Retry-After


def test_storage_busy_waits_its_retry_after_from_the_body(served):
    server = served([BUSY, ACCEPTED])
    with publisher(server.url) as p:
        p.publish(user_id="alice", category="chat")
    waited = server.seen[1].at - server.seen[0].at
    assert 0.3 <= waited < 0.9  # the exact 0.3 s, not the header's rounded-up 1 s


def test_a_429_is_retried_after_its_retry_after(served):
    throttled = Reply(429, {"error": "throttled", "detail": "slow down", "field": "priority"},
                      {"Retry-After": "1"})
    server = served([throttled, ACCEPTED])
    with publisher(server.url) as p:
        answer = p.publish(user_id="alice", category="chat")
    assert answer.attempts == 2 and len(set(server.keys())) == 1
    assert server.seen[1].at - server.seen[0].at >= 1.0


def test_a_wait_longer_than_max_wait_gives_up_at_once_and_says_how_long(served):
    server = served([Reply(429, {"error": "overloaded", "detail": "behind"},
                           {"Retry-After": "120"}), ACCEPTED])
    started = time.monotonic()
    with publisher(server.url, max_wait=10.0) as p, pytest.raises(PublishGaveUp) as caught:
        p.publish(user_id="alice", category="chat")
    assert time.monotonic() - started < 1.0
    assert caught.value.retry_after == 120.0 and caught.value.status == 429
    assert caught.value.error == "overloaded" and len(server.seen) == 1


@pytest.mark.parametrize("status, error, field", [
    (400, "malformed_request", "body"),
    (401, "unauthorized", "Authorization"),
    (409, "idempotency_conflict", "Idempotency-Key"),
    (413, "payload_too_large", "payload"),
    (422, "invalid_input", "category"),
])
def test_a_4xx_is_not_retried_and_carries_the_servers_error(served, status, error, field):
    server = served([Reply(status, {"error": error, "detail": "no good", "field": field}),
                     ACCEPTED])
    with publisher(server.url) as p, pytest.raises(PublishRejected) as caught:
        p.publish(user_id="alice", category="chat", idempotency_key="k-1")
    rejected = caught.value
    assert (rejected.status, rejected.error, rejected.detail, rejected.field) == (
        status, error, "no good", field)
    assert rejected.idempotency_key == "k-1"
    assert field in str(rejected) and error in str(rejected)
    assert len(server.seen) == 1


def test_a_4xx_that_is_not_json_is_still_a_clear_rejection(served):
    server = served([Reply(404, b"<html>not here</html>", {"Content-Type": "text/html"})])
    with publisher(server.url) as p, pytest.raises(PublishRejected) as caught:
        p.publish(user_id="alice", category="chat")
    assert (caught.value.status, caught.value.error, caught.value.field) == (404, "http_404", None)


def test_connection_refused_is_retried_then_gives_up_with_a_clear_error():
    url = refused_url()
    with publisher(url, max_attempts=3) as p, pytest.raises(PublishGaveUp) as caught:
        p.publish(user_id="alice", category="chat", idempotency_key="k-refused")
    gave_up = caught.value
    assert gave_up.attempts == 3 and gave_up.status is None
    assert gave_up.cause is not None and gave_up.idempotency_key == "k-refused"
    assert "3 attempt" in str(gave_up) and "k-refused" in str(gave_up)
    assert "no answer" in str(gave_up)


def test_an_answer_lost_on_the_way_is_retried_with_the_same_key(served):
    server = served([DROP, ACCEPTED])
    with publisher(server.url) as p:
        answer = p.publish(user_id="alice", category="chat")
    assert answer.attempts == 2
    assert server.keys() == [answer.idempotency_key] * 2


def test_a_timeout_is_retried_with_the_same_key(served):
    server = served([Reply(202, ACCEPTED.body, delay=1.5), ACCEPTED])
    with publisher(server.url, timeout=0.3) as p:
        answer = p.publish(user_id="alice", category="chat")
    assert answer.attempts == 2 and len(set(server.keys())) == 1


def test_5xx_forever_gives_up_after_max_attempts_naming_the_last_answer(served):
    server = served([Reply(500, {"error": "internal_error", "detail": "internal server error",
                                 "error_id": "e1"})])
    with publisher(server.url, max_attempts=3) as p, pytest.raises(PublishGaveUp) as caught:
        p.publish(user_id="alice", category="chat")
    assert (caught.value.attempts, caught.value.status, caught.value.error) == (
        3, 500, "internal_error")
    assert len(server.seen) == 3 and len(set(server.keys())) == 1


def test_the_deadline_bounds_a_publish_waits_included(served):
    server = served([UNAVAILABLE])
    started = time.monotonic()
    with publisher(server.url, max_attempts=10, deadline=0.5) as p, \
            pytest.raises(PublishGaveUp, match="out of time"):
        p.publish(user_id="alice", category="chat")
    assert time.monotonic() - started < 1.0 and len(server.seen) == 1


def test_the_backoff_grows_is_jittered_and_capped():
    p = Publisher("http://127.0.0.1:9", TOKEN, backoff_initial=0.1, backoff_max=1.0, seed=3)
    for retry, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (12, 1.0)):
        waits = {p._wait(retry, None) for _ in range(20)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits) and len(waits) > 1
    assert 2.0 <= p._wait(1, 2.0) <= 2.2  # the server's wait, plus up to 10 %


def test_a_retry_goes_to_the_next_node(served):
    down, up = served([UNAVAILABLE]), served([ACCEPTED])
    with publisher([refused_url(), down.url, up.url], max_attempts=3, max_wait=5.0) as p:
        p._next_node = iter(range(10))  # start at the first node: the order is fixed
        answer = p.publish(user_id="alice", category="chat")
    assert answer.attempts == 3
    assert down.keys() == up.keys() == [answer.idempotency_key]


def test_one_publisher_serves_many_threads(served):
    server = served([ACCEPTED])
    answers, errors = [], []
    with publisher(server.url) as p:
        def work():
            try:
                for _ in range(10):
                    answers.append(p.publish(user_id="alice", category="chat"))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == [] and len(answers) == 80
    assert len(set(server.keys())) == 80


def test_importing_the_client_loads_none_of_the_servers_dependencies():
    heavy = ("gevent", "flask", "sqlalchemy", "psycopg2", "redis", "socketio", "engineio",
             "service.adapters", "service.entrypoints", "service.domain")
    code = ("import sys, service.client; "
            f"print([m for m in sys.modules if m.split('.')[0] in {heavy!r} "
            f"or any(m.startswith(h) for h in {heavy!r})])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.strip() == "[]"


def test_the_servers_wait_is_read_from_the_body_then_the_header_in_seconds_or_a_date():
    import email.utils

    from service.client import _server_wait

    assert _server_wait({"retry_after": 0.25}, {"Retry-After": "1"}) == 0.25
    assert _server_wait({}, {"Retry-After": "2"}) == 2.0
    in_5_s = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.0 < _server_wait({}, {"Retry-After": in_5_s}) <= 5.0
    assert _server_wait({}, {"Retry-After": "soon"}) is None
    assert _server_wait({}, {}) is None
