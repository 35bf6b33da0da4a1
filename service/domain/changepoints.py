"""Change points: where a metric stepped to a new level and stayed there.
Pure Python, no I/O (numpy is not a dependency of the service).

``detect(values, period=...)`` returns the first index of each new regime with
the means before and after it. It is made for rollups of latency, throughput
or rates: noisy (a coefficient of variation of 5-15 %, skewed), often with a
daily cycle, now and then a lone spike. Step by step:

1. **Noise.** Robust scales from the first differences, which cancel the
   level: sigma = 1.4826 MAD / sqrt(2) for the whole series, and a local one
   per block of 32 points (median |difference|, median of 3 blocks), as a
   higher level usually brings more noise.
2. **Spikes.** A Hampel filter: a point further than ``spike_k`` local sigmas
   from the median of the 7 points around it becomes that median. A spike or
   a burst of up to 3 points goes; a step, which moves the median, stays.
3. **Daily cycle.** ``period`` P is the points per cycle (1440 for 1-minute
   rollups, 24 for hourly ones), 0 for none; ``None`` guesses it from the
   autocorrelation of differenced block means, refined at full resolution.
   With at least 3 cycles: trend = centred running median over P; profile =
   per phase, the median over the cycles of value / trend (value - trend if
   a value is <= 0), smoothed over P/24 phases; the series is divided by it
   (or has it subtracted), unless it is no stronger than 4x what noise alone
   would give. Constant per phase, the profile leaves a step a step.
4. **Scan.** For each index t and window w = min_segment * 2**k up to
   ``max_window``: z = (mean of the w points from t - mean of the w before)
   / its standard error, each side's noise taken from max_window points.
   Windows are clipped at the ends, never below min_segment: a large step
   shows min_segment points after it, a small one after about
   2 * (threshold * cv / step)**2 points.
5. **Selection.** Candidates with abs(z) >= ``threshold`` and a change of at
   least ``min_magnitude_pct`` of the mean before, strongest first; one whose
   windows hold an accepted change point is dropped, so each change shows
   once and a burst shorter than min_segment is not a new level.
6. **Refinement and merge.** Each change point moves, within its window, to
   the maximum-likelihood split of the segments around it, and is re-tested
   against them (capped at 4 * max_window points each); the weakest failing
   a threshold, closer than min_segment to its neighbour, or a ramp (one
   line through both segments explains as much of their variance as the
   step: for a clean step the line explains at most 3/4 of what the step
   does, for a clean ramp the step at most 3/4 of the line) is dropped and
   the rest re-tested, as in Otava's merge step. So a trend, or a cycle not
   divided out, is not taken for a staircase of steps.

``magnitude_pct`` is signed, 100 * (after_mean - before_mean) / abs(before_mean),
on the series after steps 2-3 (which keep its level); +-inf if the mean before
is 0. Scaling the series by a positive factor moves no index, nor does
shifting it when ``min_magnitude_pct=0`` and no cycle is divided out.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

_HAMPEL_HALF = 3  # the spike filter looks at 3 points each side
_MEAN_ABS_DIFF = 2.0 / math.sqrt(math.pi)  # E|x1 - x2| / sigma, Gaussian noise
_MEDIAN_ABS_DIFF = 0.6745 * math.sqrt(2.0)  # median |x1 - x2| / sigma


@dataclass(frozen=True)
class ChangePoint:
    index: int  # first index of the new regime
    direction: str  # "up" or "down"
    magnitude_pct: float  # signed: 100 * (after - before) / |before|
    before_mean: float
    after_mean: float
    score: float  # |z| against the neighbouring segments


def detect(values: Sequence[float], *, period: int | None = None,
           min_magnitude_pct: float = 5.0, threshold: float = 4.5, min_segment: int = 6,
           max_window: int = 192, spike_k: float = 4.0) -> list[ChangePoint]:
    """The change points of ``values``, in order. See the module docstring."""
    if period is not None and period < 0:
        raise ValueError("period must be >= 0 points (0: no cycle), or None (guess)")
    if not (2 <= min_segment <= max_window and threshold > 0 and spike_k > 0
            and min_magnitude_pct >= 0):
        raise ValueError("need 2 <= min_segment <= max_window, threshold and spike_k > 0, "
                         "min_magnitude_pct >= 0")
    y = [float(v) for v in values]
    if not all(math.isfinite(v) for v in y):
        raise ValueError("values must be finite numbers")
    n = len(y)
    if n < 2 * min_segment:
        return []
    if (sigma := noise_scale(y)) == 0.0:
        return []  # constant
    y = despike(y, [spike_k * s for s in local_scales(y, sigma)])
    period = guess_period(y) if period is None else period
    if period and period >= 2 and n >= 3 * period:
        y = deseasonalize(y, period)
        sigma = noise_scale(y) or sigma
    series = _Series(y, local_scales(y, sigma), min_segment)
    ratio, cap = min_magnitude_pct / 100.0, 4 * max_window
    chosen = _select(_scan(series, threshold, ratio, min_segment, max_window))
    found = [t for t, _w in chosen]
    found = sorted({_refine(series, found, i, w, min_segment, cap)
                    for i, (_t, w) in enumerate(chosen)})
    while found:
        tests = [_test(series, found, i, cap) for i in range(len(found))]
        failing = [(z, i) for i, (z, before, after) in enumerate(tests)
                   if z < threshold or abs(after - before) < ratio * abs(before)
                   or (i and found[i] - found[i - 1] < min_segment)]
        if not failing:
            return [_point(cp, *test) for cp, test in zip(found, tests, strict=True)]
        del found[min(failing)[1]]
    return []


class _Series:
    """Prefix sums for O(1) means and noise scales of any stretch [lo, hi)."""

    def __init__(self, y: list[float], scales: list[float], prior: int) -> None:
        self.n, self.ref = len(y), _median_sorted(sorted(y))  # y - ref keeps sums precise
        self.sums = _prefix([v - self.ref for v in y])
        self.isums = _prefix([i * (v - self.ref) for i, v in enumerate(y)])
        self.abs_diffs = _prefix([abs(b - a) for a, b in zip(y, y[1:], strict=False)])
        self.scales, self.prior = scales, prior

    def mean(self, lo: int, hi: int) -> float:
        return (self.sums[hi] - self.sums[lo]) / (hi - lo) + self.ref

    def var(self, lo: int, hi: int) -> float:
        """Noise variance inside [lo, hi) from its differences (mean |diff| =
        2 sigma / sqrt(pi)); the local scale counts as ``prior`` of them."""
        prior_sum = self.prior * _MEAN_ABS_DIFF * self.scales[(lo + hi - 1) // 2]
        total = self.abs_diffs[hi - 1] - self.abs_diffs[lo] + prior_sum
        scale = total / (hi - lo - 1 + self.prior) / _MEAN_ABS_DIFF
        return scale * scale


def noise_scale(y: Sequence[float]) -> float:
    """Robust standard deviation of the point-to-point noise."""
    diffs = sorted(b - a for a, b in zip(y, y[1:], strict=False)) or [0.0]
    mid = _median_sorted(diffs)
    spread = sorted(abs(d - mid) for d in diffs)
    mad = _median_sorted(spread)  # else the mean absolute deviation, x sqrt(pi/2)
    return (1.4826 * mad if mad > 0 else 1.2533 * sum(spread) / len(spread)) / math.sqrt(2.0)


def local_scales(y: list[float], floor: float, block: int = 32) -> list[float]:
    """Noise scale at each point: median |difference| of its block of 32 and
    the blocks either side (a median of 3), as a standard deviation; ``floor``
    where that is 0."""
    diffs = [abs(b - a) for a, b in zip(y, y[1:], strict=False)] or [0.0]
    medians = [_median_sorted(sorted(diffs[k:k + block])) for k in range(0, len(diffs), block)]
    smooth = [_median_sorted(sorted(medians[max(0, j - 1):j + 2])) / _MEDIAN_ABS_DIFF or floor
              for j in range(len(medians))]
    last = len(smooth) - 1
    return [smooth[min(i // block, last)] for i in range(len(y))]


def despike(y: list[float], limits: list[float]) -> list[float]:
    """Replace each point further than its limit from its local median by that median."""
    out = y[:]
    for i, v in enumerate(y):
        window = sorted(y[max(0, i - _HAMPEL_HALF):i + _HAMPEL_HALF + 1])
        median = window[len(window) // 2]
        if abs(v - median) > limits[i]:
            out[i] = median
    return out


def deseasonalize(y: list[float], period: int) -> list[float]:
    """Remove the median daily profile (see step 3); the level is kept.
    Multiplicative when every value is positive, additive otherwise."""
    n, half = len(y), period // 2
    first, last = half, n - period + half  # where a whole centred window fits
    trend, window = [0.0] * n, sorted(y[:period])
    for i in range(first, last + 1):
        if i > first:  # slide: drop y[i - half - 1], add y[i - half + period - 1]
            del window[bisect.bisect_left(window, y[i - half - 1])]
            bisect.insort(window, y[i - half + period - 1])
        trend[i] = _median_sorted(window)
    trend = [trend[first]] * first + trend[first:last + 1] + [trend[last]] * (n - last - 1)
    ratio = min(y) > 0
    x = [v / t if ratio else v - t for v, t in zip(y, trend, strict=True)]
    # per phase the median over the cycles, then a circular moving mean over
    # period/24 phases (an hour of a day), which a daily cycle passes unchanged
    medians, half = [_median_sorted(sorted(x[p::period])) for p in range(period)], period // 48
    profile = [sum(medians[(p + k) % period] for k in range(-half, half + 1)) / (2 * half + 1)
               for p in range(period)]
    centre = sum(profile) / period
    # a profile of noise alone varies by about (pi/2) sigma^2 / (cycles * phases averaged)
    chance = math.pi / 2 * noise_scale(x) ** 2 / (n / period * (2 * half + 1))
    if sum((p - centre) ** 2 for p in profile) / period < 4 * chance:
        return y  # no cycle to speak of: subtracting noise would only add it
    if ratio:
        return [v * centre / profile[i % period] for i, v in enumerate(y)]
    return [v - profile[i % period] + centre for i, v in enumerate(y)]


def guess_period(y: list[float], blocks: int = 128) -> int | None:
    """The period of a clear cycle seen at least 3 times, else None: the
    first peak of the autocorrelation of the differenced block means that is
    >= 0.5 and >= 0.8 of the highest one. Differencing drops steps."""
    size = max(1, len(y) // blocks)
    means = [sum(y[k:k + size]) / size for k in range(0, len(y) - size + 1, size)]
    d = [b - a for a, b in zip(means, means[1:], strict=False)]
    m, centre = len(d), sum(d) / max(1, len(d))
    d = [x - centre for x in d]
    var = sum(x * x for x in d) / m if m >= 12 else 0.0
    if var == 0:
        return None
    acf = [sum(map(operator.mul, d, d[lag:])) / (m - lag) / var for lag in range(m // 3 + 2)]
    peaks = [lag for lag in range(2, m // 3 + 1)
             if acf[lag] >= 0.5 and acf[lag - 1] <= acf[lag] >= acf[lag + 1]]
    if not peaks:
        return None
    top = max(acf[lag] for lag in peaks)
    lag = next(lag for lag in peaks if acf[lag] >= 0.8 * top)
    a, b, c = acf[lag - 1], acf[lag], acf[lag + 1]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c else 0.0  # parabola's vertex
    return _refine_period(y, round((lag + shift) * size), size)


def _refine_period(y: list[float], guess: int, size: int) -> int:
    """Coarse to fine, on block means of size/4, /16, ... 1 of the series less
    its centred moving mean: the lag near the last guess whose first multiples
    (at most 8, the same for every lag) best line the series up with itself."""
    n, sums, half = len(y), _prefix(y), guess // 2
    starts = (min(max(0, i - half), n - guess) for i in range(n))
    x = [v - (sums[lo + guess] - sums[lo]) / guess for v, lo in zip(y, starts, strict=False)]
    while size > 1:
        size = max(1, size // 4)
        xb = [sum(x[k:k + size]) / size for k in range(0, n - size + 1, size)]
        m, centre = len(xb), round(guess / size)
        multiples = range(1, min(8, max(1, m // (centre + 4) - 1)) + 1)
        guess = size * max(range(max(2, centre - 4), centre + 5), key=lambda lag: sum(
            sum(map(operator.mul, xb, xb[k * lag:])) / (m - k * lag) for k in multiples))
    return guess


def _scan(series: _Series, threshold: float, ratio: float, min_segment: int,
          max_window: int) -> list[tuple[float, int, int]]:
    """(|z|, index, window) of every position and window over both thresholds."""
    n, sums, ref, found = series.n, series.sums, series.ref, []
    var_left = [series.var(max(0, t - max_window), t) if t else 0.0 for t in range(n)]
    var_right = [series.var(t, min(n, t + max_window)) for t in range(n)]
    w, previous = min_segment, 0
    while w <= max_window:
        best, last = None, -2  # the strongest of each run of neighbouring candidates
        for t in range(min_segment, n - min_segment + 1):
            nl, nr = min(w, t), min(w, n - t)
            if nl == min(previous, t) and nr == min(previous, n - t):
                continue  # the same windows as at the smaller scale
            before = (sums[t] - sums[t - nl]) / nl
            diff = (sums[t + nr] - sums[t]) / nr - before
            z = abs(diff) / math.sqrt(var_left[t] / nl + var_right[t] / nr)
            if z >= threshold and abs(diff) >= ratio * abs(before + ref):
                if best is None or t != last + 1:
                    found += [best] if best else []
                    best = (z, t, w)
                elif z > best[0]:
                    best = (z, t, w)
                last = t
        found += [best] if best else []
        previous, w = w, w * 2
    return found


def _select(candidates: list[tuple[float, int, int]]) -> list[tuple[int, int]]:
    """(index, window), strongest first; drop a candidate whose windows hold an accepted one."""
    accepted: list[int] = []
    windows: dict[int, int] = {}
    for _z, t, w in sorted(candidates, reverse=True):
        i = bisect.bisect_right(accepted, t - w)  # the first accepted one after t - w
        if i == len(accepted) or accepted[i] >= t + w:
            bisect.insort(accepted, t)
            windows[t] = w
    return [(t, windows[t]) for t in accepted]


def _bounds(found: list[int], i: int, n: int, cap: int) -> tuple[int, int]:
    lo = found[i - 1] if i > 0 else 0
    hi = found[i + 1] if i + 1 < len(found) else n
    return max(lo, found[i] - cap), min(hi, found[i] + cap)


def _refine(series: _Series, found: list[int], i: int, reach: int, min_segment: int,
            cap: int) -> int:
    """Move change point i to the best split of its two segments, within its window."""
    lo, hi = _bounds(found, i, series.n, cap)
    sums, best, best_score = series.sums, found[i], -1.0
    for t in range(max(lo + min_segment, found[i] - reach),
                   min(hi - min_segment, found[i] + reach) + 1):
        nl, nr = t - lo, hi - t
        diff = (sums[hi] - sums[t]) / nr - (sums[t] - sums[lo]) / nl
        score = abs(diff) * math.sqrt(nl * nr / (nl + nr))
        if score > best_score:
            best, best_score = t, score
    return best


def _test(series: _Series, found: list[int], i: int, cap: int) -> tuple[float, float, float]:
    """(|z|, mean before, mean after) of change point i against its segments;
    z is 0 if one straight line through both fits nearly as well (a ramp)."""
    (lo, hi), t = _bounds(found, i, series.n, cap), found[i]
    before, after, n = series.mean(lo, t), series.mean(t, hi), hi - lo
    z = abs(after - before) / math.sqrt(series.var(lo, t) / (t - lo) + series.var(t, hi) / (hi - t))
    # the variance explained by the step, and by one line through both segments
    step = (t - lo) * (hi - t) / n * (after - before) ** 2
    isums, sums = series.isums, series.sums
    sxy = isums[hi] - isums[lo] - (lo + hi - 1) / 2 * (sums[hi] - sums[lo])
    line = sxy * sxy / ((n ** 3 - n) / 12)
    return 0.0 if line >= step else z, before, after


def _point(index: int, z: float, before: float, after: float) -> ChangePoint:
    pct = 100.0 * (after - before) / abs(before) if before else math.copysign(math.inf, after)
    return ChangePoint(index=index, direction="up" if after > before else "down",
                       magnitude_pct=pct, before_mean=before, after_mean=after, score=z)


def _prefix(y: Sequence[float]) -> list[float]:
    return list(itertools.accumulate(y, initial=0.0))


def _median_sorted(ordered: Sequence[float]) -> float:
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
