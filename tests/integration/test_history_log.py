"""The history query on the real logs (SQLite and PostgreSQL).

- The SQL page is the model's (service.domain.history.select) on the same
  stream as ``read`` returns it: own entries, multi-user ones, broadcasts
  since the stream began, trimmed floors, filters, cursors either way.
- Through the query cache, interleaved with publishes, acks and trims, every
  cached page equals an uncached read made right after it.
"""

from __future__ import annotations

import itertools
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.adapters.stream_trim import SqlStreamTrimmer
from service.domain.cache import TtlLruCache
from service.domain.history import HistoryQuery, select
from service.domain.model import Priority, PublishRequest, utcnow
from service.service_layer.cached_log import CachedNotificationLog, InvalidatingTrimmer

USERS = 3
CATEGORIES = ("chat", "news")
PRIORITIES = (Priority.NORMAL, Priority.HIGH)
_ids = itertools.count()

user = st.integers(0, USERS - 1)
kind = st.tuples(st.sampled_from(CATEGORIES), st.sampled_from(PRIORITIES))
write = st.one_of(
    st.tuples(st.just("append"), st.lists(user, min_size=1, max_size=2, unique=True), kind),
    st.tuples(st.just("broadcast"), kind),
)
# cursors relative to the log's head when the example began (the database
# outlives one example), so that they land among the example's own entries
query = st.builds(
    lambda cursor, at, limit, category, priority: (cursor, at, limit, category, priority),
    st.sampled_from([None, "before", "after"]), st.integers(0, 22), st.integers(1, 5),
    st.sampled_from((None, *CATEGORIES)), st.sampled_from((None, *PRIORITIES)))


def request(kind: tuple, **target) -> PublishRequest:
    category, priority = kind
    return PublishRequest.from_body({**target, "category": category,
                                     "priority": priority.value, "payload": {"n": 1}})


def make_query(spec: tuple, base: int) -> HistoryQuery:
    cursor, at, limit, category, priority = spec
    where = {cursor: base + at} if cursor else {}
    return HistoryQuery(limit=limit, category=category, priority=priority, **where)


def shown(answer) -> tuple:
    page, position = answer
    return [n.wire_json for n in page.items], page.has_more, position


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(write, min_size=1, max_size=20), queries=st.lists(query, max_size=6),
       trim_to=st.one_of(st.none(), st.integers(1, 4)))
def test_the_sql_page_is_the_models_page(notification_log, engine, writes, queries, trim_to):
    prefix = uuid.uuid4().hex[:6]
    users = [f"{prefix}-u{i}" for i in range(USERS)]
    base = notification_log.head()
    notification_log.open_stream(users[0])  # begun before the broadcasts; the others later
    for op in writes:
        if op[0] == "append":
            notification_log.append(request(op[2], user_ids=[users[i] for i in op[1]]),
                                    f"m{next(_ids)}", utcnow())
        else:
            notification_log.append(request(op[1], broadcast=True), f"m{next(_ids)}", utcnow())
    if trim_to is not None:
        SqlStreamTrimmer(engine).trim(trim_to, None)  # floors move up: trimmed entries go
    for user_id in [*users, f"{prefix}-nobody"]:
        stream, position = notification_log.read(user_id, 0, 10_000)
        for spec in [*queries, (None, 0, 100, None, None), ("after", 0, 3, None, None)]:
            q = make_query(spec, base)
            expected = select(stream, q)
            page, at = notification_log.history(user_id, q)
            assert [n.wire_json for n in page.items] == [n.wire_json for n in expected.items], q
            assert page.has_more is expected.has_more, q
            assert at == position


def test_a_user_with_no_stream_has_no_history(notification_log):
    notification_log.append(request(("chat", Priority.NORMAL), broadcast=True), "b", utcnow())
    page, position = notification_log.history("nobody", HistoryQuery())
    assert (page.items, page.has_more) == ([], False)
    assert position.acked == position.head == 1


def test_each_side_stops_at_the_limit_and_pages_meet(notification_log):
    """Own entries and broadcasts interleaved, more than a page of each."""
    notification_log.open_stream("alice")
    for i in range(12):
        target = {"broadcast": True} if i % 3 == 0 else {"user_id": "alice"}
        notification_log.append(request(("chat", Priority.NORMAL), **target), f"m{i}", utcnow())
    seen, query = [], HistoryQuery(limit=5)
    while True:
        page, _ = notification_log.history("alice", query)
        seen = [n.offset for n in page.items] + seen
        if not page.has_more:
            break
        query = HistoryQuery(before=page.items[0].offset, limit=5)
    assert seen == list(range(1, 13))


operation = st.one_of(
    write,
    st.tuples(st.just("ack"), user, st.integers(0, 3)),  # ack 0-3 entries below the head
    st.tuples(st.just("trim"), st.integers(1, 3)),
    st.tuples(st.just("history"), user, query),
)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=5, max_size=30))
def test_a_cached_page_is_never_older_than_the_last_committed_write(
        notification_log, engine, ops):
    prefix = uuid.uuid4().hex[:6]
    users = [f"{prefix}-u{i}" for i in range(USERS)]
    options = {"max_bytes": 1 << 20, "ttl_s": 3600.0, "clock": lambda: 0.0,
               "compress_min_bytes": 256}
    log = CachedNotificationLog(notification_log, TtlLruCache(max_entries=1000, **options),
                                TtlLruCache(max_entries=16, **options))
    trimmer = InvalidatingTrimmer(SqlStreamTrimmer(engine), log)
    base = notification_log.head()
    for user_id in users[:2]:
        log.open_stream(user_id)
    for op in ops:
        if op[0] == "append":
            log.append_many([(request(op[2], user_ids=[users[i] for i in op[1]]),
                              f"m{next(_ids)}", utcnow())])
        elif op[0] == "broadcast":
            log.append(request(op[1], broadcast=True), f"m{next(_ids)}", utcnow())
        elif op[0] == "ack":
            log.ack_many({users[op[1]]: max(0, notification_log.head() - op[2])})
        elif op[0] == "trim":
            trimmer.trim(op[1], None)
        else:
            args = (users[op[1]], make_query(op[2], base))
            for _ in range(2):  # the second is a hit, unless something dropped it
                assert shown(log.history(*args)) == shown(notification_log.history(*args))
