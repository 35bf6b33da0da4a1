"""The server side of issue 18's report that a reconnecting client got
501.. before 1..500 (the client's own threads reordered them:
tests/support/py_client.py). Here every yield the hub makes during a replay
is forced to be long (the log read of each page, and the drain of each
chunk), and entries are committed and handed on live meanwhile: the
connection still gets every offset once, in order."""

from __future__ import annotations

import gevent
from gevent.event import Event

from service.domain.batching import BatchPolicy
from service.domain.model import PublishRequest, utcnow
from service.service_layer.delivery import DeliveryHub
from service.service_layer.recent import RecentEntries
from tests.support.fakes import InMemoryNotificationLog, RecordingSender


class GatedLog(InMemoryNotificationLog):
    """Each page read waits until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Event()
        self.waiting = Event()

    def read(self, user_id, after, limit):
        self.waiting.set()
        self.gate.wait()
        return super().read(user_id, after, limit)


class SlowSocket(RecordingSender):
    """A send takes a few polls to leave the node, as a real socket's does."""

    def __init__(self) -> None:
        super().__init__()
        self.polls = 0

    def send(self, sid, event, data):
        super().send(sid, event, data)
        self.polls = 3

    def waiting(self, sid):
        self.polls = max(0, self.polls - 1)
        return 100 if self.polls else 0


def publish(log: InMemoryNotificationLog, n: int) -> list:
    request = PublishRequest.from_body({"user_id": "nat", "category": "c"})
    return [log.append(request, f"m{len(log.entries)}", utcnow()) for _ in range(n)]


def test_live_entries_and_later_pages_never_overtake_a_page_being_replayed():
    log, sender = GatedLog(), SlowSocket()
    hub = DeliveryHub(log, sender, None, gevent.spawn, replay_page=500,
                      batching=BatchPolicy(max_size=1))
    hub.recent = RecentEntries(max_entries=4)  # too few to cover the gap: the log is read
    publish(log, 510)
    hub.connect("s1", "nat", last_offset=None)
    assert log.waiting.wait(timeout=2)  # the first page's read is under way
    for appended in publish(log, 5):  # committed and handed on live meanwhile
        hub.deliver(appended)
    log.gate.set()
    with gevent.Timeout(5):
        while not sender.offsets("s1") or sender.offsets("s1")[-1] != 515:
            gevent.sleep(0.005)
        gevent.sleep(0.05)  # a duplicate would come now
    for appended in publish(log, 3):  # in sync: live from here on
        hub.deliver(appended)
    assert sender.offsets("s1") == list(range(1, 519))
    assert hub._connections["s1"].catching_up is False
