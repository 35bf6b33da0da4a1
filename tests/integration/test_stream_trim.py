"""The offline-queue bounds on real PostgreSQL and on SQLite."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from sqlalchemy import select, text

from service.adapters.database import make_engine
from service.adapters.notification_log import (
    SqlNotificationLog,
    entries,
    recipients,
)
from service.adapters.stream_trim import SqlStreamTrimmer
from service.domain.model import PublishRequest
from tests.support.schema import create_test_schema

LONG_AGO = datetime.now(UTC) - timedelta(days=10)
WEEK = 7 * 86_400


def publish(log, at=None, **target):
    request = PublishRequest.from_body({"category": "t", "payload": {}, **target})
    return log.append(request, uuid4().hex, at or datetime.now(UTC)).offset


def offsets(log, user_id):
    notifications, _ = log.read(user_id, 0, 100)
    return [n.offset for n in notifications]


def stored(engine, table):
    column = table.c.log_offset
    with engine.connect() as conn:
        return conn.execute(select(column).order_by(column)).scalars().all()


def test_the_count_bound_keeps_the_newest_own_and_broadcast_entries(notification_log, engine):
    log = notification_log
    log.open_stream("alice")
    log.open_stream("bob")
    assert publish(log, user_id="alice") == 1
    publish(log, broadcast=True)                # 2
    publish(log, user_id="bob")                 # 3
    publish(log, user_id="alice")               # 4
    publish(log, broadcast=True)                # 5
    publish(log, user_ids=["alice", "bob"])     # 6
    log.open_stream("carol")                    # begins after 6
    publish(log, user_id="alice")               # 7
    assert publish(log, broadcast=True) == 8
    assert offsets(log, "alice") == [1, 2, 4, 5, 6, 7, 8]
    assert offsets(log, "bob") == [2, 3, 5, 6, 8]
    log.ack_many({"alice": 4, "bob": 3})

    result = SqlStreamTrimmer(engine).trim(keep=3, max_age_s=None)

    assert (result.streams, result.entries, result.unacked) == (2, 6, 1)
    assert result.epochs_bumped == 1  # alice had not acknowledged 5; bob had all of 2, 3
    assert offsets(log, "alice") == [6, 7, 8]
    assert offsets(log, "bob") == [5, 6, 8]
    assert offsets(log, "carol") == [8]
    alice, bob, carol = (log.open_stream(u) for u in ("alice", "bob", "carol"))
    assert (alice.trimmed, alice.epoch, alice.head) == (5, 2, 8)
    assert (bob.trimmed, bob.epoch) == (3, 1)
    assert (carol.trimmed, carol.epoch) == (6, 1)
    # 1, 3, 4: no recipient left; broadcast 2: below every floor (bob's is 3);
    # broadcast 5: bob still holds it; 6: bob and alice still hold it
    assert result.messages == 4
    assert stored(engine, entries) == [5, 6, 7, 8]
    assert stored(engine, recipients) == [6, 6, 7]

    again = SqlStreamTrimmer(engine).trim(keep=3, max_age_s=None)
    assert (again.streams, again.entries, again.messages) == (0, 0, 0)
    assert log.open_stream("alice").epoch == 2


def test_a_stream_of_broadcasts_only_is_bounded_too(notification_log, engine):
    log = notification_log
    log.open_stream("frank")
    for _ in range(5):
        publish(log, broadcast=True)
    log.ack_many({"frank": 2})
    result = SqlStreamTrimmer(engine).trim(keep=2, max_age_s=None)
    assert (result.streams, result.entries, result.unacked, result.epochs_bumped) == (1, 3, 1, 1)
    assert offsets(log, "frank") == [4, 5]
    assert result.messages == 3
    assert stored(engine, entries) == [4, 5]


def test_a_broadcast_row_stays_while_any_stream_still_holds_it(notification_log, engine):
    log = notification_log
    log.open_stream("alice")
    log.open_stream("bob")
    publish(log, broadcast=True)  # 1
    for _ in range(3):
        publish(log, user_id="alice")  # 2, 3, 4
    result = SqlStreamTrimmer(engine).trim(keep=2, max_age_s=None)
    assert (result.streams, result.entries, result.messages) == (1, 2, 1)  # alice's 2
    assert offsets(log, "alice") == [3, 4]
    assert offsets(log, "bob") == [1]
    assert stored(engine, entries) == [1, 3, 4]

    publish(log, broadcast=True)  # 5
    publish(log, broadcast=True)  # 6
    result = SqlStreamTrimmer(engine).trim(keep=2, max_age_s=None)
    assert (result.streams, result.entries) == (2, 3)  # alice 3, 4; bob 1
    assert offsets(log, "alice") == offsets(log, "bob") == [5, 6]
    assert result.messages == 3  # 3, 4 and, every floor now past it, the broadcast 1
    assert stored(engine, entries) == [5, 6]


def test_a_targeted_row_stays_while_any_recipient_holds_it(notification_log, engine):
    log = notification_log
    publish(log, user_ids=["alice", "bob"])  # 1
    publish(log, user_id="alice")  # 2
    publish(log, user_id="alice")  # 3
    result = SqlStreamTrimmer(engine).trim(keep=2, max_age_s=None)
    assert (result.streams, result.entries, result.messages) == (1, 1, 0)
    assert offsets(log, "bob") == [1]
    assert stored(engine, recipients) == [1, 2, 3]  # bob's 1, alice's 2 and 3

    publish(log, user_id="bob")  # 4
    publish(log, user_id="bob")  # 5
    result = SqlStreamTrimmer(engine).trim(keep=2, max_age_s=None)
    assert (result.streams, result.entries, result.messages) == (1, 1, 1)
    assert stored(engine, entries) == [2, 3, 4, 5]


def test_the_age_bound_spares_streams_that_hold_nothing_that_old(notification_log, engine):
    log = notification_log
    log.open_stream("dave")
    publish(log, at=LONG_AGO, user_id="carol")  # 1
    publish(log, at=LONG_AGO, broadcast=True)   # 2
    log.open_stream("erin")                     # begins after 2
    publish(log, at=LONG_AGO, user_id="carol")  # 3
    publish(log, user_id="carol")               # 4
    publish(log, broadcast=True)                # 5
    publish(log, user_id="erin")                # 6
    publish(log, user_id="erin")                # 7
    log.ack_many({"dave": 5})

    # keep=3 alone would cut carol at 2 and leave dave be; erin is within it
    result = SqlStreamTrimmer(engine).trim(keep=3, max_age_s=WEEK)

    assert (result.streams, result.entries, result.unacked) == (2, 4, 3)  # carol 1-3, dave 2
    assert result.epochs_bumped == 1
    carol, dave, erin = (log.open_stream(u) for u in ("carol", "dave", "erin"))
    assert (carol.trimmed, carol.epoch, carol.head) == (3, 2, 7)
    assert (dave.trimmed, dave.epoch) == (3, 1)  # he had acknowledged what he lost
    assert (erin.trimmed, erin.epoch, erin.lost) == (2, 1, False)  # nothing of hers was old
    assert offsets(log, "carol") == [4, 5]
    assert offsets(log, "dave") == [5]
    assert offsets(log, "erin") == [5, 6, 7]
    assert result.messages == 3  # 1, 3, and the broadcast 2 (erin's floor is 2)
    assert stored(engine, entries) == [4, 5, 6, 7]


def test_a_fully_trimmed_stream_reports_its_head_as_trimmed(notification_log, engine):
    publish(notification_log, at=LONG_AGO, user_id="dave")
    publish(notification_log, at=LONG_AGO, user_id="dave")
    SqlStreamTrimmer(engine).trim(keep=1000, max_age_s=86_400)
    position = notification_log.open_stream("dave")
    assert (position.head, position.trimmed, position.epoch) == (2, 2, 2)
    assert offsets(notification_log, "dave") == []
    assert stored(engine, entries) == []


def test_without_streams_broadcast_rows_obey_the_bounds(notification_log, engine):
    publish(notification_log, at=LONG_AGO, broadcast=True)  # 1
    for _ in range(4):
        publish(notification_log, broadcast=True)  # 2-5
    result = SqlStreamTrimmer(engine).trim(keep=3, max_age_s=None)
    assert (result.streams, result.messages) == (0, 2)  # the newest 3 stay
    assert stored(engine, entries) == [3, 4, 5]
    result = SqlStreamTrimmer(engine).trim(keep=1000, max_age_s=WEEK)
    assert result.messages == 0
    publish(notification_log, at=LONG_AGO, broadcast=True)  # 6: old, so 3-6 count as old
    result = SqlStreamTrimmer(engine).trim(keep=1000, max_age_s=WEEK)
    assert (result.messages, stored(engine, entries)) == (4, [])


def test_another_node_holding_the_lock_makes_the_trim_skip(pg_url):
    engine = make_engine(pg_url)
    try:
        create_test_schema(engine)
        log = SqlNotificationLog(engine)
        for _ in range(3):
            publish(log, user_id="alice")
        with engine.connect() as other:
            other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": 0x6E6F7469})
            result = SqlStreamTrimmer(engine).trim(keep=1, max_age_s=None)
            other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": 0x6E6F7469})
        assert result.skipped and (result.streams, result.entries) == (0, 0)
        assert offsets(log, "alice") == [1, 2, 3]
        result = SqlStreamTrimmer(engine).trim(keep=1, max_age_s=None)
        assert not result.skipped and (result.streams, result.entries) == (1, 2)
        assert offsets(log, "alice") == [3]
    finally:
        engine.dispose()

