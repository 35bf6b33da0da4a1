"""The notification log on real PostgreSQL and on SQLite."""

import threading

import pytest

from service.adapters.database import make_engine
from service.adapters.notification_log import SqlNotificationLog
from service.domain.errors import StorageUnavailable
from service.domain.model import PublishRequest, utcnow
from service.service_layer.ports import StreamPosition


def request(**target):
    return PublishRequest.from_body({**target, "category": "chat", "payload": {"x": 1}})


def test_offsets_start_at_one_and_increase_per_user(notification_log):
    for i in range(3):
        notification_log.append(request(user_id="alice"), f"a{i}", utcnow())
    notification_log.append(request(user_id="bob"), "b0", utcnow())
    assert [n.offset for n in notification_log.read("alice", 0, 10)] == [1, 2, 3]
    assert [n.offset for n in notification_log.read("bob", 0, 10)] == [1]


def test_read_returns_the_tail_in_order_with_the_body(notification_log):
    created = utcnow()
    for i in range(5):
        notification_log.append(request(user_id="alice"), f"m{i}", created)
    tail = notification_log.read("alice", after=2, limit=2)
    assert [(n.offset, n.id) for n in tail] == [(3, "m2"), (4, "m3")]
    assert tail[0].payload_json == '{"x":1}'
    assert abs((tail[0].created_at - created).total_seconds()) < 0.001


def test_a_multi_user_publish_gives_each_user_one_entry(notification_log):
    notification_log.append(request(user_id="alice"), "first", utcnow())
    entries = notification_log.append(request(user_ids=["bob", "alice"]), "multi", utcnow())
    assert sorted((n.user_id, n.offset) for n in entries) == [("alice", 2), ("bob", 1)]


def test_a_broadcast_reaches_every_known_stream_and_stores_the_body_once(notification_log, engine):
    notification_log.open_stream("carol")
    notification_log.append(request(user_id="alice"), "a", utcnow())
    entries = notification_log.append(request(broadcast=True), "all", utcnow())
    assert sorted((n.user_id, n.offset) for n in entries) == [("alice", 2), ("carol", 1)]
    from sqlalchemy import text

    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM messages WHERE id = 'all'")).scalar() == 1


def test_open_stream_and_ack_track_the_position(notification_log):
    assert notification_log.open_stream("alice").head == 0
    for i in range(4):
        notification_log.append(request(user_id="alice"), f"m{i}", utcnow())
    notification_log.open_stream("bob")
    assert notification_log.ack_many({"alice": 3, "bob": 0, "nobody": 5}) == 3
    assert notification_log.ack_many({"alice": 2}) == 0  # never moves back
    assert notification_log.ack_many({"alice": 99}) == 1  # capped at the head
    position = notification_log.open_stream("alice")
    assert (position.head, position.acked) == (4, 4)
    assert notification_log.open_stream("bob").acked == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_publishers_leave_no_gap_and_no_duplicate(notification_log):
    """Many publishers at once, to overlapping users: every stream must be
    1..n exactly, and each publisher's own entries in its order."""
    users = ["u1", "u2", "u3"]
    errors = []

    def publisher(k: int) -> None:
        try:
            for i in range(25):
                target = {"user_ids": users} if i % 3 == 0 else {"user_id": users[(k + i) % 3]}
                notification_log.append(request(**target), f"p{k}-{i}", utcnow())
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publisher, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for user in users:
        stream = notification_log.read(user, 0, 10_000)
        assert [n.offset for n in stream] == list(range(1, len(stream) + 1))
        assert len({n.id for n in stream}) == len(stream)
        for k in range(8):
            mine = [int(n.id.split("-")[1]) for n in stream if n.id.startswith(f"p{k}-")]
            assert mine == sorted(mine)
    total = sum(len(notification_log.read(u, 0, 10_000)) for u in users)
    assert total == 8 * (9 * 3 + 16)  # per publisher: 9 three-user, 16 one-user publishes


def test_an_unreachable_database_raises_storage_unavailable():
    log = SqlNotificationLog(make_engine("postgresql+psycopg2://postgres@127.0.0.1:1/none"))
    with pytest.raises(StorageUnavailable):
        log.ping()
    with pytest.raises(StorageUnavailable):
        log.append(request(user_id="alice"), "x", utcnow())


def test_append_returns_one_entry_per_recipient_sorted_and_as_stored(notification_log):
    for user in ("dave", "bob"):
        notification_log.open_stream(user)
    entries = notification_log.append(request(user_ids=["carol", "alice", "bob"]), "m", utcnow())
    assert [(n.user_id, n.offset) for n in entries] == [("alice", 1), ("bob", 1), ("carol", 1)]
    assert notification_log.open_stream("carol") == StreamPosition(head=1, acked=0)
    entries = notification_log.append(request(broadcast=True), "b", utcnow())
    assert [(n.user_id, n.offset) for n in entries] == [
        ("alice", 2), ("bob", 2), ("carol", 2), ("dave", 1)]
    assert {n.id for n in entries} == {"b"}
    for n in entries:
        [stored] = notification_log.read(n.user_id, n.offset - 1, 1)
        assert stored == n


def test_concurrent_broadcasts_new_streams_and_acks_leave_no_gap_and_no_deadlock(
        notification_log):
    """Broadcasts while other publishers create streams (multi-user publishes
    to new users, open_stream) and acks lock the same rows: no publisher may
    fail (a deadlock would), every stream is 1..n, each publisher's entries
    are in its order and each append returned the offsets it stored."""
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
        for n in notification_log.append(request(**target), message_id, utcnow()):
            returned[(n.user_id, n.id)] = n.offset

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
    users = {u for u, _ in returned} | {f"o-{i:02d}" for i in range(60)}
    for user in users:
        stream = notification_log.read(user, 0, 10_000)
        assert [n.offset for n in stream] == list(range(1, len(stream) + 1))
        assert notification_log.open_stream(user).head == len(stream)
        for n in stream:
            assert returned[(user, n.id)] == n.offset
        for publisher in {n.id.split("-")[0] for n in stream}:
            mine = [int(n.id.split("-")[1]) for n in stream if n.id.split("-")[0] == publisher]
            assert mine == sorted(mine)
    assert sum(1 for u, m in returned if m.startswith("b")) >= 18 * len(known)
