"""The shape of a series that is not a change: noise scale, spikes, cycles.
Pure Python, no I/O; used by ``service.domain.changepoints``.

- ``noise_scale``: a robust standard deviation from the first differences,
  which cancel the level (1.4826 MAD / sqrt(2)).
- ``ar1``: the lag-1 autocorrelation phi of the noise, robustly from the
  differences (for AR(1) noise the differences have lag-1 correlation
  -(1 - phi) / 2), so that sums can be judged against the long-run variance.
- ``huberize``: each point clipped to ``k`` local noise scales around the
  median of the 7 points around it. A spike or a burst of up to 3 points
  is pulled in; a step, which moves the median, stays.
- ``guess_periods``: the cycles seen at least twice, from the
  autocorrelation of differenced block means at block sizes 1, 4, 16 and 64
  (periods of 8 to 4,096 points), strongest first, each removed before the
  next is looked for; ``deseasonalize`` divides (or subtracts) the median
  profile per phase, unless it is no stronger than noise would make it.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections.abc import Sequence

_HALF = 3  # the median filter looks at 3 points each side
_MEDIAN_ABS_DIFF = 0.6745 * math.sqrt(2.0)  # median |x1 - x2| / sigma
_MIN_LAG, _MAX_LAG = 8, 64  # lags, in blocks, searched at each block size
_BLOCKS = (1, 4, 16, 64)
_PENALTY = 4.0  # see guess_period


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def mad(values: Sequence[float]) -> float:
    centre = median(values)
    return median([abs(v - centre) for v in values])


def noise_scale(y: Sequence[float]) -> float:
    """Robust standard deviation of the point-to-point noise."""
    diffs = [b - a for a, b in zip(y, y[1:], strict=False)] or [0.0]
    spread = mad(diffs)
    if spread == 0:  # mostly flat: the mean absolute deviation instead
        centre = median(diffs)
        return 1.2533 * sum(abs(d - centre) for d in diffs) / len(diffs) / math.sqrt(2.0)
    return 1.4826 * spread / math.sqrt(2.0)


def ar1(y: Sequence[float], limit: float = 0.9) -> float:
    """Robust lag-1 autocorrelation of the noise in [0, limit] (see the docstring)."""
    d = [b - a for a, b in zip(y, y[1:], strict=False)]
    if len(d) < 8:
        return 0.0
    plus = mad([u + v for u, v in zip(d, d[1:], strict=False)]) ** 2
    minus = mad([u - v for u, v in zip(d, d[1:], strict=False)]) ** 2
    if plus + minus == 0:
        return 0.0
    rho = (plus - minus) / (plus + minus)
    return min(limit, max(0.0, 1.0 + 2.0 * rho))


def local_scales(y: list[float], floor: float, block: int = 32) -> list[float]:
    """Noise scale at each point: median |difference| of its block of 32 and
    the blocks either side (a median of 3); ``floor`` where that is 0."""
    diffs = [abs(b - a) for a, b in zip(y, y[1:], strict=False)] or [0.0]
    medians = [median(diffs[k:k + block]) for k in range(0, len(diffs), block)]
    smooth = [median(medians[max(0, j - 1):j + 2]) / _MEDIAN_ABS_DIFF or floor
              for j in range(len(medians))]
    last = len(smooth) - 1
    return [max(floor * 0.25, smooth[min(i // block, last)]) for i in range(len(y))]


def huberize(y: list[float], limits: list[float]) -> list[float]:
    """Clip each point to its limit around the median of the 7 points around it."""
    out = y[:]
    for i, v in enumerate(y):
        centre = median(y[max(0, i - _HALF):i + _HALF + 1])
        out[i] = min(centre + limits[i], max(centre - limits[i], v))
    return out


def guess_periods(y: list[float], most: int = 3) -> tuple[list[float], list[int]]:
    """(the series with each cycle found divided out, the periods found)."""
    found: list[int] = []
    for _ in range(most):
        period = guess_period(y, exclude=found)
        if period is None:
            break
        cleaned = deseasonalize(y, period)
        if cleaned is y:
            break
        y = cleaned
        found.append(period)
    return y, found


def guess_period(y: list[float], exclude: Sequence[int] = ()) -> int | None:
    """The period of the strongest cycle seen at least twice, else None.
    Candidates: the peaks of the autocorrelation of differenced block means
    at each block size, and their whole fractions; the winner explains the
    most variance with its per-phase profile, less a penalty of ``_PENALTY``
    times what noise alone would explain with as many phases (so that 2P,
    which explains what P does, loses to P)."""
    n, candidates = len(y), set()
    for size in _BLOCKS:
        means = [sum(y[k:k + size]) / size for k in range(0, n - size + 1, size)]
        d = [b - a for a, b in zip(means, means[1:], strict=False)]
        m = len(d)
        top = min(_MAX_LAG, m // 2 - 1)
        if top < _MIN_LAG:
            break
        centre = sum(d) / m
        d = [x - centre for x in d]
        var = sum(x * x for x in d) / m
        if var == 0:
            continue
        acf = [sum(map(operator.mul, d, d[lag:])) / (m - lag) / var if lag >= _MIN_LAG - 1
               else 0.0 for lag in range(top + 2)]
        floor = max(0.2, 2.5 / math.sqrt(m))
        for lag in range(_MIN_LAG, top + 1):
            a, b, c = acf[lag - 1], acf[lag], acf[lag + 1]
            if b >= floor and a <= b >= c:
                shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c else 0.0
                candidates |= {round((lag + shift) * size / k) for k in range(1, 7)}
    candidates = {p for p in candidates if _MIN_LAG <= p and 2 * p <= n
                  and not any(_near_multiple(p, q, 1) for q in exclude)}
    if not candidates:
        return None
    noise = noise_scale(y) ** 2 / (1 - ar1(y))  # the points' variance, not the differences'
    score, period = max((_profile_gain(y, p, noise), p) for p in candidates)
    if score <= 0:
        return None
    period = _refine_period(y, period, max(1, period // 16))
    return period if 2 * period <= n else None


def _profile_gain(y: list[float], period: int, noise: float) -> float:
    """Variance explained by the per-phase means of y less its centred moving
    mean over one period, less the penalty (see ``guess_period``)."""
    n, sums, half = len(y), list(itertools.accumulate(y, initial=0.0)), period // 2
    total, count = [0.0] * period, [0] * period
    for i in range(half, n - period + half + 1):
        lo = i - half
        x = y[i] - (sums[lo + period] - sums[lo]) / period
        total[i % period] += x
        count[i % period] += 1
    used = sum(count)
    if 2 * used < 3 * period or min(count) == 0:
        return -1.0
    explained = sum(t * t / c for t, c in zip(total, count, strict=True)) / used
    return explained - _PENALTY * noise * period / used


def _near_multiple(lag: int, period: int, slack: int) -> bool:
    """Whether ``lag`` is within ``slack`` (or 5 %) of a whole multiple of ``period``."""
    k = max(1, round(lag / period))
    return abs(lag - k * period) <= max(slack, k * period // 20)


def _refine_period(y: list[float], guess: int, size: int) -> int:
    """Coarse to fine, on block means of size/4, /16, ... 1 of the series less
    its centred moving mean: the lag near the last guess whose first multiples
    best line the series up with itself."""
    n, sums, half = len(y), list(itertools.accumulate(y, initial=0.0)), guess // 2
    starts = (min(max(0, i - half), n - guess) for i in range(n))
    x = [v - (sums[lo + guess] - sums[lo]) / guess for v, lo in zip(y, starts, strict=False)]
    while size > 1:
        size = max(1, size // 4)
        xb = [sum(x[k:k + size]) / size for k in range(0, n - size + 1, size)]
        m, centre = len(xb), round(guess / size)
        multiples = range(1, min(8, max(1, m // (centre + 4) - 1)) + 1)
        lags = [lag for lag in range(max(2, centre - 4), centre + 5) if lag < m]
        guess = size * max(lags, key=lambda lag: sum(
            sum(map(operator.mul, xb, xb[k * lag:])) / max(1, m - k * lag) for k in multiples))
    return guess


def deseasonalize(y: list[float], period: int) -> list[float]:
    """Remove the median profile per phase (the level is kept): divided out
    when every value is positive, subtracted otherwise. Returns ``y`` itself
    when the profile is no stronger than noise alone would make it."""
    n, half = len(y), period // 2
    if period < 2 or n < 2 * period:
        return y
    first, last = half, n - period + half  # where a whole centred window fits
    trend, window = [0.0] * n, sorted(y[:period])
    for i in range(first, last + 1):
        if i > first:  # slide: drop y[i - half - 1], add y[i - half + period - 1]
            del window[bisect.bisect_left(window, y[i - half - 1])]
            bisect.insort(window, y[i - half + period - 1])
        mid = len(window) // 2
        trend[i] = window[mid] if len(window) % 2 else (window[mid - 1] + window[mid]) / 2
    trend = [trend[first]] * first + trend[first:last + 1] + [trend[last]] * (n - last - 1)
    ratio = min(y) > 0
    x = [v / t if ratio else v - t for v, t in zip(y, trend, strict=True)]
    smooth = period // 48  # a circular mean over period/24 phases (an hour of a day)
    medians = [median(x[p::period]) for p in range(period)]
    profile = [sum(medians[(p + k) % period] for k in range(-smooth, smooth + 1))
               / (2 * smooth + 1) for p in range(period)]
    centre = sum(profile) / period
    # a profile of noise alone varies by about (pi/2) sigma^2 / (cycles * phases averaged)
    chance = math.pi / 2 * noise_scale(x) ** 2 / (n / period * (2 * smooth + 1))
    if sum((p - centre) ** 2 for p in profile) / period < 4 * chance:
        return y
    if ratio:
        return [v * centre / profile[i % period] for i, v in enumerate(y)]
    return [v - profile[i % period] + centre for i, v in enumerate(y)]
