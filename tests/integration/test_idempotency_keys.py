"""Idempotency keys in the real log (SQLite and PostgreSQL): stored with the
entries in one transaction, a taken key stores nothing of its batch, keys
past the window are used again and trimmed, and on PostgreSQL two nodes
publishing one key at once store one entry."""

from __future__ import annotations

import gevent
import pytest
from sqlalchemy import func, select

from service.adapters.database import make_engine
from service.adapters.notification_log import SqlNotificationLog, entries, log_head
from service.adapters.publish_keys import publish_keys
from service.adapters.stream_trim import SqlStreamTrimmer
from service.domain.idempotency import KeysTaken, parse_key
from service.domain.model import PublishRequest, utcnow
from service.service_layer.publishing import publish
from service.service_layer.write_batching import WriteBatcher


def keyed(body: dict, key: str | None) -> tuple:
    request = PublishRequest.from_body(body)
    if key is not None:
        from dataclasses import replace
        request = replace(request, key=parse_key(key, body))
    return request, f"id-{key}-{body.get('user_id')}", utcnow()


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def head(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(log_head.c.head)).scalar()


def test_a_taken_key_stores_nothing_of_its_batch(engine, notification_log):
    body = {"broadcast": True, "category": "news"}
    notification_log.append_many([keyed({"user_id": "ann", "category": "c"}, None)])
    first = notification_log.append_many([keyed(body, "b1"),
                                          keyed({"user_id": "bob", "category": "c"}, "t1")])
    stored = notification_log.prior_publish("b1")
    assert (stored.offset, stored.message_id, stored.recipients) == (
        first[0].offset, first[0].notification.id, first[0].recipients)
    assert notification_log.prior_publish("t1").recipients == 1
    with pytest.raises(KeysTaken) as taken:
        notification_log.append_many([keyed({"user_id": "cy", "category": "c"}, "new"),
                                      keyed(body, "b1")])
    assert taken.value.keys == {"b1"}
    assert (head(engine), count(engine, entries), count(engine, publish_keys)) == (3, 3, 2)
    # the rest of the batch goes on without it
    assert notification_log.append_many([keyed({"user_id": "cy", "category": "c"}, "new")])[
        0].offset == 4


def test_a_key_past_its_window_is_a_new_publish_and_the_trimmer_forgets_old_keys(engine):
    log = SqlNotificationLog(engine, key_window_s=0.05)
    body = {"user_id": "ann", "category": "c"}
    log.append_many([keyed(body, "k")])
    gevent.sleep(0.1)
    assert log.prior_publish("k") is None
    assert log.append_many([keyed(body, "k")])[0].offset == 2  # the old row made way
    assert count(engine, publish_keys) == 1
    gevent.sleep(0.1)
    SqlStreamTrimmer(engine, key_window_s=0.05).trim(keep=100, max_age_s=None)
    assert count(engine, publish_keys) == 0 and count(engine, entries) == 2


def test_two_nodes_publishing_one_key_at_once_store_one_entry(pg_url, cooperative_psycopg2):
    """Each node its own engine and group commit: PostgreSQL's unique key
    decides, the loser's batch is appended again without it and the loser
    answers from the winner's row."""
    engines = [make_engine(pg_url) for _ in range(2)]
    try:
        from tests.support.schema import create_test_schema
        create_test_schema(engines[0])
        logs = [SqlNotificationLog(e) for e in engines]
        batchers = [WriteBatcher(log, lambda a: None, max_batch=20) for log in logs]

        def send(node: int, body: dict, key: str | None):
            return publish(body, key, append=batchers[node].append, telemetry=None,
                           prior=logs[node].prior_publish)

        body = {"user_id": "ann", "category": "c", "payload": {"order": 17}}
        keyed_sends, greenlets = [], []
        for round_ in range(10):
            for node in (0, 1):
                keyed_sends.append((f"dup-{round_}", gevent.spawn(send, node, body,
                                                                  f"dup-{round_}")))
                greenlets.append(gevent.spawn(
                    send, node, {"user_id": f"u{node}{round_}", "category": "c"}, None))
        gevent.joinall(greenlets + [g for _, g in keyed_sends], raise_error=True)
        answers: dict[str, set] = {}
        for key, g in keyed_sends:
            answers.setdefault(key, set()).add((g.value.id, g.value.offset))
        assert len(answers) == 10 and all(len(a) == 1 for a in answers.values()), answers
        assert count(engines[0], entries) == 10 + 20
        assert count(engines[0], publish_keys) == 10
    finally:
        for e in engines:
            e.dispose()
