"""The offline-queue bounds on real PostgreSQL and on SQLite."""

import itertools
from datetime import timedelta

from sqlalchemy import func, select

from service.adapters.notification_log import entries, messages
from service.adapters.stream_trim import SqlStreamTrimmer
from service.domain.model import PublishRequest, utcnow

_message_ids = itertools.count()


def append(log, n, at=None, **target):
    request = PublishRequest.from_body({"category": "t", "payload": {}, **target})
    for _ in range(n):
        log.append(request, f"m{next(_message_ids)}", at or utcnow())


def count(engine, table):
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def test_trimming_keeps_the_newest_entries_and_moves_the_epoch_only_on_loss(
        notification_log, engine):
    append(notification_log, 10, user_id="alice")
    append(notification_log, 10, user_id="bob")
    notification_log.ack_many({"alice": 8, "bob": 2})
    result = SqlStreamTrimmer(engine).trim(keep=4, max_age_s=None)
    assert (result.streams, result.entries) == (2, 12)
    assert result.unacked == 4  # bob had acked 2: his 3..6 were never acknowledged
    assert result.epochs_bumped == 1
    alice, bob = notification_log.open_stream("alice"), notification_log.open_stream("bob")
    assert (alice.trimmed, alice.epoch, alice.head) == (6, 1, 10)
    assert (bob.trimmed, bob.epoch, bob.head) == (6, 2, 10)
    assert [n.offset for n in notification_log.read("bob", 0, 100)] == [7, 8, 9, 10]
    assert count(engine, messages) == 8  # bodies nobody refers to any more are gone
    again = SqlStreamTrimmer(engine).trim(keep=4, max_age_s=None)
    assert again.streams == 0 and notification_log.open_stream("bob").epoch == 2


def test_a_broadcast_body_stays_while_any_stream_still_holds_it(notification_log, engine):
    notification_log.open_stream("alice")
    notification_log.open_stream("bob")
    append(notification_log, 1, broadcast=True)
    append(notification_log, 3, user_id="alice")
    SqlStreamTrimmer(engine).trim(keep=2, max_age_s=None)
    assert [n.offset for n in notification_log.read("bob", 0, 10)] == [1]
    assert count(engine, messages) == 3  # the broadcast, for bob, and alice's newest two


def test_trimming_by_age_removes_what_is_too_old(notification_log, engine):
    long_ago = utcnow() - timedelta(days=10)
    append(notification_log, 3, at=long_ago, user_id="carol")
    append(notification_log, 2, user_id="carol")
    result = SqlStreamTrimmer(engine).trim(keep=1000, max_age_s=7 * 86_400)
    assert (result.entries, result.unacked, result.epochs_bumped) == (3, 3, 1)
    position = notification_log.open_stream("carol")
    assert (position.trimmed, position.head, position.epoch) == (3, 5, 2)
    assert count(engine, entries) == 2


def test_a_fully_trimmed_stream_reports_its_head_as_trimmed(notification_log, engine):
    long_ago = utcnow() - timedelta(days=30)
    append(notification_log, 2, at=long_ago, user_id="dave")
    SqlStreamTrimmer(engine).trim(keep=1000, max_age_s=86_400)
    position = notification_log.open_stream("dave")
    assert (position.head, position.trimmed) == (2, 2)
    assert notification_log.read("dave", 0, 10) == []
