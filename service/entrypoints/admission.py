"""Socket.IO handshakes are admitted at the rate the event loop takes while
keeping up, so that a storm of them never starves publishing.

gevent runs, in one turn of its loop, every greenlet whose socket became
ready. In a storm (a deploy: every client back at once) thousands of
handshakes were ready together and the loop fell seconds behind: a publish
arriving meanwhile waited for all of them (the figures: docs/benchmarks.md,
storm, "Admission's settings").

So a connection that asks for Socket.IO waits for its turn before its
request is even parsed (``server.NodeConnectionHandler.handle``), and turns
come at a rate that follows the loop's lag and the process's CPU, as a
congestion window follows a network's (AIMD, as in TCP and Netflix's
concurrency-limits): a ticker measures how late it wakes and how busy the
process was; past ``LAG_TARGET_S`` or ``BUSY_HIGH`` the rate drops by a
fifth, under half the lag and ``BUSY_LOW`` it grows by ``STEP_PER_S`` while
handshakes wait. The loop's lag alone did not do: handshakes in small steps
kept it under target while the node spent all its CPU on them. A cap on the
number in progress was tried first and failed: a handshake mostly waits for
its client, so a cap admitted too few a second and much of a storm timed
out.
Waiting handshakes are parked greenlets: they cost the loop nothing.
Publishes and every other request go at once.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import gevent
from gevent.event import Event

LAG_TARGET_S = 0.05
TICK_S = 0.02
START_PER_S, FLOOR_PER_S, CEILING_PER_S, STEP_PER_S = 300.0, 100.0, 50_000.0, 50.0
# The process's CPU, over the last BUSY_WINDOW_TICKS ticks: handshakes are
# let in faster only below BUSY_LOW and slowed above BUSY_HIGH, so that a
# storm leaves publishing and fan-out a tenth of the core. Lower bounds let
# too few in (returning clients timed out); the storm bench measured these
# best (docs/benchmarks.md, storm, "Admission's settings").
BUSY_LOW, BUSY_HIGH, BUSY_WINDOW_TICKS = 0.7, 0.9, 5
BURST_S = 0.1  # tokens kept at most: a tenth of a second's worth


class AdaptiveRate:
    """A token bucket whose rate follows the event loop's lag and the
    process's CPU; who finds it empty waits in line."""

    def __init__(self, *, start_per_s: float = START_PER_S,
                 clock: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], float] = time.process_time) -> None:
        self._cpu = cpu
        self.per_s = start_per_s
        self.lag_s = 0.0  # the last lag measured
        self.admitted = 0
        self._tokens = start_per_s * BURST_S
        self._waiters: deque[Event] = deque()
        self._clock = clock

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def acquire(self) -> None:
        if self._tokens >= 1.0 and not self._waiters:
            self._tokens -= 1.0
            self.admitted += 1
            return
        turn = Event()
        self._waiters.append(turn)
        try:
            turn.wait()
        except BaseException:
            if not turn.is_set():
                self._waiters.remove(turn)
            raise

    def tick(self, elapsed_s: float, lag_s: float, busy: float = 0.0) -> None:
        """``elapsed_s`` since the last tick, of which ``lag_s`` late, with the
        process busy that fraction of the time: adjust the rate, add its
        tokens, and let in who may go."""
        self.lag_s = lag_s
        if lag_s > LAG_TARGET_S or busy > BUSY_HIGH:
            self.per_s = max(FLOOR_PER_S, self.per_s * 0.8)
        elif lag_s < LAG_TARGET_S / 2 and busy < BUSY_LOW and self._waiters:
            self.per_s = min(CEILING_PER_S, self.per_s + STEP_PER_S)
        self._tokens = min(self.per_s * BURST_S, self._tokens + self.per_s * elapsed_s)
        while self._waiters and self._tokens >= 1.0:
            self._tokens -= 1.0
            self.admitted += 1
            self._waiters.popleft().set()

    def run(self) -> None:
        """For sio.start_background_task: measure the loop's lag, for ever."""
        last, cpu = self._clock(), self._cpu()
        window: deque[tuple[float, float]] = deque(maxlen=BUSY_WINDOW_TICKS)
        while True:
            gevent.sleep(TICK_S)
            now, used = self._clock(), self._cpu()
            window.append((now - last, used - cpu))
            busy = sum(c for _, c in window) / max(sum(w for w, _ in window), 1e-9)
            self.tick(now - last, max(0.0, now - last - TICK_S), busy)
            last, cpu = now, used
