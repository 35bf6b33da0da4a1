"""A log-bucketed histogram for latency percentiles. Pure: no I/O.

Values land in buckets whose bounds grow by ``GROWTH`` (2 %), so every
percentile it reports is within 2 % of the true one, whatever the range, in
a few hundred integer counters at most. Two histograms merge by adding
counts, so per-interval percentiles stay correct however many batches fed them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

GROWTH = 1.02
_LOG_GROWTH = math.log(GROWTH)
_FLOOR = 0.001  # values below this (1 µs in ms) share the lowest bucket
_log = math.log
_INV_LOG_GROWTH = 1.0 / _LOG_GROWTH
_LOG_FLOOR_STEPS = math.log(_FLOOR) / _LOG_GROWTH  # log(v / floor) = log(v) - log(floor)


class Histogram:
    __slots__ = ("buckets", "count", "max")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.max = 0.0

    def add(self, value: float) -> None:
        index = int(math.log(value / _FLOOR) / _LOG_GROWTH) if value > _FLOOR else 0
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1
        if value > self.max:
            self.max = value

    def extend(self, values: Iterable[float], weight: int = 1) -> None:
        """``add`` each value, ``weight`` times (it stands for values not
        observed); inlined, as this runs for delivered entries."""
        buckets = self.buckets
        get = buckets.get
        top = self.max
        count = 0
        for value in values:
            index = int(_log(value) * _INV_LOG_GROWTH - _LOG_FLOOR_STEPS) if value > _FLOOR else 0
            buckets[index] = get(index, 0) + weight
            if value > top:
                top = value
            count += weight
        self.count += count
        self.max = top

    def percentile(self, q: float) -> float:
        """The q-quantile (0 < q <= 1), as its bucket's upper bound, capped at the max."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        if rank >= self.count:
            return self.max
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(self.max, _FLOOR * GROWTH ** (index + 1))
        return self.max
