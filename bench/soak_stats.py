"""The soak benchmark's arithmetic and its progress line: no I/O, tested in
tests/unit/test_bench_soak.py."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from bench.loadgen import percentile


def lsq_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """The slope of the least-squares line through (x, y) points; None with
    fewer than two distinct x."""
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def rss_growth_mb_per_h(samples: Sequence[tuple[float, float]], warmup_s: float) -> float | None:
    """(seconds, MB) samples -> MB per hour, fitted on those at or after warmup_s."""
    slope = lsq_slope([(t, mb) for t, mb in samples if t >= warmup_s])
    return None if slope is None else round(slope * 3600, 2)


def delivered_ratio(received: int, expected: int) -> float | None:
    return round(received / expected, 5) if expected else None


def merge_hist(into: dict[float, int], delta: dict) -> dict[float, int]:
    """Add a {bucket: count} histogram (JSON keys are strings) into another."""
    for key, count in delta.items():
        into[float(key)] = into.get(float(key), 0) + count
    return into


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def render_progress(label: str, done: float, total: float, fields: Sequence[str],
                    width: int = 24, bar: bool = True) -> str:
    """One status line: a bar (or only the percentage), then the fields."""
    fraction = min(1.0, max(0.0, done / total)) if total else 1.0
    filled = round(fraction * width)
    head = f"[{'#' * filled}{'.' * (width - filled)}] " if bar else ""
    return f"{label} {head}{fraction * 100:3.0f}% | " + " | ".join(fields)



class Tally:
    """The latency histograms the client processes report, merged: the whole
    run, by kind (targeted, broadcast), the last 10 s (for the progress line)
    and each minute of publishing."""

    def __init__(self) -> None:
        self.hist: dict[float, int] = {}
        self.by_kind: dict[str, dict[float, int]] = {"targeted": {}, "broadcast": {}}
        self.recent: deque[dict[float, int]] = deque([{}], maxlen=10)
        self.per_minute: dict[int, dict[float, int]] = {}
        self.t0: float | None = None  # when publishing began (monotonic)

    def add(self, targeted: dict, broadcast: dict) -> None:
        merge_hist(self.by_kind["targeted"], targeted)
        merge_hist(self.by_kind["broadcast"], broadcast)
        for delta in (targeted, broadcast):
            merge_hist(self.hist, delta)
            merge_hist(self.recent[-1], delta)
            if self.t0 is not None and delta:
                minute = int((time.monotonic() - self.t0) // 60)
                merge_hist(self.per_minute.setdefault(minute, {}), delta)

    def recent_p99(self) -> float | None:
        merged: dict[float, int] = {}
        for part in self.recent:
            merge_hist(merged, part)
        return percentile(merged, 0.99)
