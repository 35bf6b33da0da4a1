"""Connect storms and fan-out that yields: streams opened together, no read
for a connection that is owed nothing, and a shared batch sent in slices
that nothing overtakes."""

import gevent
import pytest

from service.domain.batching import BatchPolicy
from service.domain.errors import StorageBusy
from service.domain.model import PublishRequest, utcnow
from service.service_layer.delivery import DeliveryHub
from service.service_layer.outbox import FANOUT_SLICE
from service.service_layer.recent import RecentEntries
from tests.support.fakes import InMemoryNotificationLog, ManualSpawner, RecordingSender


def publish(log, body):
    request = PublishRequest.from_body({"category": "c", **body})
    return log.append(request, f"m{len(log.entries)}", utcnow())


def make_hub(log, sender, spawn, **kwargs):
    return DeliveryHub(log, sender, None, spawn, batching=BatchPolicy(max_size=1), **kwargs)


def test_connections_arriving_together_open_their_streams_in_one_batch():
    log, sender = InMemoryNotificationLog(), RecordingSender()
    hub = make_hub(log, sender, gevent.spawn)
    greenlets = [gevent.spawn(hub.connect, f"s{i}", f"u{i}", None) for i in range(200)]
    gevent.joinall(greenlets, raise_error=True)
    assert hub.connection_count == 200
    assert sum(len(b) for b in log.opened_batches) == 200
    assert len(log.opened_batches) <= 3, [len(b) for b in log.opened_batches]


def test_a_connection_owed_nothing_is_in_sync_at_once_without_a_read():
    log, sender, spawn = InMemoryNotificationLog(), RecordingSender(), ManualSpawner()
    publish(log, {"user_id": "old"})
    log.ack_many({"old": 1})
    hub = make_hub(log, sender, spawn)
    hub.connect("new", "newcomer", None)  # its stream begins at the head
    hub.connect("back", "old", None)  # acknowledged everything
    assert log.reads == 0 and spawn.pending == []
    assert "new" in hub.cohort and "back" in hub.cohort
    hub.deliver(publish(log, {"broadcast": True}))
    assert sender.offsets("new") == [2] and sender.offsets("back") == [2]


def test_a_connection_owed_entries_still_reads_them():
    log, sender, spawn = InMemoryNotificationLog(), RecordingSender(), ManualSpawner()
    publish(log, {"user_id": "old"})
    hub = make_hub(log, sender, spawn)
    hub.connect("back", "old", None)
    spawn.run_all()
    assert log.reads == 1 and sender.offsets("back") == [1]


def test_a_connection_that_read_ahead_of_the_hub_joins_only_once_it_caught_up():
    """Entries committed but not yet handed to the hub (another node's, or a
    fan-out still in progress) can be read by a replay: that connection must
    not join the shared batch, which would send them a second time."""
    log, sender, spawn = InMemoryNotificationLog(), RecordingSender(), ManualSpawner()
    hub = make_hub(log, sender, spawn)
    hub.recent = RecentEntries(max_entries=1)  # memory does not reach back: the log is read
    hub.connect("early", "ann", None)
    log.open_stream("bob")
    ahead = [publish(log, {"broadcast": True}) for _ in range(4)]
    for appended in ahead[:2]:
        hub.deliver(appended)
    hub.connect("late", "bob", 0)
    spawn.run_all()  # bob's replay read 1-4; the hub has taken 1-2
    assert sender.offsets("late") == [1, 2, 3, 4] and "late" not in hub.cohort
    for appended in ahead[2:]:
        hub.deliver(appended)
    hub.deliver(publish(log, {"broadcast": True}))
    assert sender.offsets("late") == [1, 2, 3, 4, 5]
    assert sender.offsets("early") == [1, 2, 3, 4, 5]


def test_a_connection_that_missed_recent_entries_gets_them_from_memory():
    """Publishing goes on while a storm connects: what a connection missed
    since its stream was opened is sent from the recent entries, not read."""
    log, sender, spawn = InMemoryNotificationLog(), RecordingSender(), ManualSpawner()
    hub = make_hub(log, sender, spawn)
    hub.connect("early", "ann", None)
    log.open_streams(["bob", "cy"])  # opened with the storm's batch...
    for target in ({"broadcast": True}, {"user_id": "cy"}, {"user_id": "bob"}):
        hub.deliver(publish(log, target))  # ...then these were taken before they registered
    hub.connect("b", "bob", None)
    hub.connect("c", "cy", None)
    spawn.run_all()
    assert log.reads == 0
    assert sender.offsets("b") == [1, 3] and sender.offsets("c") == [1, 2]
    hub.deliver(publish(log, {"broadcast": True}))
    assert sender.offsets("b") == [1, 3, 4] and sender.offsets("c") == [1, 2, 4]


