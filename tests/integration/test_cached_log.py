"""The query cache on the real logs (SQLite and PostgreSQL).

The property: through the cached log, random interleavings of targeted and
broadcast appends, acks, trims, stream pages and unread counts; every cached
answer equals an uncached read made right after it, so no cached read is
older than the last committed write. Plus the SQL ``unread`` itself.
"""

from __future__ import annotations

import itertools
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.adapters.stream_trim import SqlStreamTrimmer
from service.domain.cache import TtlLruCache
from service.domain.model import PublishRequest, utcnow
from service.service_layer.cached_log import CachedNotificationLog, InvalidatingTrimmer

USERS = 4
_ids = itertools.count()

user = st.integers(0, USERS - 1)
operation = st.one_of(
    st.tuples(st.just("append"), st.lists(user, min_size=1, max_size=3, unique=True)),
    st.tuples(st.just("broadcast")),
    st.tuples(st.just("ack"), user, st.integers(0, 3)),  # ack 0-3 entries below the head
    # absolute `after`s: the same page is asked for again across writes
    st.tuples(st.just("read"), user, st.sampled_from([0, 1, 3, 6]), st.integers(1, 4)),
    st.tuples(st.just("unread"), user, st.sampled_from([2, 1000])),
)
# a trim drops everything: a rare one, so that the other writes' exact
# invalidation is what most cached answers depend on
trim = st.tuples(st.just("trim"), st.integers(1, 3))


def request(**target) -> PublishRequest:
    return PublishRequest.from_body({**target, "category": "c", "payload": {"n": 1}})


def cached(inner, max_entries: int = 1000) -> CachedNotificationLog:
    options = {"max_bytes": 1 << 20, "ttl_s": 3600.0, "clock": lambda: 0.0,
               "compress_min_bytes": 256}
    return CachedNotificationLog(inner, TtlLruCache(max_entries=max_entries, **options),
                                 TtlLruCache(max_entries=16, **options))


def page_of(answer) -> tuple:
    page, position = answer
    return [(n.offset, n.id, n.payload_json) for n in page], position


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=5, max_size=30),
       trims=st.lists(st.tuples(st.integers(0, 29), trim), max_size=2),
       small=st.booleans())
def test_a_cached_read_is_never_older_than_the_last_committed_write(
        notification_log, engine, ops, trims, small):
    prefix = uuid.uuid4().hex[:6]  # the database outlives one example: fresh users
    users = [f"{prefix}-u{i}" for i in range(USERS)]
    log = cached(notification_log, max_entries=3 if small else 1000)  # small: evictions too
    trimmer = InvalidatingTrimmer(SqlStreamTrimmer(engine), log)
    for user_id in users[:2]:
        log.open_stream(user_id)
    for at, op in sorted(trims, reverse=True):
        ops.insert(at, op)
    for op in ops:
        kind = op[0]
        if kind == "append":
            log.append_many([(request(user_ids=[users[i] for i in op[1]]),
                              f"m{next(_ids)}", utcnow())])
        elif kind == "broadcast":
            log.append(request(broadcast=True), f"m{next(_ids)}", utcnow())
        elif kind == "ack":
            log.ack_many({users[op[1]]: max(0, notification_log.head() - op[2])})
        elif kind == "trim":
            trimmer.trim(op[1], None)
        elif kind == "read":
            args = (users[op[1]], op[2], op[3])
            for _ in range(2):  # the second is a hit, unless something dropped it
                assert page_of(log.read(*args)) == page_of(notification_log.read(*args))
        else:
            for _ in range(2):
                assert log.unread(users[op[1]], op[2]) == notification_log.unread(
                    users[op[1]], op[2])


def test_unread_counts_the_stream_above_the_ack_up_to_the_cap(notification_log):
    log = notification_log
    assert (log.unread("nobody").count, log.unread("nobody").exists) == (0, False)
    for i in range(3):
        log.append(request(user_id="alice"), f"a{i}", utcnow())
    log.append(request(user_id="bob"), "b0", utcnow())
    log.append(request(broadcast=True), "bc", utcnow())
    unread = log.unread("alice")
    assert (unread.count, unread.acked, unread.head, unread.exists) == (4, 0, 5, True)
    assert log.unread("alice", cap=2).count == 2
    log.ack_many({"alice": 2})
    assert log.unread("alice").count == 2 and log.unread("alice").acked == 2
    assert log.unread("nobody").acked == 5  # no stream: it would begin at the head
