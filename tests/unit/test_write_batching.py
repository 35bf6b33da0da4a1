"""Group commit, with the in-memory log: batches form under concurrency, the
hub is handed entries in offset order, and a failed commit fails its whole
batch and nothing else."""

import gevent
import gevent.event
import pytest

from service.domain.backpressure_policy import Overloaded
from service.domain.errors import StorageUnavailable
from service.domain.model import PublishRequest, utcnow
from service.service_layer.write_batching import InOrderDelivery, WriteBatcher
from tests.support.fakes import InMemoryNotificationLog, RecordingTelemetry


class CountingLog(InMemoryNotificationLog):
    """Records each transaction's size; can be told to fail the next ones."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.failing = 0

    def append_many(self, drafts):
        gevent.sleep(0.001)  # a commit takes time: the next publishes gather meanwhile
        if self.failing:
            self.failing -= 1
            raise StorageUnavailable("the notification log is unavailable: test")
        self.batches.append(len(drafts))
        return super().append_many(drafts)


def draft(user: str) -> tuple:
    return PublishRequest.from_body({"user_id": user, "category": "c"}), user, utcnow()


def test_concurrent_publishes_share_commits_and_reach_the_hub_in_offset_order():
    log, delivered, telemetry = CountingLog(), [], RecordingTelemetry()
    batcher = WriteBatcher(log, lambda a: delivered.append(a.offset), telemetry, max_batch=8)
    publishers = [gevent.spawn(batcher.append, *draft(f"u{i}")) for i in range(40)]
    gevent.joinall(publishers, raise_error=True)
    assert batcher.wait_delivered(timeout=2)
    offsets = [g.value.offset for g in publishers]
    assert sorted(offsets) == list(range(1, 41))
    # each publisher was answered with its own entry
    assert all(g.value.user_ids == (f"u{i}",) for i, g in enumerate(publishers))
    assert delivered == list(range(1, 41))
    assert sum(log.batches) == 40 and max(log.batches) == 8 and len(log.batches) < 40
    assert telemetry.total("db_write_batch") == 40
    assert telemetry.total("db_write_batch", "batches") == len(log.batches)


def test_a_lone_publish_is_committed_at_once_in_a_batch_of_one():
    log = CountingLog()
    batcher = WriteBatcher(log, lambda a: None)
    assert batcher.append(*draft("ann")).offset == 1
    assert batcher.append(*draft("bob")).offset == 2
    assert log.batches == [1, 1]


def test_a_failed_commit_fails_its_whole_batch_and_stores_nothing_of_it():
    log, delivered = CountingLog(), []
    batcher = WriteBatcher(log, lambda a: delivered.append(a.offset), max_batch=3)
    log.failing = 1
    publishers = [gevent.spawn(batcher.append, *draft(f"u{i}")) for i in range(7)]
    gevent.joinall(publishers)
    assert batcher.wait_delivered(timeout=2)
    # u0 led alone and failed; u1-u3 and u4-u6 gathered behind it and went through
    assert isinstance(publishers[0].exception, StorageUnavailable)
    assert [g.value.offset for g in publishers[1:]] == [1, 2, 3, 4, 5, 6]
    assert delivered == [1, 2, 3, 4, 5, 6] and log.batches == [3, 3]


def test_an_unexpected_error_is_reported_as_unavailable_storage():
    class Broken(CountingLog):
        def append_many(self, drafts):
            raise RuntimeError("bug")

    batcher = WriteBatcher(Broken(), lambda a: None)
    with pytest.raises(StorageUnavailable):
        batcher.append(*draft("ann"))


def test_past_max_waiting_a_publish_is_refused_at_once():
    log = CountingLog()
    batcher = WriteBatcher(log, lambda a: None, max_waiting=2)
    waiting = [gevent.spawn(batcher.append, *draft(f"u{i}")) for i in range(3)]
    gevent.sleep(0)  # u0 leads a commit in flight; u1 and u2 wait behind it
    with pytest.raises(Overloaded) as refused:
        batcher.append(*draft("late"))
    assert refused.value.retry_after > 0
    gevent.joinall(waiting, raise_error=True)
    assert log.head() == 3  # the refused one was never stored


def test_a_window_gathers_publishes_that_come_shortly_after():
    log = CountingLog()
    batcher = WriteBatcher(log, lambda a: None, window_s=0.05)
    first = gevent.spawn(batcher.append, *draft("ann"))
    gevent.sleep(0.01)
    second = gevent.spawn(batcher.append, *draft("bob"))
    gevent.joinall([first, second], raise_error=True)
    assert log.batches == [2]


def test_a_leader_killed_mid_commit_fails_its_batch_and_the_line_moves_on():
    class Stuck(CountingLog):
        def append_many(self, drafts):
            if self.failing:
                gevent.sleep(10)  # killed while here
            return super().append_many(drafts)

    log = Stuck()
    log.failing = 1
    batcher = WriteBatcher(log, lambda a: None)
    leader = gevent.spawn(batcher.append, *draft("ann"))
    gevent.sleep(0)
    follower = gevent.spawn(batcher.append, *draft("bob"))
    gevent.sleep(0)
    leader.kill()
    log.failing = 0
    assert follower.get(timeout=2).offset == 1  # it led the next commit
    assert batcher.waiting == 0


def test_a_publisher_killed_while_waiting_passes_its_turn_on():
    waiting = {}

    class KillingLog(CountingLog):
        def append_many(self, drafts):  # during ann's commit: bob's caller goes away
            result = super().append_many(drafts)
            if result[0].offset == 1:
                waiting["bob"].kill(block=False)  # lands once ann has handed him the turn
            return result

    log = KillingLog()
    batcher = WriteBatcher(log, lambda a: None, max_batch=1)
    leader = gevent.spawn(batcher.append, *draft("ann"))
    gevent.sleep(0)  # ann leads, her commit in flight
    waiting["bob"] = gevent.spawn(batcher.append, *draft("bob"))
    cyd = gevent.spawn(batcher.append, *draft("cyd"))
    gevent.joinall([leader, cyd], timeout=2)
    assert cyd.ready(), "cyd was left waiting"
    assert leader.value.offset == 1 and cyd.value.offset == 2  # bob was not stored
    assert batcher.waiting == 0 and log.head() == 2


def test_the_publishers_of_a_batch_are_answered_before_its_fan_out():
    """The leader of a commit answers the others of its batch and passes the
    lead on first, then hands the entries to fan-out itself; a slow fan-out
    holds up no one else's answer, nor the next commit."""
    log, delivered, order = CountingLog(), [], []

    def slow_fan_out(appended):
        gevent.sleep(0.2)  # sending to thousands of connections
        delivered.append(appended.offset)

    def publish(user):
        order.append(("answered", batcher.append(*draft(user)).offset))

    batcher = WriteBatcher(log, slow_fan_out, max_batch=8)
    leader = gevent.spawn(publish, "ann")
    gevent.sleep(0)  # ann leads; her commit is in flight
    others = [gevent.spawn(publish, u) for u in ("bob", "cyd")]
    gevent.joinall(others, timeout=0.15)  # long before any fan-out could end
    assert sorted(order) == [("answered", 2), ("answered", 3)]
    assert delivered == [] and not leader.ready()  # ann delivers 1, then 2 and 3
    later = batcher.append(*draft("dan"))  # committed while the fan-out goes on
    assert later.offset == 4
    leader.join(timeout=2)
    assert batcher.wait_delivered(timeout=2)
    assert delivered == [1, 2, 3, 4]  # in offset order


