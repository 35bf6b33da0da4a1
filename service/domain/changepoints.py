"""Change points: where a metric stepped to a new level, got noisier, or
its trend bent (a kink), and stayed so; not where it merely has a shape (a
cycle, a drift, a smooth curve, correlated or heavy-tailed noise, a
spike). Pure Python, no I/O (numpy is not a dependency of the service).

``detect(values, period=...)`` returns the first index of each new regime,
with the means before and after it and a ``confidence`` = 1 - p-value.
Step by step (the shape helpers are in ``changepoint_shape``, the fits in
``changepoint_fit``, the slope test in ``changepoint_slope``):

1. **Spikes.** Each point is clipped to ``spike_k`` local noise scales
   around the median of the 7 points around it (spikes and bursts of up to
   3 points go; a step, which moves the median, stays).
2. **Cycles.** ``period`` (points per day, if the caller knows it) is
   divided out first; then up to 3 more cycles of 8 to 4,096 points seen at
   least twice are guessed from the data and divided out. ``period=0``
   turns all of this off.
3. **Noise.** sigma from the first differences (of each segment tested,
   so that noise that grows is not taken for steps) and a robust AR(1)
   phi of the whole series, at most ``max_phi``; sums are judged against
   the long-run variance sigma^2 (1+phi)/(1-phi).
4. **Segmentation.** Binary segmentation with the standardized CUSUM of
   the level and, for the variance, of log |first difference|. A split's
   p-value is the two-sided tail of the maximum of a standardized Brownian
   bridge over its segment (Siegmund's approximation, conservative for
   discrete data): p = 2 (1 - Phi(b)) + 2 L b phi(b), with
   L = log((n - m) / m) for n points and segments of at least m.
   Splits at ``confidence`` or more (1 - p) are kept.
5. **Shape guard.** A level change is kept only if the jump between
   straight lines fitted on each side (at most ``max_window`` points;
   parabolas where the curvature is ``curve_threshold`` standard errors or
   more) is at least ``threshold`` standard errors, so a drift or a slow
   cycle seen less than twice is not a staircase; and if it is at least
   ``min_magnitude_pct`` of the level before. A variance change must change
   the noise's scale by at least ``min_spread_ratio``, and is dropped
   within 4 ``min_segment`` of a level change (the same event).
6. **Slope.** Between the level changes, binary segmentation with the
   broken-line statistic: the hinge (x - k)_+ added to a straight line, over
   its standard error, against the larger of the long-run noise scale and
   the broken line's own residual scale; its maximum's p-value is the tube
   formula for a smooth process, p = 2 (1 - Phi(b)) + (L / pi) exp(-b^2 / 2),
   L the length of the curve the standardized hinges trace (same
   ``confidence``). A kink is kept only if the hinge is still
   ``slope_threshold`` long-run standard errors or more when a parabola,
   not a line, is fitted through the window around the vertex (at most
   ``max_window`` points each side, within the neighbouring splits), so
   that a smooth curve, a drift or the crest of a slow cycle, whose slope
   turns gradually, is no kink (0: no slope test); and if the new slope
   takes the level at least ``min_magnitude_pct`` away from where the old
   slope would have put it by the end of that window (``kind="slope"``; its
   index is the first point after the vertex).

The defaults are the setting that leave-one-out cross-validation on the
TCPD benchmark picked among those that keep change-free series of many
shapes under 1 false alarm per 10,000 points (``python -m bench
changepoints``; figures in docs/benchmarks.md).

``magnitude_pct`` is signed, 100 * (after - before) / |before| of the level
(or of the noise's scale, for ``kind="variance"``); +-inf if before is 0.
For ``kind="slope"``, ``before_mean`` and ``after_mean`` are where the old
slope would have put the level and where the new one puts it, at the end
of the window after the vertex (``direction`` is that of the change of
slope), and ``score`` is the broken-line statistic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from service.domain.changepoint_fit import polyfit
from service.domain.changepoint_shape import (
    ar1,
    deseasonalize,
    guess_periods,
    huberize,
    local_scales,
    median,
    noise_scale,
)
from service.domain.changepoint_slope import slope_changes

_LOG_ABS_SD = math.pi / math.sqrt(8.0)  # sd of log|N(0, 1)|


@dataclass(frozen=True)
class ChangePoint:
    index: int  # first index of the new regime
    direction: str  # "up" or "down" (for a variance change: noisier or calmer)
    magnitude_pct: float  # signed: 100 * (after - before) / |before|
    before_mean: float
    after_mean: float
    score: float  # the standardized CUSUM statistic of the split
    confidence: float = 1.0  # 1 - p-value of the split, under no change
    kind: str = "level"  # "level", "variance" or "slope"

    @property
    def p_value(self) -> float:
        return 1.0 - self.confidence


def detect(values: Sequence[float], *, period: int | None = None,
           min_magnitude_pct: float = 5.0, threshold: float = 3.5, min_segment: int = 6,
           max_window: int = 192, spike_k: float = 3.0, confidence: float = 0.9999,
           min_spread_ratio: float = 1.5, curve_threshold: float = 2.0,
           max_phi: float = 0.8, slope_threshold: float = 7.0) -> list[ChangePoint]:
    """The change points of ``values``, in order. See the module docstring."""
    if period is not None and period < 0:
        raise ValueError("period must be >= 0 points (0: no cycle), or None (guess)")
    if not (2 <= min_segment <= max_window and threshold >= 0 and spike_k > 0
            and min_magnitude_pct >= 0 and 0 < confidence < 1 and min_spread_ratio >= 1
            and 0 <= max_phi < 1 and slope_threshold >= 0):
        raise ValueError("need 2 <= min_segment <= max_window, threshold >= 0, spike_k > 0, "
                         "min_magnitude_pct >= 0, 0 < confidence < 1, min_spread_ratio >= 1, "
                         "0 <= max_phi < 1, slope_threshold >= 0")
    y = [float(v) for v in values]
    if not all(math.isfinite(v) for v in y):
        raise ValueError("values must be finite numbers")
    n = len(y)
    if n < 2 * min_segment or (sigma := noise_scale(y)) == 0.0:
        return []
    y = huberize(y, [spike_k * s for s in local_scales(y, sigma)])
    if period != 0:
        if period and period >= 2:
            y = deseasonalize(y, period)
        y, _periods = guess_periods(y)
    alpha = 1.0 - confidence
    long_run = _long_run_scale(y, max_phi)
    found = _level_changes(y, long_run, alpha, threshold, min_magnitude_pct / 100, min_segment,
                           max_window, curve_threshold)
    levels = [p.index for p in found]
    if slope_threshold > 0:
        found += [_point(t, old, new, stat, p, "slope", old, new) for t, stat, p, old, new in
                  slope_changes(y, levels, long_run, alpha, slope_threshold,
                                min_magnitude_pct / 100, min_segment, max_window)]
    # a step shows in the differences too (one large one, and more noise where
    # the noise scales with the level), and a variance split is placed less
    # sharply: a variance change within 4 min_segment of a level change is
    # the same event, reported once
    found += [p for p in _variance_changes(y, alpha, min_spread_ratio, min_segment, max_window)
              if all(abs(p.index - t) >= 4 * min_segment for t in levels)]
    return sorted(found, key=lambda p: (p.index, p.kind))


def p_value(stat: float, n: int, m: int) -> float:
    """P(max |standardized CUSUM| >= stat) over splits of n points into
    segments of at least m, under no change (see step 4)."""
    if n < 2 * m:
        return 1.0
    span = math.log((n - m) / m)
    density = math.exp(-stat * stat / 2) / math.sqrt(2 * math.pi)
    return min(1.0, math.erfc(stat / math.sqrt(2)) + 2 * span * stat * density)


def _segment(x: list[float], scale: Callable[[int, int], float], alpha: float,
             m: int) -> list[tuple[int, float, float]]:
    """Binary segmentation: (index, statistic, p-value) of each split whose
    p-value is below ``alpha``, each segment [a, b) standardized by scale(a, b)."""
    sums = [0.0]
    for v in x:
        sums.append(sums[-1] + v)
    out, stack = [], [(0, len(x))]
    while stack:
        a, b = stack.pop()
        n = b - a
        if n < 2 * m:
            continue
        total, best, best_t = sums[b] - sums[a], -1.0, a
        for t in range(a + m, b - m + 1):
            k = t - a
            stat = abs(sums[t] - sums[a] - k / n * total) / math.sqrt(k * (n - k) / n)
            if stat > best:
                best, best_t = stat, t
        sd = scale(a, b)
        if sd <= 0:
            continue
        best /= sd
        p = p_value(best, n, m)
        if p < alpha:
            out.append((best_t, best, p))
            stack += [(a, best_t), (best_t, b)]
    return sorted(out)


def _long_run_scale(y: list[float], max_phi: float) -> Callable[[int, int], float]:
    phi = ar1(y, max_phi)
    # the differences see sigma^2 (1 - phi); sums see sigma^2 (1 + phi) / (1 - phi)
    factor = math.sqrt((1 + phi) / (1 - phi) / (1 - phi))
    floor = 0.2 * noise_scale(y)  # a flat stretch still gets a scale

    def long_run(a: int, b: int) -> float:
        """Of the stretch itself: noise that grows must not look like steps."""
        return max(noise_scale(y[a:b]), floor) * factor

    return long_run


def _level_changes(y: list[float], long_run: Callable[[int, int], float], alpha: float,
                   threshold: float, ratio: float, m: int, window: int,
                   curve_threshold: float) -> list[ChangePoint]:
    splits = _segment(y, long_run, alpha, m)
    cuts = [0] + [t for t, _s, _p in splits] + [len(y)]
    out = []
    for i, (t, stat, p) in enumerate(splits):
        lo, hi = max(cuts[i], t - window), min(cuts[i + 2], t + window)
        if _jump_z(y, lo, t, hi, long_run(lo, t), long_run(t, hi),
                   curve_threshold) < threshold:
            continue
        before, after = _mean(y[max(cuts[i], t - 4 * window):t]), _mean(
            y[t:min(cuts[i + 2], t + 4 * window)])
        if abs(after - before) < ratio * abs(before):
            continue
        out.append(_point(t, before, after, stat, p, "level", before, after))
    return out


def _variance_changes(y: list[float], alpha: float, spread: float, m: int,
                      window: int) -> list[ChangePoint]:
    d = [b - a for a, b in zip(y, y[1:], strict=False)]
    floor = 0.05 * (noise_scale(y) or 1.0)
    u = [math.log(abs(v) + floor) for v in d]
    if len(u) < 2 * m:
        return []
    centre = _mean(u)
    lag1 = sum((a - centre) * (b - centre) for a, b in zip(u, u[1:], strict=False))
    var = sum((v - centre) ** 2 for v in u) / len(u)
    rho = max(0.0, lag1 / len(u) / var) if var else 0.0
    scale = math.sqrt(var * (1 + 2 * rho)) or _LOG_ABS_SD
    splits = _segment(u, lambda _a, _b: scale, alpha, m)
    cuts = [0] + [t for t, _s, _p in splits] + [len(u)]
    out = []
    for i, (t, stat, p) in enumerate(splits):
        left = u[max(cuts[i], t - 4 * window):t]
        right = u[t:min(cuts[i + 2], t + 4 * window)]
        factor = math.exp(median(right) - median(left))
        if max(factor, 1 / factor) < spread:
            continue
        index = t + 1  # u[t] is y[t + 1] - y[t]: the first difference with the new noise
        before = _mean(y[max(0, index - 4 * window):index])
        after = _mean(y[index:index + 4 * window])
        out.append(_point(index, 1.0, factor, stat, p, "variance", before, after))
    return out


def _jump_z(y: list[float], lo: int, t: int, hi: int, left_scale: float, right_scale: float,
            curve: float) -> float:
    """|jump| / standard error between the fits on [lo, t) and [t, hi) at
    t - 1/2: on each side a straight line (a drift is no step), or a parabola
    where its curvature is at least ``curve`` standard errors (a slow cycle)."""
    sides: list[tuple[float, float]] = []
    for seg, x0, scale in ((y[lo:t], t - lo - 0.5, left_scale), (y[t:hi], -0.5, right_scale)):
        line, parabola = polyfit(seg, x0, 1), polyfit(seg, x0, 2)
        if line is None or scale <= 0:
            return 0.0
        bent = parabola is not None and abs(parabola.top_z) >= curve * scale
        fit = parabola if bent and parabola is not None else line
        sides.append((fit.value, fit.value_var * scale * scale))
    (left, lvar), (right, rvar) = sides
    return abs(right - left) / math.sqrt(lvar + rvar)


def _point(index: int, before: float, after: float, stat: float, p: float, kind: str,
           before_mean: float, after_mean: float) -> ChangePoint:
    pct = 100.0 * (after - before) / abs(before) if before else math.copysign(math.inf, after)
    return ChangePoint(index=index, direction="up" if after > before else "down",
                       magnitude_pct=pct, before_mean=before_mean, after_mean=after_mean,
                       score=stat, confidence=1.0 - p, kind=kind)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
