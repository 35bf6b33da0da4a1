"""The log sequencer hands committed entries on in offset order, once each,
whatever order they come in and whatever arrives while a gap is being read
from the log."""

from __future__ import annotations

import gevent
from gevent.event import Event

from service.domain.model import Appended, Notification, Priority, utcnow
from service.service_layer.sequencer import LogSequencer


def entry(offset: int) -> Appended:
    return Appended(Notification(f"id{offset}", offset, "c", Priority.NORMAL, "{}", utcnow()),
                    ("u",), 1)


class GatedLog:
    """The log holds 1..n; a read of a span waits until the test lets it go,
    so the test decides what arrives while the read is under way."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reads: list[tuple[int, int]] = []
        self.reading = Event()
        self.release = Event()

    def read_span(self, after: int, upto: int, limit: int = 500) -> list[Appended]:
        self.reads.append((after, upto))
        self.reading.set()
        self.release.wait()
        return [entry(o) for o in range(after + 1, min(upto, self.n) + 1)][:limit]


def test_an_entry_handed_while_a_gap_is_read_is_taken_once_and_the_fill_ends():
    """head 100, 110 held: the fill reads 101..109. Meanwhile 105 arrives
    (a late Redis message) and is held too; the read then covers it. Before
    the fix, 105 stayed held below the head and every read after it was
    (109, 104]: empty, for ever, and nothing after 109 was ever taken."""
    log, taken = GatedLog(120), []
    sequencer = LogSequencer(log, gevent.spawn, lambda a: taken.append(a.offset), page=500)
    sequencer.head = 100
    sequencer.offer(entry(110))
    assert log.reading.wait(timeout=2)
    sequencer.offer(entry(105))  # while the read is under way
    log.release.set()
    for offset in range(111, 121):
        sequencer.offer(entry(offset))
    deadline = gevent.Timeout(2)
    with deadline:
        while sequencer.head != 120 or sequencer._filling:
            gevent.sleep(0.01)
    assert taken == list(range(101, 121))
    assert log.reads == [(100, 109)]
