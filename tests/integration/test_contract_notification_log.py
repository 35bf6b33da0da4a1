"""The NotificationLog port's promises (service/service_layer/ports.py), held
by every implementation alike: the in-memory fake the unit tests use, the SQL
log on SQLite and on PostgreSQL, and the query cache in front of the SQL log.
Trims go through the StreamTrimmer port the same way: the fake's, the SQL
one, and the one that tells the cache.

Where the fake and the SQL log disagree, the fake is what gets fixed."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest

from service.adapters.notification_log import SqlNotificationLog
from service.adapters.stream_trim import SqlStreamTrimmer
from service.domain.cache import TtlLruCache
from service.domain.history import HistoryQuery
from service.domain.history import select as select_page
from service.domain.idempotency import KeysTaken, parse_key
from service.domain.model import Priority, PublishRequest, utcnow
from service.service_layer.cached_log import CachedNotificationLog, InvalidatingTrimmer
from service.service_layer.ports import NotificationLog, StreamPosition, StreamTrimmer, Unread
from tests.support.fake_stream_trimmer import InMemoryStreamTrimmer
from tests.support.fakes import InMemoryNotificationLog
from tests.support.storage_backends import fresh_engine

_ids = itertools.count()


@dataclass
class Subject:
    log: NotificationLog
    trimmer: StreamTrimmer


def cached(inner: NotificationLog) -> CachedNotificationLog:
    options = {"max_bytes": 1 << 20, "ttl_s": 3600.0, "compress_min_bytes": 256,
               "clock": time.monotonic}
    return CachedNotificationLog(inner, TtlLruCache(max_entries=1000, **options),
                                 TtlLruCache(max_entries=16, **options))


@pytest.fixture(params=["fake", "sqlite", "postgresql", "cached"])
def subject(request) -> Subject:
    if request.param == "fake":
        fake = InMemoryNotificationLog()
        return Subject(fake, InMemoryStreamTrimmer(fake))
    engine = fresh_engine(request, "postgresql" if request.param == "postgresql" else "sqlite")
    sql = SqlNotificationLog(engine)
    if request.param == "cached":
        front = cached(sql)
        return Subject(front, InvalidatingTrimmer(SqlStreamTrimmer(engine), front))
    return Subject(sql, SqlStreamTrimmer(engine))


@pytest.fixture
def log(subject) -> NotificationLog:
    return subject.log


def request(category: str = "chat", priority: str = "normal", key: str | None = None,
            **target) -> PublishRequest:
    body = {**target, "category": category, "priority": priority, "payload": {"n": 1}}
    made = PublishRequest.from_body(body)
    return made if key is None else replace(made, key=parse_key(key, body))


def to(log: NotificationLog, *users: str, at=None, **options):
    target = {"broadcast": True} if not users else {"user_ids": list(users)}
    return log.append(request(**options, **target), f"m{next(_ids)}", at or utcnow())


def offsets(log: NotificationLog, user: str, after: int = 0, limit: int = 10_000) -> list[int]:
    return [n.offset for n in log.read(user, after, limit)[0]]


def position(log: NotificationLog, user: str) -> StreamPosition:
    return log.read(user, 0, 1)[1]


# -- appends and offsets ------------------------------------------------------

def test_an_empty_log_is_at_zero_and_holds_no_stream(log):
    assert log.head() == 0 and log.read_span(0, 10) == []
    assert log.read("nobody", 0, 10) == ([], StreamPosition(head=0, acked=0, trimmed=0,
                                                             since=0))
    assert log.unread("nobody") == Unread(0, 0, 0, exists=False)
    assert log.ping() is None


def test_offsets_are_global_consecutive_and_each_stream_holds_its_own(log):
    assert [to(log, u).offset for u in ("ann", "bob", "ann", "cy")] == [1, 2, 3, 4]
    assert log.head() == 4
    assert (offsets(log, "ann"), offsets(log, "bob"), offsets(log, "cy")) == ([1, 3], [2], [4])


def test_an_entry_reads_back_as_it_was_appended(log):
    at = utcnow()
    appended = log.append(request(category="billing", priority="high", user_id="ann"),
                          "m-exact", at)
    [entry], _ = log.read("ann", 0, 10)
    assert (entry.id, entry.offset, entry.category, entry.priority, entry.payload_json) == (
        "m-exact", appended.offset, "billing", Priority.HIGH, '{"n":1}')
    assert entry.created_at == at and entry.wire_json == appended.notification.wire_json


def test_a_multi_user_entry_is_one_offset_in_every_recipients_stream(log):
    to(log, "ann")
    appended = to(log, "cy", "ann", "bob")
    assert appended.user_ids == ("ann", "bob", "cy") and appended.recipients == 3
    assert offsets(log, "ann") == [1, 2] and offsets(log, "bob") == offsets(log, "cy") == [2]
    # a stream an append begins starts just before its first entry
    assert log.open_stream("bob") == StreamPosition(head=2, acked=1, trimmed=1, since=1)


def test_a_stream_holds_the_broadcasts_since_it_began_and_not_before(log):
    log.open_stream("early")
    first = to(log)  # a broadcast: only "early" exists
    to(log, "late")  # begins the stream of "late", just before its first entry
    second = to(log)
    assert (first.user_ids, first.recipients, second.recipients) == (None, 1, 2)
    assert offsets(log, "early") == [1, 3] and offsets(log, "late") == [2, 3]
    assert position(log, "late").since == 1
    log.open_stream("latest")
    assert offsets(log, "latest") == []


def test_read_pages_oldest_first_above_after_up_to_the_limit(log):
    for _ in range(5):
        to(log, "ann")
    to(log, "bob")
    assert offsets(log, "ann", after=0, limit=2) == [1, 2]
    assert offsets(log, "ann", after=2, limit=2) == [3, 4]
    assert offsets(log, "ann", after=4) == [5] and offsets(log, "ann", after=5) == []
    assert position(log, "ann").head == 6


def test_append_many_takes_consecutive_offsets_in_the_order_given(log):
    to(log, "ann")
    drafts = [(request(user_id=u), f"m{next(_ids)}", utcnow()) for u in ("cy", "bob", "cy")]
    appended = log.append_many(drafts)
    assert [a.offset for a in appended] == [2, 3, 4]
    assert [a.notification.id for a in appended] == [d[1] for d in drafts]
    assert offsets(log, "cy") == [2, 4] and log.head() == 4


def test_read_span_gives_each_entry_with_its_recipients(log):
    log.open_stream("early")
    to(log, "bob", "ann")
    to(log)
    to(log, "cy")
    log.open_stream("later")  # opened after the broadcast: not among its recipients
    span = log.read_span(0, log.head())
    assert [(a.offset, a.user_ids, a.recipients) for a in span] == [
        (1, ("ann", "bob"), 2), (2, None, 3), (3, ("cy",), 1)]
    assert [a.offset for a in log.read_span(1, 3, limit=1)] == [2]
    assert log.read_span(3, 3) == []


# -- idempotency keys ---------------------------------------------------------

def test_a_keyed_publish_is_remembered_with_its_answer(log):
    at = utcnow()
    appended = log.append(request(key="k-single", user_id="ann"), "m-single", at)
    [batch] = log.append_many([(request(key="k-batch", broadcast=True), "m-batch", at)])
    single, stored = log.prior_publish("k-single"), log.prior_publish("k-batch")
    assert (single.message_id, single.offset, single.recipients) == ("m-single",
                                                                      appended.offset, 1)
    assert single.created_at_us == int(at.timestamp() * 1_000_000)
    assert single.fingerprint == request(key="k-single", user_id="ann").key.fingerprint
    assert (stored.message_id, stored.offset, stored.recipients) == ("m-batch", batch.offset,
                                                                     batch.recipients)
    assert log.prior_publish("never-used") is None


def test_a_taken_key_stores_nothing_of_its_batch(log):
    log.append(request(key="k1", user_id="ann"), "m-first", utcnow())
    with pytest.raises(KeysTaken) as taken:
        log.append_many([(request(key="k2", user_id="bob"), "m-new", utcnow()),
                         (request(key="k1", user_id="ann"), "m-again", utcnow())])
    assert taken.value.keys == {"k1"} and taken.value.priors["k1"].message_id == "m-first"
    assert log.head() == 1 and offsets(log, "bob") == [] and log.prior_publish("k2") is None
    assert log.append_many([(request(key="k2", user_id="bob"), "m-new", utcnow())])[
        0].offset == 2


# -- streams and acks ---------------------------------------------------------

def test_a_stream_opens_at_the_head_once(log):
    to(log, "ann")
    to(log)
    assert log.open_stream("bob") == StreamPosition(head=2, acked=2, trimmed=2, since=2)
    to(log, "bob")
    assert log.open_stream("bob") == StreamPosition(head=3, acked=2, trimmed=2, since=2)


def test_open_streams_answers_for_each_user_once(log):
    to(log, "ann")
    opened = log.open_streams(["cy", "ann", "cy", "bob"])
    assert set(opened) == {"ann", "bob", "cy"}
    assert opened["ann"] == StreamPosition(head=1, acked=0, trimmed=0, since=0)
    assert opened["bob"] == opened["cy"] == StreamPosition(head=1, acked=1, trimmed=1, since=1)


def test_acks_move_forward_only_never_past_the_head_and_only_on_streams(log):
    for _ in range(3):
        to(log, "ann", "bob")
    assert log.ack_many({"ann": 2, "bob": 9, "nobody": 2}) == 2
    assert (position(log, "ann").acked, position(log, "bob").acked) == (2, 3)
    assert log.ack_many({"ann": 1, "bob": 3}) == 0  # back, or where it is: nothing moves
    assert position(log, "ann").acked == 2 and log.ack_many({}) == 0
    assert position(log, "nobody") == StreamPosition(head=3, acked=3, trimmed=3, since=3)


def test_unread_counts_above_the_ack_up_to_the_cap(log):
    log.open_stream("ann")
    for _ in range(4):
        to(log, "ann")
    to(log)
    to(log, "bob")
    assert log.unread("ann") == Unread(5, 0, 6)
    assert log.unread("ann", cap=2) == Unread(2, 0, 6)
    log.ack_many({"ann": 3})
    assert log.unread("ann") == Unread(2, 3, 6)
    assert log.unread("nobody") == Unread(0, 6, 6, exists=False)


# -- history pages ------------------------------------------------------------

QUERIES = [HistoryQuery(), HistoryQuery(limit=2), HistoryQuery(before=5, limit=2),
           HistoryQuery(after=2, limit=2), HistoryQuery(after=0, limit=100),
           HistoryQuery(category="news"), HistoryQuery(priority=Priority.HIGH, limit=1),
           HistoryQuery(before=1), HistoryQuery(after=99)]


def test_a_history_page_is_the_models_page_of_the_stream(log):
    log.open_stream("ann")
    for i in range(9):
        users = () if i % 4 == 3 else ("ann",) if i % 3 else ("ann", "bob")
        to(log, *users, category=("chat", "news")[i % 2], priority=("normal", "high")[i % 3 > 1])
    stream, _ = log.read("ann", 0, 100)
    for query in QUERIES:
        page, where = log.history("ann", query)
        expected = select_page(stream, query)
        assert ([n.offset for n in page.items], page.has_more) == (
            [n.offset for n in expected.items], expected.has_more), query
        assert where == position(log, "ann")
    empty, _ = log.history("nobody", HistoryQuery())
    assert (empty.items, empty.has_more) == ([], False)


# -- trims and epochs ---------------------------------------------------------

def test_a_trim_keeps_the_newest_and_moves_the_epoch_when_unacked_entries_go(subject):
    log, trimmer = subject.log, subject.trimmer
    for _ in range(5):
        to(log, "ann", "bob")
    log.ack_many({"ann": 1, "bob": 4})
    result = trimmer.trim(keep=2, max_age_s=None)
    assert (result.streams, result.entries, result.unacked, result.epochs_bumped) == (2, 6, 2, 1)
    assert offsets(log, "ann") == offsets(log, "bob") == [4, 5]
    assert position(log, "ann") == StreamPosition(head=5, acked=1, trimmed=3, epoch=2)
    assert position(log, "bob") == StreamPosition(head=5, acked=4, trimmed=3, epoch=1)
    assert position(log, "ann").lost and log.unread("ann") == Unread(2, 1, 5)
    assert [a.offset for a in log.read_span(0, 5)] == [4, 5]
    again = trimmer.trim(keep=2, max_age_s=None)
    assert (again.streams, again.entries, again.messages) == (0, 0, 0)


def test_a_trim_cuts_entries_older_than_the_age_bound(subject):
    log, trimmer = subject.log, subject.trimmer
    now = utcnow()
    for hours in (30, 26, 1):
        to(log, "ann", at=now - timedelta(hours=hours))
    to(log, "bob", at=now)
    result = trimmer.trim(keep=1000, max_age_s=86_400, now=now.timestamp())
    assert (result.streams, result.entries, result.unacked) == (1, 2, 2)
    assert offsets(log, "ann") == [3] and offsets(log, "bob") == [4]
    assert position(log, "ann").trimmed == 2 and position(log, "bob").trimmed == 3


def test_broadcasts_leave_the_log_once_every_stream_is_past_them(subject):
    log, trimmer = subject.log, subject.trimmer
    log.open_stream("ann")
    for _ in range(3):
        to(log)
    to(log, "bob")
    log.ack_many({"ann": 3})
    result = trimmer.trim(keep=1, max_age_s=None)
    # bob's stream began just before its own entry: the broadcasts were never his
    assert (result.streams, result.entries, result.unacked, result.epochs_bumped) == (
        1, 2, 0, 0)
    assert offsets(log, "ann") == [3] and offsets(log, "bob") == [4]
    assert [a.offset for a in log.read_span(0, 4)] == [3, 4]


def test_a_page_from_below_the_floor_skips_nothing_above_it(subject):
    """A client that reconnects from below its stream's floor (its acked
    offset, after a trim took entries it had not acknowledged) must get the
    stream above the floor without a gap, though broadcasts below the floor
    are still in the log for another stream."""
    log = subject.log
    log.open_streams(["ann", "bob"])
    for _ in range(3):
        to(log)
    to(log, "ann")
    to(log)
    to(log)
    subject.trimmer.trim(keep=5, max_age_s=None)  # ann held six: her floor is 1; bob's is 0
    assert (position(log, "ann").trimmed, position(log, "bob").trimmed) == (1, 0)
    assert offsets(log, "ann", after=0, limit=2) == [2, 3]
