"""service.client against a real node on PostgreSQL: a publish through it is
received over Socket.IO, a refusal names the field, and an answer lost on
the way (a proxy that forwards the first request, then drops its answer)
is retried with the same Idempotency-Key and stored once."""

from __future__ import annotations

import itertools
import time
import uuid

import pytest
import urllib3
from sqlalchemy import create_engine, text

from service.client import Publisher, PublishRejected
from tests.support.py_client import PyClient
from tests.support.scripted_http import DROP, Reply, ScriptedServer

FORWARDED = ("authorization", "content-type", "idempotency-key")


def stored_with(pg_url: str, marker: str) -> list[tuple[str, int]]:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, log_offset FROM log_entries "
                                     "WHERE payload LIKE :m"), {"m": f"%{marker}%"}).all()
    finally:
        engine.dispose()
    return [tuple(row) for row in rows]


def test_a_publish_and_a_broadcast_through_the_client_are_received(server):
    client = PyClient(server.url, server.token("cli-alice"))
    try:
        with Publisher(server.url, server.env["PUBLISH_TOKEN"]) as publisher:
            one = publisher.publish(user_id="cli-alice", category="chat",
                                    payload={"text": "hi"}, priority="high")
            everyone = publisher.broadcast(category="news", payload={"all": True})
        assert one.offsets == {"cli-alice": one.offset} and one.recipients == 1
        assert everyone.broadcast and everyone.offsets is None and everyone.recipients >= 1
        received = client.wait_for(2)
        assert [(n["id"], n["offset"]) for n in received] == [
            (one.id, one.offset), (everyone.id, everyone.offset)]
        assert received[0]["payload"] == {"text": "hi"} and received[0]["priority"] == "high"
    finally:
        client.close()


def test_a_refused_publish_is_not_retried_and_names_the_field(server):
    with Publisher(server.url, server.env["PUBLISH_TOKEN"]) as publisher, \
            pytest.raises(PublishRejected) as caught:
        publisher.publish(user_id="cli-bob", category="has spaces")
    assert (caught.value.status, caught.value.error, caught.value.field) == (
        422, "invalid_input", "category")
    with Publisher(server.url, "not-the-token") as publisher, \
            pytest.raises(PublishRejected) as caught:
        publisher.publish(user_id="cli-bob", category="chat")
    assert (caught.value.status, caught.value.error) == (401, "unauthorized")


def test_an_answer_lost_on_the_way_is_retried_with_its_key_and_stored_once(server, pg_url):
    upstream = urllib3.PoolManager(retries=False)
    requests = itertools.count(1)

    def forward(seen):
        response = upstream.request(
            seen.method, server.url + seen.path, body=seen.body, timeout=10.0,
            headers={name: seen.headers[name] for name in FORWARDED if name in seen.headers})
        if next(requests) == 1:
            return DROP  # stored by the node; the publisher never hears it
        return Reply(response.status, response.data,
                     {"Content-Type": response.headers.get("Content-Type", "")})

    marker = f"m-{uuid.uuid4().hex[:8]}"
    client = PyClient(server.url, server.token("cli-carol"))
    try:
        with ScriptedServer(forward) as proxy, \
                Publisher(proxy.url, server.env["PUBLISH_TOKEN"], backoff_initial=0.05) as p:
            answer = p.publish(user_id="cli-carol", category="order",
                               payload={"marker": marker})
            assert answer.attempts == 2
            assert proxy.keys() == [answer.idempotency_key] * 2
            assert proxy.seen[0].body == proxy.seen[1].body
        # the first attempt was stored; the retry was answered its result
        assert stored_with(pg_url, marker) == [(answer.id, answer.offset)]
        received = client.wait_for(1)
        time.sleep(0.5)  # a second entry, had one been stored, would have come by now
        assert [n["id"] for n in client.received] == [answer.id]
        assert received[0]["payload"] == {"marker": marker}
    finally:
        client.close()
        upstream.clear()
