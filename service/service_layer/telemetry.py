"""The hot path of telemetry: ``emit()`` and ``tally()``.

- ``emit`` records one event: it appends one tuple to a bounded deque. Use it
  for events whose detail matters (a refused connection, a config change).
- ``tally(spec, tags).add(...)`` adds to a per-interval summary, one point per
  tag set per interval: fields summed, up to two maxima. Use it for high-rate
  counters (publishes, dispatch outcomes, deliveries, acks), so that 10,000
  publishes a second cost a few points a second, with exact totals. Values go
  by position (``TallySpec`` names them), so a tally builds no dict per
  call (what each costs: docs/benchmarks.md, "The hot path's costs").
- ``Summary.observe`` adds per-entry values (latency, wait) to the summary's
  histograms; the point gets their p50, p95 and p99 (within 2 %). Ask
  ``wants_detail()`` first: past ``DETAIL_FULL`` values in an interval only
  some calls are observed, weighted, so the cost per second stays bounded.

None of them blocks, does I/O or raises into its caller. Everything else
(unique timestamps, encoding, writing) happens in the background writer
(``service.adapters.influx_writer``), which drains the ring in order.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from service.domain.histogram import Histogram
from service.domain.measurements import TallySpec

Tags = tuple[tuple[str, str], ...]  # (key, value) pairs; constant tuples cost nothing
Record = tuple[str, Tags, Mapping[str, Any], int]
PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
# Per-entry values observed in full per tag set and interval; past this, a
# random half of the calls, then a quarter..., each weighted to stand for
# the ones skipped, so a busy interval costs no more than a quiet one. Counts
# and maxima stay exact. 1,024: the histograms were telemetry's largest cost
# on delivery, and fewer values measured cheaper in paired on/off runs
# (docs/benchmarks.md, "The hot path's costs"), while 1,024 weighted values a
# second still place a p99 within about half a percentile.
DETAIL_FULL = 1024
_NONE = float("-inf")
_random = random.random


class Summary:
    """One tag set's sums, maxima and per-entry histograms for one interval."""

    __slots__ = ("spec", "tags", "sums", "peak", "peak2", "histograms", "_stride")

    def __init__(self, spec: TallySpec, tags: Tags) -> None:
        self.spec = spec
        self.tags = tags
        self.sums: list[Any] = [0, 0, 0, 0]
        self.peak = self.peak2 = _NONE
        self.histograms: dict[str, Histogram] = {}
        self._stride = 1

    def add(self, v0: float, v1: float = 0, v2: float = 0, v3: float = 0,
            peak: float = _NONE, peak2: float = _NONE) -> None:
        """Add values in the order of ``spec.sums``; peaks keep the largest."""
        try:
            sums = self.sums
            sums[0] += v0
            sums[1] += v1
            sums[2] += v2
            sums[3] += v3
            if peak > self.peak:
                self.peak = peak
            if peak2 > self.peak2:
                self.peak2 = peak2
        except Exception:  # the hot path must never raise into its caller
            pass

    def wants_detail(self) -> bool:
        """Whether this call should ``observe`` its per-entry values (cheap).
        Chosen at random, not every n-th: a periodic load must not alias."""
        return self._stride == 1 or _random() * self._stride < 1.0

    def observe(self, name: str, values: Sequence[float], copies: int = 1) -> None:
        """Add per-entry values, each standing for ``copies`` (the same batch
        sent to that many connections), weighted by the sampling stride."""
        try:
            histogram = self.histograms.get(name)
            if histogram is None:
                histogram = self.histograms[name] = Histogram()
            histogram.extend(values, self._stride * copies)
            if histogram.count >= DETAIL_FULL * self._stride:
                self._stride *= 2
        except Exception:  # the hot path must never raise into its caller
            pass

    def fields(self) -> dict[str, Any]:
        spec = self.spec
        # four slots, of which the spec names the first one to four
        fields = dict(zip(spec.sums, self.sums, strict=False))
        for name, histogram in self.histograms.items():
            for suffix, q in PERCENTILES:
                fields[f"{name}_{suffix}"] = histogram.percentile(q)
        for name, value in zip(spec.peaks, (self.peak, self.peak2), strict=False):
            if value != _NONE:
                fields[name] = value
        return fields


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
        self._tallies: dict[tuple[str, Tags], Summary] = {}
        self._flushed_totals: dict[str, int] = {}
        # each measurement's last flushed summaries, and when: the live metrics
        # route reads latencies here (off the hot path: once a flush)
        self.last_interval: dict[str, tuple[float, list[tuple[Tags, dict[str, Any]]]]] = {}

    def emit(self, measurement: str, tags: Tags, fields: Mapping[str, Any]) -> None:
        try:
            self._append((measurement, tags, fields, time.time_ns()))
            self.emitted += 1
        except Exception:  # the hot path must never raise into its caller
            self.errors += 1

    def tally(self, spec: TallySpec, tags: Tags) -> Summary:
        """This interval's summary of (spec, tags), to ``add`` to at once.
        Do not keep it across a yield: the writer swaps in a new interval."""
        key = (spec.measurement, tags)
        summary = self._tallies.get(key)
        if summary is None:
            summary = self._tallies[key] = Summary(spec, tags)
        return summary

    def flush_tallies(self) -> int:
        """Turn the interval's summaries into records; return how many."""
        tallies, self._tallies = self._tallies, {}
        last: dict[str, list[tuple[Tags, dict[str, Any]]]] = {}
        for (measurement, tags), summary in tallies.items():
            fields = summary.fields()
            self.emit(measurement, tags, fields)
            last.setdefault(measurement, []).append((tags, fields))
            if summary.spec.sums[0] == "count":
                self._flushed_totals[measurement] = (self._flushed_totals.get(measurement, 0)
                                                     + summary.sums[0])
        now = time.time()
        for measurement, summaries in last.items():
            self.last_interval[measurement] = (now, summaries)
        return len(tallies)

    @property
    def totals(self) -> dict[str, int]:
        """The sum of each tallied measurement's ``count`` since start."""
        totals = dict(self._flushed_totals)
        for (measurement, _), summary in self._tallies.items():
            if summary.spec.sums[0] == "count":
                totals[measurement] = totals.get(measurement, 0) + summary.sums[0]
        return totals

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
