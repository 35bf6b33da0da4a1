"""The node's books (``notify_books``): every entry committed here ends in one
dispatch outcome, whichever way it went; an entry lost on the way, or
counted twice, shows as ``unaccounted``; and the races where the hub used to
lose or double-count an outcome now balance."""

from __future__ import annotations

from dataclasses import replace

import gevent
import pytest

from service.domain.model import PublishRequest, utcnow
from service.service_layer.books import BookedLog, Books
from service.service_layer.delivery import DeliveryHub
from service.service_layer.publishing import publish
from service.service_layer.write_batching import WriteBatcher
from tests.support.fakes import (
    InMemoryNotificationLog,
    ManualSpawner,
    RecordingSender,
    RecordingTelemetry,
)

OUTCOMES = ("live", "queued", "deferred", "dropped")


def dispatched(telemetry: RecordingTelemetry) -> dict[str, int]:
    totals = dict.fromkeys(OUTCOMES, 0)
    for measurement, tags, fields in telemetry.records:
        if measurement == "notify_dispatch" and tags["outcome"] in totals:
            totals[tags["outcome"]] += fields["count"]
    return totals


def commit(log: InMemoryNotificationLog, books: Books, *users: str):
    """Commit one entry per user (None: a broadcast) through the books."""
    drafts = [(PublishRequest.from_body({"broadcast": True, "category": "c"} if u is None
                                        else {"user_id": u, "category": "c"}),
               f"m{len(log.entries)}{i}", utcnow()) for i, u in enumerate(users)]
    return BookedLog(log, books).append_many(drafts)


class Gate:
    """Backpressure that defers every priority while ``engaged``; can be
    told to fail on one offset (a hand-off that raises mid-way)."""

    def __init__(self) -> None:
        self.engaged = False
        self.deferred = 0
        self.fail_on: int | None = None
        self.asked = 0

    def defers(self, priority) -> bool:
        self.asked += 1
        if self.fail_on is not None and self.asked == self.fail_on:
            raise RuntimeError("a bug in the hand-off")
        return self.engaged

    def admit_connection(self) -> None:
        return None


@pytest.fixture
def parts():
    log, sender, telemetry, spawn = (InMemoryNotificationLog(), RecordingSender(),
                                     RecordingTelemetry(), ManualSpawner())
    gate = Gate()
    hub = DeliveryHub(log, sender, telemetry, spawn, pressure=gate)
    return log, sender, telemetry, spawn, hub, gate


def test_publishes_through_the_group_commit_balance_the_books(parts):
    """Connected, catching-up and offline users, broadcasts, and a spell of
    backpressure, published concurrently through the real group commit."""
    log, _sender, telemetry, spawn, hub, gate = parts
    hub.connect("s-ann", "ann", last_offset=None)
    spawn.run_all()
    batcher = WriteBatcher(BookedLog(log, hub.books), hub.deliver, telemetry, max_batch=7)

    def send(body: dict) -> None:
        publish(body, append=batcher.append, telemetry=telemetry)

    bodies = [{"user_id": u, "category": "c"} for u in ("ann", "bob", "carol") * 20]
    bodies += [{"user_ids": ["ann", "bob", "dan"], "category": "c"}] * 10
    bodies += [{"broadcast": True, "category": "c"}] * 5
    gevent.joinall([gevent.spawn(send, b) for b in bodies[:40]], raise_error=True)
    hub.connect("s-bob", "bob", last_offset=0)  # catching up while more comes
    gate.engaged = True
    gevent.joinall([gevent.spawn(send, b) for b in bodies[40:60]], raise_error=True)
    gate.engaged = False
    gevent.joinall([gevent.spawn(send, b) for b in bodies[60:]], raise_error=True)
    assert batcher.wait_delivered(timeout=2)
    spawn.run_all()

    books = hub.books.snapshot()
    assert books["unaccounted"] == 0 and books["pending"] == 0
    assert books["published"] == telemetry.total("notify_publish") == 60 + 30 + 5 * 4
    assert {k: books[k] for k in OUTCOMES} == dispatched(telemetry)
    assert books["live"] and books["queued"] and books["deferred"]


def test_an_entry_held_for_a_gap_is_pending_until_taken(parts):
    log, _sender, telemetry, spawn, hub, _gate = parts
    hub.connect("s-ann", "ann", last_offset=None)
    spawn.run_all()
    first, second = commit(log, hub.books, "ann", "ann")
    assert hub.books.snapshot()["pending"] == 2  # committed, not handed on yet
    hub.deliver(second)  # early: held for the one before it
    assert hub.books.snapshot() == {"published": 2, "live": 0, "queued": 0, "deferred": 0,
                                    "dropped": 0, "pending": 2, "unaccounted": 0}
    hub.deliver(first)
    assert hub.books.snapshot() == {"published": 2, "live": 2, "queued": 0, "deferred": 0,
                                    "dropped": 0, "pending": 0, "unaccounted": 0}


