"""Idempotent publishing with the in-memory log: a retry with the same key
and body is answered the first result and stores nothing; another body is a
409; a key twice in one group commit stores one entry."""

from __future__ import annotations

import gevent
import pytest

from service.domain.errors import IdempotencyConflict, InvalidInput
from service.domain.idempotency import HEADER, parse_key
from service.service_layer.publishing import publish
from service.service_layer.write_batching import WriteBatcher
from tests.support.fakes import InMemoryNotificationLog, appending

BODY = {"user_id": "ann", "category": "chat", "payload": {"n": 1}}


def publisher(log: InMemoryNotificationLog, delivered: list | None = None):
    sink = delivered.append if delivered is not None else (lambda appended: None)
    return lambda body, key=None: publish(body, key, append=appending(log, sink),
                                          telemetry=None, prior=log.prior_publish)


def test_a_retry_with_the_same_key_and_body_gets_the_first_answer_and_stores_nothing():
    log, delivered = InMemoryNotificationLog(), []
    send = publisher(log, delivered)
    first = send(BODY, "order-17")
    again = send(dict(reversed(list(BODY.items()))), "order-17")  # same JSON, other key order
    assert (again.id, again.offset, again.created_at, again.recipients, again.user_ids) == (
        first.id, first.offset, first.created_at, first.recipients, first.user_ids)
    assert len(log.entries) == 1 and len(delivered) == 1
    assert send(BODY).offset == 2 and send(BODY, "order-18").offset == 3  # new keys: new entries


def test_the_same_key_with_another_body_is_a_conflict_that_names_the_header():
    log = InMemoryNotificationLog()
    send = publisher(log)
    send(BODY, "k1")
    with pytest.raises(IdempotencyConflict) as refused:
        send({**BODY, "payload": {"n": 2}}, "k1")
    assert refused.value.field == HEADER and HEADER in refused.value.message
    assert len(log.entries) == 1


def test_a_broadcast_retry_answers_the_recipients_counted_the_first_time():
    log = InMemoryNotificationLog()
    send = publisher(log)
    send({"user_id": "ann", "category": "c"})
    first = send({"broadcast": True, "category": "news"}, "b-1")
    send({"user_id": "bob", "category": "c"})  # one more stream since
    again = send({"broadcast": True, "category": "news"}, "b-1")
    assert (again.recipients, again.user_ids, again.offset) == (first.recipients, None, 2)


@pytest.mark.parametrize("bad", ["", "has space", "x" * 256, "clé", "tab\there"])
def test_a_malformed_key_is_refused_naming_the_header(bad):
    with pytest.raises(InvalidInput) as refused:
        parse_key(bad, BODY)
    assert refused.value.field == HEADER


def test_the_fingerprint_is_of_the_json_not_of_its_spelling():
    assert parse_key("k", {"a": 1, "b": [1, 2]}) == parse_key("k", {"b": [1, 2], "a": 1})
    assert parse_key("k", {"a": 1}).fingerprint != parse_key("k", {"a": 2}).fingerprint
    assert parse_key(None, BODY) is None


class SlowLog(InMemoryNotificationLog):
    """A commit takes time, so the publishes that come meanwhile share the next."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str | None]] = []  # each commit's keys

    def append_many(self, drafts):
        gevent.sleep(0.01)
        self.batches.append([r.key and r.key.key for r, _, _ in drafts])
        return super().append_many(drafts)


def test_one_key_twice_in_one_group_commit_stores_one_entry():
    log, delivered = SlowLog(), []
    batcher = WriteBatcher(log, lambda a: delivered.append(a.offset), max_batch=10)

    def send(body, key):
        return publish(body, key, append=batcher.append, telemetry=None,
                       prior=log.prior_publish)

    lone = gevent.spawn(send, {"user_id": "zed", "category": "c"}, None)  # leads a batch of 1
    retries = [gevent.spawn(send, BODY, "dup") for _ in range(5)]
    others = [gevent.spawn(send, {"user_id": f"u{i}", "category": "c"}, f"k{i}")
              for i in range(3)]
    gevent.joinall([lone, *retries, *others], raise_error=True)
    assert batcher.wait_delivered(timeout=2)
    assert log.batches == [[None], ["dup", "k0", "k1", "k2"]]  # the copies never reached it
    assert len({(g.value.id, g.value.offset) for g in retries}) == 1
    assert len(log.entries) == 1 + 1 + 3
    assert sorted(delivered) == list(range(1, 6))


def test_a_retry_is_answered_from_the_read_that_found_its_key_not_one_of_its_own():
    """After an outage every publisher retries at once: one more read (and
    database connection) per retried publish emptied the pool and held every
    commit up behind it. The log's KeysTaken carries the stored answers."""
    log = InMemoryNotificationLog()
    first = publisher(log)(BODY, "k")

    def no_second_read(key):
        raise AssertionError(f"read {key} again")

    again = publish(BODY, "k", append=appending(log, lambda a: None), telemetry=None,
                    prior=no_second_read)
    assert (again.id, again.offset) == (first.id, first.offset)
