"""The notification log on real PostgreSQL and on SQLite: what the tables
hold, concurrency, and failures. What the NotificationLog port promises, on
these and on the fake alike, is in test_contract_notification_log.py."""

import threading

import pytest

from service.adapters.database import make_engine
from service.adapters.notification_log import SqlNotificationLog
from service.domain.errors import StorageUnavailable
from service.domain.model import PublishRequest, utcnow
from service.service_layer.ports import StreamPosition
from tests.support.notification_streams import check_streams


def request(**target):
    return PublishRequest.from_body({**target, "category": "chat", "payload": {"x": 1}})


def offsets(log, user, after=0):
    page, _position = log.read(user, after, 10_000)
    return [n.offset for n in page]


def test_a_broadcast_is_stored_once_for_the_streams_that_exist(notification_log, engine):
    notification_log.open_stream("carol")
    notification_log.append(request(user_id="alice"), "a", utcnow())
    appended = notification_log.append(request(broadcast=True), "all", utcnow())
    assert (appended.offset, appended.user_ids, appended.recipients) == (2, None, 2)
    notification_log.open_stream("dave")  # too late for it
    assert offsets(notification_log, "alice") == [1, 2]
    assert offsets(notification_log, "carol") == [2]
    assert offsets(notification_log, "dave") == []
    from sqlalchemy import text

    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM log_entries")).scalar() == 2
        assert conn.execute(text("SELECT count(*) FROM log_recipients")).scalar() == 1


def test_open_streams_opens_many_at_once_each_at_the_head(notification_log, engine):
    """A connect storm's batch: new and existing users, a name twice, in one
    call; each new stream begins at the head, each existing one is as it was,
    and each new one is counted once (a broadcast's recipients)."""
    notification_log.open_stream("old")
    notification_log.append(request(user_id="old"), "m1", utcnow())
    notification_log.ack_many({"old": 1})
    notification_log.append(request(broadcast=True), "b2", utcnow())
    users = ["new-b", "old", "new-a", "new-b"]
    positions = notification_log.open_streams(users)
    assert set(positions) == {"new-a", "new-b", "old"}
    for user in ("new-a", "new-b"):
        assert positions[user] == StreamPosition(head=2, acked=2, trimmed=2, since=2)
    assert positions["old"] == StreamPosition(head=2, acked=1, trimmed=0, since=0)
    assert notification_log.open_streams(["new-a"])["new-a"].since == 2  # not begun again
    assert notification_log.append(request(broadcast=True), "b3", utcnow()).recipients == 3
    from sqlalchemy import text

    with engine.connect() as conn:
        assert conn.execute(text("SELECT streams FROM log_head")).scalar() == 3


@pytest.mark.usefixtures("cooperative_psycopg2")
def test_opening_streams_while_publishing_to_the_same_new_users_never_deadlocks(
        notification_log):
    """A storm of new users connecting while a publisher writes to them: the
    opener and the append both create the same streams, and must not wait on
    each other (each takes the head row first)."""
    import gevent

    errors = []

    def guarded(work, *args):
        try:
            work(*args)
        except Exception as exc:
            errors.append(exc)

    def opener(k):
        for i in range(20):
            notification_log.open_streams([f"s{k}-{i}-{j}" for j in range(30)])

    def publisher(k):
        for i in range(20):
            fresh = [f"s{k}-{i}-{j}" for j in range(0, 30, 3)]
            notification_log.append(request(user_ids=fresh), f"p{k}-{i}", utcnow())

    greenlets = [gevent.spawn(guarded, work, k) for k in range(3) for work in (opener, publisher)]
    gevent.joinall(greenlets, timeout=60)
    assert all(g.ready() for g in greenlets) and errors == []
    for k in range(3):  # each stream began before or at its first entry: it holds it
        for i in range(20):
            assert offsets(notification_log, f"s{k}-{i}-0") != []


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_publishers_leave_no_gap_and_no_duplicate(notification_log):
    """Many publishers at once, to overlapping users: the log must be 1..n
    exactly, every stream its own entries in each publisher's order."""
    users = ["u1", "u2", "u3"]
    errors, returned = [], {}

    def publisher(k: int) -> None:
        try:
            for i in range(25):
                target = {"user_ids": users} if i % 3 == 0 else {"user_id": users[(k + i) % 3]}
                appended = notification_log.append(request(**target), f"p{k}-{i}", utcnow())
                for user in appended.user_ids:
                    returned[(user, appended.notification.id)] = appended.offset
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publisher, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    span = notification_log.read_span(0, 10_000, 10_000)
    assert [a.offset for a in span] == list(range(1, 8 * 25 + 1))
    check_streams(notification_log, users, returned)
    total = sum(len(offsets(notification_log, u)) for u in users)
    assert total == 8 * (9 * 3 + 16)  # per publisher: 9 three-user, 16 one-user publishes


