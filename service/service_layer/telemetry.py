"""The hot path of telemetry: ``emit()`` and ``tally()``.

- ``emit`` records one event: it appends one tuple to a bounded deque. Use it
  for events whose detail matters (a delivery batch, a refused connection).
- ``tally`` adds to a per-interval summary, one point per tag set per
  interval: some fields are summed, others (``*_max``) keep the maximum.
  Use it for high-rate counters (publishes, dispatch outcomes, acks), so that
  10,000 publishes a second cost a few points a second, with exact totals.
- ``observe`` adds values to a per-interval histogram; the summary point gets
  its p50, p95, p99 and maximum (within 2 %), correct over the whole interval.

Neither blocks, does I/O or raises into its caller. Everything else (unique
timestamps, encoding, writing) happens in the background writer
(``service.adapters.influx_writer``), which drains the ring in order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from service.domain.histogram import Histogram

Tags = tuple[tuple[str, str], ...]  # (key, value) pairs; constant tuples cost nothing
Record = tuple[str, Tags, Mapping[str, Any], int]
PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


class TelemetryRing:
    """A bounded FIFO of telemetry records that counts what it loses.

    When full, appending drops the oldest record (deque ``maxlen``); the
    number lost is ``emitted - drained - len(ring)``, so the hot path keeps
    no extra counter for it.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._ring: deque[Record] = deque(maxlen=capacity)
        self._append = self._ring.append
        self.emitted = 0
        self.drained = 0
        self.errors = 0
        self._tallies: dict[tuple, dict[str, Any]] = {}
        self._histograms: dict[tuple, Histogram] = {}
        self.totals: dict[str, int] = {}  # sum of each tallied measurement's count

    def emit(self, measurement: str, tags: Tags, fields: Mapping[str, Any]) -> None:
        try:
            self._append((measurement, tags, fields, time.time_ns()))
            self.emitted += 1
        except Exception:  # the hot path must never raise into its caller
            self.errors += 1

    def tally(self, measurement: str, tags: Tags, sums: Mapping[str, Any],
              maxima: Mapping[str, Any] | None = None) -> None:
        """Add to this interval's summary of (measurement, tags): ``sums`` are
        added up, ``maxima`` keep the largest value seen."""
        try:
            key = (measurement, tags)
            summary = self._tallies.get(key)
            if summary is None:
                summary = self._tallies[key] = dict(sums)
                if maxima:
                    summary.update(maxima)
            else:
                for name, value in sums.items():
                    summary[name] += value
                if maxima:
                    for name, value in maxima.items():
                        if value > summary[name]:
                            summary[name] = value
            count = sums.get("count")
            if count:
                self.totals[measurement] = self.totals.get(measurement, 0) + count
        except Exception:  # the hot path must never raise into its caller
            self.errors += 1

    def observe(self, measurement: str, tags: Tags, name: str, values: Iterable[float]) -> None:
        """Add values to this interval's histogram of ``name``; the summary point
        gets ``name_p50``, ``name_p95``, ``name_p99`` and ``name_max``."""
        try:
            key = (measurement, tags, name)
            histogram = self._histograms.get(key)
            if histogram is None:
                histogram = self._histograms[key] = Histogram()
            histogram.extend(values)
        except Exception:  # the hot path must never raise into its caller
            self.errors += 1

    def flush_tallies(self) -> int:
        """Turn the interval's summaries into records; return how many."""
        tallies, self._tallies = self._tallies, {}
        histograms, self._histograms = self._histograms, {}
        for (measurement, tags, name), histogram in histograms.items():
            fields = tallies.setdefault((measurement, tags), {})
            for suffix, q in PERCENTILES:
                fields[f"{name}_{suffix}"] = histogram.percentile(q)
            fields[f"{name}_max"] = histogram.max
        for (measurement, tags), fields in tallies.items():
            self.emit(measurement, tags, fields)
        return len(tallies)

    @property
    def dropped_full(self) -> int:
        return self.emitted - self.drained - len(self._ring)

    def drain(self, limit: int) -> list[Record]:
        ring = self._ring
        take = min(limit, len(ring))
        popleft = ring.popleft
        records = [popleft() for _ in range(take)]
        self.drained += take
        return records

    def __len__(self) -> int:
        return len(self._ring)