def test_a_shared_batch_sent_in_slices_is_overtaken_by_nothing():
    """While a large shared batch is being sent (yielding between slices),
    the next entries and a batch deadline wait their turn: every connection
    gets every batch in order."""
    log, sender, spawn = InMemoryNotificationLog(), RecordingSender(), ManualSpawner()
    meanwhile = []

    def pause():  # the loop runs others: a publish commits, a deadline fires
        if meanwhile:
            meanwhile.pop()()

    hub = make_hub(log, sender, spawn, pause=pause)
    members = [f"s{i}" for i in range(FANOUT_SLICE * 3)]
    for i, sid in enumerate(members):
        hub.connect(sid, f"u{i}", None)
    assert all(sid in hub.cohort for sid in members)
    first, later = (publish(log, {"broadcast": True, "priority": "critical"}) for _ in "ab")
    meanwhile += [lambda: hub.flush_due("\x00cohort", 0.0), lambda: hub.deliver(later)]
    hub.deliver(first)
    # 'later' was handed over in the middle of the first one's flush: both went
    # to everyone, the first one first
    assert meanwhile == []
    for sid in members:
        assert sender.offsets(sid) == [1, 2], sid


def test_recent_entries_cover_a_gap_whole_or_say_they_do_not():
    log = InMemoryNotificationLog()
    recent = RecentEntries(max_entries=3)
    targets = ({"user_id": "a"}, {"broadcast": True}, {"user_id": "b"}, {"user_ids": ["a", "b"]})
    for target in targets:
        recent.add(publish(log, target))  # offsets 1-4; 1 is forgotten
    assert recent.owed("a", after=0, upto=4, since=0) is None  # 1 is no longer here
    assert [n.offset for n in recent.owed("a", after=1, upto=4, since=0)] == [2, 4]
    assert [n.offset for n in recent.owed("a", after=1, upto=4, since=2)] == [4]  # began after 2
    assert recent.owed("b", after=4, upto=4, since=0) == []
    assert recent.owed("b", after=1, upto=5, since=0) is None  # 5 was never taken


def test_recent_entries_are_bounded_in_bytes_too():
    log = InMemoryNotificationLog()
    recent = RecentEntries(max_entries=100, max_bytes=1000)
    for _ in range(20):
        recent.add(publish(log, {"broadcast": True, "payload": {"x": "y" * 200}}))
    kept = recent.owed("a", after=19, upto=20, since=0)
    assert [n.offset for n in kept] == [20]
    assert recent.owed("a", after=14, upto=20, since=0) is None


class BusyLog(InMemoryNotificationLog):
    """Its pool is exhausted for the first ``busy`` opens."""

    def __init__(self, busy: int) -> None:
        super().__init__()
        self.busy = busy

    def open_streams(self, user_ids):
        if self.busy:
            self.busy -= 1
            raise StorageBusy("every connection to the notification log is in use; retry")
        return super().open_streams(user_ids)


def test_a_connect_waits_for_a_busy_pool_within_a_bound_then_is_told_to_retry():
    log, sender, spawn = BusyLog(busy=2), RecordingSender(), ManualSpawner()
    hub = make_hub(log, sender, spawn)
    hub.connect("s1", "ann", None)  # two refusals, then a free connection: no error
    assert hub.connection_count == 1

    ticks = iter(range(0, 1000, 4))  # each look at the clock: 4 s later
    log.busy = 10
    hub = DeliveryHub(log, sender, None, spawn, clock=lambda: float(next(ticks)))
    with pytest.raises(StorageBusy) as refused:
        hub.connect("s2", "bob", None)
    assert refused.value.to_dict()["retry_after"] > 0
    # tried at 0, 4 and 8 s; at 12 s the 10 s (OPEN_WAIT_S) were up
    assert hub.connection_count == 0 and 10 - log.busy == 3