def test_commits_wait_while_too_many_entries_wait_for_fan_out():
    """The hand-off to fan-out is bounded: past it, commits wait for it."""
    log, release = CountingLog(), gevent.event.Event()
    batcher = WriteBatcher(log, lambda a: release.wait(), max_undelivered=2)
    stuck = gevent.spawn(batcher.append, *draft("u0"))  # its leader fans out, stuck
    gevent.sleep(0.01)
    batcher.append(*draft("u1"))
    batcher.append(*draft("u2"))  # u1 and u2 wait for it: the bound
    assert batcher.undelivered == 2
    fourth = gevent.spawn(batcher.append, *draft("u3"))
    gevent.sleep(0.05)
    assert not fourth.ready() and log.head() == 3  # not even committed yet
    release.set()
    assert fourth.get(timeout=2).offset == 4 and stuck.get(timeout=2).offset == 1
    assert batcher.wait_delivered(timeout=2)


def test_a_leader_with_a_long_line_ahead_makes_room_itself():
    """A leader that found others ahead of it commits batch after batch until
    its own publish is in one, and hands nothing on until then: past the
    bound, with nobody else handing entries on, it must make room itself."""
    delivered = []
    delivery = InOrderDelivery(lambda a: delivered.append(a.offset), gevent.spawn, bound=3)
    log = InMemoryNotificationLog()
    delivery.put(log.append_many([draft(f"u{i}") for i in range(4)]))  # its earlier batches
    waiter = gevent.spawn(delivery.wait_below_bound)
    waiter.join(timeout=2)
    assert waiter.ready(), "the next commit waited for ever"
    assert delivered == [1, 2, 3, 4]
