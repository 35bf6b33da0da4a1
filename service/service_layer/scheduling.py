"""One greenlet that wakes at the earliest of many deadlines.

Batches of thousands of connections come due at different times; a timer
greenlet each would cost a greenlet per batch. Instead, deadlines go on a
heap and one greenlet sleeps until the earliest, or until an earlier one is
added. Stale entries (a deadline that moved) are harmless: the callback is
asked about a key and decides whether anything is due.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Hashable

import gevent.event


class DeadlineScheduler:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Hashable]] = []
        self._order = itertools.count()
        self._wake = gevent.event.Event()
        self._running = False

    def schedule(self, deadline: float, key: Hashable) -> None:
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (deadline, next(self._order), key))
        if earliest is None or deadline < earliest:
            self._wake.set()

    def pop_due(self, now: float) -> list[Hashable]:
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due

    def run(self, on_due: Callable[[Hashable, float], None]) -> None:
        """Call on_due(key, now) for each deadline as it comes; until stop()."""
        self._running = True
        while self._running:
            now = self._clock()
            for key in self.pop_due(now):
                on_due(key, now)
            self._wake.clear()
            timeout = max(0.0, self._heap[0][0] - self._clock()) if self._heap else None
            self._wake.wait(timeout)

    def stop(self) -> None:
        self._running = False
        self._wake.set()