def test_an_entry_whose_outcome_is_lost_shows_as_unaccounted(parts):
    log, _sender, _telemetry, spawn, hub, gate = parts
    hub.connect("s-ann", "ann", last_offset=None)
    spawn.run_all()
    entries = commit(log, hub.books, "ann", "ann", "ann")
    gate.fail_on = 2  # the second hand-off raises before its outcome is counted
    for entry in entries:
        hub.deliver(entry)  # the hub logs the failure and goes on
    books = hub.books.snapshot()
    assert books["published"] == 3 and books["live"] == 2 and books["pending"] == 0
    assert books["unaccounted"] == 1


def test_an_outcome_counted_twice_shows_below_zero(parts):
    log, _sender, _telemetry, _spawn, hub, _gate = parts
    [entry] = commit(log, hub.books, "carol")
    hub.deliver(entry)  # nobody connected: queued
    hub._count(queued=1)  # a double count, as a bug would make it
    assert hub.books.snapshot()["unaccounted"] == -1


def test_an_entry_committed_before_the_first_connect_read_the_head_is_queued(parts):
    """The first connect reads the log's head past an entry still waiting for
    its hand-off: the hub starts from there, so it never takes that entry,
    and counted nothing for it (``offer`` answered "already taken")."""
    log, _sender, telemetry, spawn, hub, _gate = parts
    [entry] = commit(log, hub.books, "carol")
    hub.connect("s-ann", "ann", last_offset=None)  # head 1: the entry is in the log
    spawn.run_all()
    hub.deliver(entry)  # its hand-off comes now
    assert dispatched(telemetry)["queued"] == 1
    assert hub.books.snapshot()["unaccounted"] == 0


class StaleHeadLog(InMemoryNotificationLog):
    """Opening a stream answers the head as it was before the last commits:
    the read ran while they were being committed."""

    stale_head = 0

    def open_streams(self, user_ids):
        positions = super().open_streams(user_ids)
        stale = self.stale_head
        return {u: replace(p, head=stale, since=min(p.since, stale),
                           acked=min(p.acked, stale), trimmed=min(p.trimmed, stale))
                for u, p in positions.items()}


def test_entries_handed_on_before_the_head_was_known_are_not_taken_again():
    """Entries handed on while nobody was connected are left to the log
    (queued). The first connect then read a head older than them; starting
    from it, the next entry's gap fill read them back and counted them again."""
    log, telemetry, spawn = StaleHeadLog(), RecordingTelemetry(), ManualSpawner()
    hub = DeliveryHub(log, RecordingSender(), telemetry, spawn)
    for entry in commit(log, hub.books, "carol", "carol"):
        hub.deliver(entry)  # head unknown: queued
    hub.connect("s-ann", "ann", last_offset=None)  # reads head 0
    [third] = commit(log, hub.books, "carol")
    hub.deliver(third)
    spawn.run_all()
    assert sum(dispatched(telemetry).values()) == 3 == hub.books.published
    assert hub.books.snapshot()["unaccounted"] == 0


def test_in_a_cluster_a_gap_fill_keeps_this_nodes_own_entries_its_own():
    """Several nodes: the log follower's fill reads entries from the log as
    another node's. One committed here whose hand-off had not come yet was
    then counted as relayed, and its own outcome never (nor on its hand-off,
    which found it taken)."""
    log, telemetry, spawn = InMemoryNotificationLog(), RecordingTelemetry(), ManualSpawner()
    hub = DeliveryHub(log, RecordingSender(), telemetry, spawn, on_foreign=lambda entry: None)
    hub.follow(0)  # the follower's first read: the head is known
    entries = commit(log, hub.books, "carol", "dan")
    hub.follow(2)  # the follower sees them before their hand-off
    spawn.run_all()  # the fill reads 1..2 from the log
    for entry in entries:
        hub.deliver(entry)  # the hand-off, late
    assert dispatched(telemetry)["queued"] == 2
    assert hub.books.snapshot()["unaccounted"] == 0


def test_the_books_point_is_one_consistent_snapshot():
    books, telemetry = Books(), RecordingTelemetry()
    log = InMemoryNotificationLog()
    commit(log, books, "ann", None)  # a broadcast to the one stream there is
    books.count(live=1, queued=0, deferred=0, dropped=0)
    books.emit(telemetry)
    [(measurement, tags, fields)] = telemetry.records
    assert measurement == "notify_books" and tags == {}
    assert fields == {"published": 2, "live": 1, "queued": 0, "deferred": 0, "dropped": 0,
                      "pending": 2, "unaccounted": -1}
    books.settle(1)
    books.settle(1)  # settling twice changes nothing
    books.settle(99)  # nor one never committed here
    assert books.snapshot()["pending"] == 1
