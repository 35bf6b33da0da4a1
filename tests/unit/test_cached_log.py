"""The cached log: hits, exact invalidation by each kind of write, and the
stale-read guard (a read overlapping a write never stores what it read)."""

from __future__ import annotations

import itertools

from service.domain.cache import TtlLruCache
from service.domain.model import PublishRequest, utcnow
from service.service_layer.cache_stats import CacheReporter
from service.service_layer.cached_log import CachedNotificationLog, InvalidatingTrimmer
from service.service_layer.ports import TrimResult
from tests.support.fakes import InMemoryNotificationLog, RecordingTelemetry

_ids = itertools.count()


def draft(**target) -> tuple:
    return (PublishRequest.from_body({**target, "category": "c", "payload": {"n": 1}}),
            f"m{next(_ids)}", utcnow())


class HookedLog(InMemoryNotificationLog):
    """Runs ``during_read`` after a read has read, and ``during_append``
    after an append has committed, before either returns."""

    during_read = None
    during_append = None

    def unread(self, user_id, cap=1000):
        result = super().unread(user_id, cap)
        if self.during_read is not None:
            hook, self.during_read = self.during_read, None
            hook()
        return result

    read_uncached = InMemoryNotificationLog.read

    def read(self, user_id, after, limit):
        result = super().read(user_id, after, limit)
        if self.during_read is not None:
            hook, self.during_read = self.during_read, None
            hook()
        return result

    def append_many(self, drafts):
        result = super().append_many(drafts)
        if self.during_append is not None:
            hook, self.during_append = self.during_append, None
            hook()
        return result


def make() -> tuple[CachedNotificationLog, HookedLog]:
    inner = HookedLog()
    cache = {"max_entries": 100, "max_bytes": 1 << 20, "ttl_s": 3600.0, "clock": lambda: 0.0}
    return CachedNotificationLog(inner, TtlLruCache(**cache), TtlLruCache(**cache)), inner


def test_reads_are_served_from_the_cache_until_a_write_changes_them():
    log, inner = make()
    log.append_many([draft(user_id="alice"), draft(user_id="bob")])
    assert log.unread("alice").count == 1
    page, _ = log.read("alice", 0, 10)
    assert [n.offset for n in page] == [1]
    misses = log.users.stats.misses
    assert log.unread("alice").count == 1 and log.read("alice", 0, 10)[0] == page
    assert log.users.stats.misses == misses and log.users.stats.hits == 2
    log.append_many([draft(user_id="bob")])  # someone else's: alice's values stand
    assert log.unread("alice") == inner.unread("alice")  # the head is patched in
    assert log.read("alice", 0, 10)[1] == inner.read("alice", 0, 10)[1]
    assert log.users.stats.misses == misses


def test_a_targeted_append_refreshes_the_count_and_drops_the_pages():
    log, inner = make()
    log.append_many([draft(user_id="alice")])
    log.unread("alice")
    log.read("alice", 0, 10)
    log.append_many([draft(user_ids=["alice", "bob"]), draft(user_id="alice")])
    assert log.unread("alice") == inner.unread("alice")
    assert log.unread("alice").count == 3
    assert [n.offset for n in log.read("alice", 0, 10)[0]] == [1, 2, 3]


def test_a_broadcast_ack_or_trim_drops_every_value_it_changed():
    log, inner = make()
    log.append_many([draft(user_id="alice"), draft(user_id="bob")])
    for user in ("alice", "bob"):
        log.unread(user)
        log.read(user, 0, 10)
    log.append_many([draft(broadcast=True)])
    for user in ("alice", "bob"):
        assert log.unread(user) == inner.unread(user)
        assert log.read(user, 0, 10)[0] == inner.read(user, 0, 10)[0]
    log.ack_many({"alice": 3})
    assert log.unread("alice").count == 0 and log.unread("bob").count == 2
    assert log.read("alice", 0, 10)[1].acked == 3

    class Trimmer:
        def trim(self, keep, max_age_s, now=None):
            inner.trim("bob", 3)
            return TrimResult(streams=1, entries=2)

    InvalidatingTrimmer(Trimmer(), log).trim(0, None)
    assert log.unread("bob") == inner.unread("bob") and log.unread("bob").count == 0
    assert log.read("bob", 0, 10) == inner.read("bob", 0, 10)


def test_a_user_without_a_stream_is_cached_without_its_head():
    log, inner = make()
    assert log.unread("carol").exists is False
    log.append_many([draft(user_id="alice")])
    assert log.unread("carol") == inner.unread("carol")  # acked follows the head
    log.open_stream("carol")
    log.append_many([draft(user_id="carol")])
    assert log.unread("carol") == inner.unread("carol") and log.unread("carol").count == 1


def test_a_read_overlapping_a_commit_does_not_store_what_it_read():
    log, inner = make()
    log.append_many([draft(user_id="alice")])
    # the read has its answer (count 1); then a write commits, before it stores
    inner.during_read = lambda: log.append_many([draft(user_id="alice")])
    assert log.unread("alice").count == 1  # what it read: it began before the write
    assert log.unread("alice").count == 2  # not the stale 1 from the cache
    inner.during_read = lambda: log.append_many([draft(broadcast=True)])
    log.read("alice", 0, 10)
    assert log.read("alice", 0, 10)[0] == inner.read_uncached("alice", 0, 10)[0]


def test_a_read_during_a_write_in_flight_is_not_refreshed_twice():
    log, inner = make()
    log.append_many([draft(user_id="alice")])
    # the read runs after the commit but before the write has invalidated: it
    # sees the new entry; were it stored, the refresh would count it again
    inner.during_append = lambda: log.unread("alice")
    log.append_many([draft(user_id="alice")])
    assert log.unread("alice").count == 2 == inner.unread("alice").count


def test_the_reporter_emits_deltas_per_level():
    log, _ = make()
    log.append_many([draft(user_id="alice")])
    telemetry = RecordingTelemetry()
    reporter = CacheReporter({("global", "log"): log.shared, ("user", "streams"): log.users})
    log.unread("alice")
    log.unread("alice")
    reporter.emit(telemetry)
    log.unread("alice")
    reporter.emit(telemetry)
    points = [(dict(tags), fields) for name, tags, fields in telemetry.records
              if name == "cache" and dict(tags)["level"] == "user"]
    assert [(f["hits"], f["misses"], f["entries"]) for _, f in points] == [(1, 1, 1), (1, 0, 1)]
    assert points[0][0] == {"level": "user", "cache": "streams"}


def test_a_full_page_stays_cached_when_entries_are_appended_after_it():
    log, inner = make()
    log.append_many([draft(user_id="alice"), draft(user_id="alice")])
    full, _ = log.read("alice", 0, 2)
    misses = log.users.stats.misses
    log.append_many([draft(user_id="alice")])
    page, position = log.read("alice", 0, 2)
    assert page == full and log.users.stats.misses == misses  # a hit: still exact
    assert position == inner.read("alice", 0, 2)[1]  # with the new head patched in
    assert [n.offset for n in log.read("alice", 0, 5)[0]] == [1, 2, 3]
