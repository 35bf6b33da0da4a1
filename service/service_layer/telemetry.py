"""The hot path of telemetry: ``emit()`` into a bounded in-memory ring.

``emit`` never blocks, never does I/O and never raises into its caller. A
background writer (``service.adapters.influx_writer``) drains the ring.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from typing import Any

Record = tuple[str, Mapping[str, str], Mapping[str, Any], int]


class TelemetryRing:
    """A bounded FIFO of telemetry records, with counters for what it lost.

    Timestamps are nanoseconds and strictly increasing within the process,
    so two records of one series never share a timestamp: InfluxDB would
    otherwise keep only the last one.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._ring: deque[Record] = deque()
        self._last_ns = 0
        self.emitted = 0
        self.dropped_full = 0
        self.errors = 0
        self.totals: dict[str, int] = {}

    def emit(self, measurement: str, tags: Mapping[str, str], fields: Mapping[str, Any]) -> None:
        try:
            now = time.time_ns()
            if now <= self._last_ns:
                now = self._last_ns + 1
            self._last_ns = now
            if len(self._ring) >= self.capacity:
                self._ring.popleft()  # keep the newest; the loss is counted
                self.dropped_full += 1
            self._ring.append((measurement, tags, fields, now))
            self.emitted += 1
            count = fields.get("count")
            if count is not None:
                self.totals[measurement] = self.totals.get(measurement, 0) + count
        except Exception:
            self.errors += 1

    def drain(self, limit: int) -> list[Record]:
        ring = self._ring
        take = min(limit, len(ring))
        return [ring.popleft() for _ in range(take)]

    def __len__(self) -> int:
        return len(self._ring)