def test_an_unreachable_database_raises_storage_unavailable():
    log = SqlNotificationLog(make_engine("postgresql+psycopg2://postgres@127.0.0.1:1/none"))
    with pytest.raises(StorageUnavailable):
        log.ping()
    with pytest.raises(StorageUnavailable):
        log.append(request(user_id="alice"), "x", utcnow())


def test_concurrent_broadcasts_new_streams_and_acks_leave_no_gap_and_no_deadlock(
        notification_log):
    """Broadcasts while other publishers create streams (multi-user publishes
    to new users, open_stream) and acks lock the same rows: no publisher may
    fail (a deadlock would), the log is 1..n, and every stream holds exactly
    its own entries and the broadcasts since it began, in order."""
    known = [f"u{i:03d}" for i in range(150)]
    for user in known:
        notification_log.open_stream(user)
    errors, returned = [], {}

    def guarded(work):
        def run(*args):
            try:
                work(*args)
            except Exception as exc:
                errors.append(exc)
        return run

    def publish(target, message_id):
        appended = notification_log.append(request(**target), message_id, utcnow())
        for user in appended.user_ids or ():
            returned[(user, message_id)] = appended.offset

    @guarded
    def broadcaster(k):
        for i in range(6):
            publish({"broadcast": True}, f"b{k}-{i}")

    @guarded
    def multi(k):
        for i in range(15):
            fresh = [f"n{(k + j) % 2}-{i}-{j}" for j in range(3)]
            publish({"user_ids": known[i * 7 % 100:][:40] + fresh}, f"m{k}-{i}")

    @guarded
    def opener():
        for i in range(60):
            notification_log.open_stream(f"o-{i:02d}")

    @guarded
    def acker():
        for i in range(30):
            notification_log.ack_many({u: 10**6 for u in known[i % 3::3]})

    threads = [threading.Thread(target=broadcaster, args=(k,)) for k in range(3)]
    threads += [threading.Thread(target=multi, args=(k,)) for k in range(2)]
    threads += [threading.Thread(target=opener), threading.Thread(target=acker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [a.offset for a in notification_log.read_span(0, 1000, 1000)] == list(
        range(1, 3 * 6 + 2 * 15 + 1))
    users = {u for u, _ in returned} | {f"o-{i:02d}" for i in range(60)} | set(known)
    check_streams(notification_log, users, returned)


def test_a_connection_the_server_dropped_fails_at_check_in_as_storage_unavailable(caplog):
    """SQLAlchemy resets a pooled connection's isolation level as it takes it
    back, outside its error wrapping: a server restart then surfaced as
    psycopg2's own OperationalError, a traceback and a failed batch (seen in
    the chaos run), not as the service's StorageUnavailable."""
    import psycopg2

    from service.adapters.notification_log import storage_errors
    from service.domain.errors import StorageUnavailable

    with pytest.raises(StorageUnavailable) as refused:
        with storage_errors():
            raise psycopg2.OperationalError("FATAL:  terminating connection due to "
                                            "administrator command")
    assert "terminating" not in refused.value.message and refused.value.error_id
    assert refused.value.error_id in caplog.text
