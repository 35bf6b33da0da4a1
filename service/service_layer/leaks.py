"""Leak tracking by weak reference: objects that should be gone, and are not.

Each connection's objects (the hub's ``Connection`` and Engine.IO's session)
are tracked from connect. When the connection closes they are *released*:
nothing should hold them after that. One still alive ``grace_s`` after its
release is a leak: something (a greenlet, a cache, a closure) still refers
to it, and with it to its queues and buffers. Weak references cost nothing
to the object's lifetime; the check runs with the runtime sampler.
"""

from __future__ import annotations

import gc
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from service.service_layer.ports import Telemetry

log = logging.getLogger(__name__)


class LeakTracker:
    def __init__(self, grace_s: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 max_released: int = 100_000) -> None:
        self.grace_s = grace_s
        self._clock = clock
        self._alive: dict[str, weakref.WeakSet[Any]] = {}
        # [kind, reference, released at, counted as a leak], oldest first; bounded
        self._released: deque[list[Any]] = deque(maxlen=max_released)
        self.leaked: dict[str, int] = {}  # objects found alive after their grace, ever

    def track(self, kind: str, obj: Any) -> None:
        self._alive.setdefault(kind, weakref.WeakSet()).add(obj)

    def released(self, kind: str, obj: Any) -> None:
        self._released.append([kind, weakref.ref(obj), self._clock(), False])

    def check(self) -> dict[str, dict[str, int]]:
        """Per kind: objects ``alive`` now, and ``leaked`` (released, past their
        grace, still referenced). Logs what holds the first leak of a kind."""
        now = self._clock()
        if any(not entry[3] and now - entry[2] >= self.grace_s and entry[1]() is not None
               for entry in self._released):
            # Objects in reference cycles wait for the cyclic collector, which
            # runs rarely here (GC_GEN0_THRESHOLD): collect before calling one a
            # leak. Once counted, a leak does not make every later check collect.
            gc.collect()
        watching: deque[list[Any]] = deque(maxlen=self._released.maxlen)
        leaking: dict[str, int] = {}
        for entry in self._released:
            kind, ref, at, counted = entry
            obj = ref()
            if obj is None:
                continue  # gone, as it should be
            watching.append(entry)  # still here: keep watching, it may go later
            if now - at < self.grace_s:
                continue
            leaking[kind] = leaking.get(kind, 0) + 1
            if not counted:
                entry[3] = True
                self.leaked[kind] = self.leaked.get(kind, 0) + 1
                if self.leaked[kind] == 1:
                    holders = sorted({type(r).__name__ for r in gc.get_referrers(obj)})
                    log.warning("leak: a %s released %.0f s ago is still referenced by %s",
                                kind, now - at, ", ".join(holders))
        self._released = watching
        return {kind: {"alive": len(self._alive.get(kind, ())), "leaked": leaking.get(kind, 0)}
                for kind in sorted(set(self._alive) | set(leaking))}


def report_leaks(tracker: LeakTracker, telemetry: Telemetry) -> None:
    """For the runtime sampler: one ``runtime_leaks`` point per kind."""
    for kind, counts in tracker.check().items():
        telemetry.emit("runtime_leaks", (("kind", kind),), counts)
