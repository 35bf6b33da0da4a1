"""Changes of slope (kinks): where a trend bends at one point and goes on
straight, without a step. Pure Python, no I/O; used by
``service.domain.changepoints`` (step 6 of its docstring).

- ``hinge_splits``: binary segmentation with the broken-line statistic. In
  a stretch of n points, for each vertex k the coefficient of the hinge
  (x - k)_+ added to a straight line, over its standard error; the noise
  scale is the larger of the long-run scale and the residual scale of the
  best broken line (a stretch that no broken line fits well is not judged
  against its point-to-point noise alone). The statistic is smooth in k,
  so the p-value of its maximum is the tube (Hotelling-Weyl, Rice) formula
  p = 2 (1 - Phi(b)) + (L / pi) exp(-b^2 / 2), L the length of the curve
  the standardized hinge regressors trace on the sphere, summed exactly
  (conservative for discrete data). Sums of arithmetic sequences give every
  inner product in O(1): a stretch costs O(n).
- ``slope_changes``: a kink found so is kept only if the hinge is still
  ``threshold`` standard errors or more with a parabola through the window
  around the vertex (at most ``max_window`` points each side, within the
  neighbouring splits) instead of the line: a smooth curve, a drift or the
  crest of a slow cycle turns gradually, which a parabola follows and a
  hinge does not add to; and only if the new slope takes the level at
  least ``min_magnitude_pct`` away from where the old slope would have put
  it by the end of that window.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from service.domain.changepoint_fit import bend


def tube_p_value(stat: float, length: float) -> float:
    """P(max |Z_k| >= stat) for a smooth unit-variance Gaussian process whose
    standardized regressors trace a curve of ``length`` on the sphere."""
    return min(1.0, math.erfc(stat / math.sqrt(2)) + length / math.pi * math.exp(-stat * stat / 2))


def _hinge(y: list[float], a: int, b: int, m: int) -> tuple[int, float, float, float]:
    """(vertex, |hinge coefficient| / its standard error x sigma, curve
    length, residual scale of the best broken line) in [a, b), each vertex
    with at least m points on each side (the vertex counted on the left)."""
    n, y = b - a, y[a:b]
    c, sxx, sy = (n - 1) / 2, n * (n * n - 1) / 12, sum(y)
    sxy = sum((i - c) * v for i, v in enumerate(y))
    s0, s1 = [0.0] * (n + 1), [0.0] * (n + 1)  # suffix sums of y and of i y
    for i in range(n - 1, -1, -1):
        s0[i], s1[i] = s0[i + 1] + y[i], s1[i + 1] + i * y[i]
    best, best_k, length, prev = -1.0, a, 0.0, None
    for k in range(m - 1, n - m):
        q = n - k  # the hinge is 0, 1, .., q - 1 from the vertex on
        sj, sjj = q * (q - 1) / 2, (q - 1) * q * (2 * q - 1) / 6
        e0, e1 = sj / math.sqrt(n), (k * sj + sjj - c * sj) / math.sqrt(sxx)
        norm2 = sjj - e0 * e0 - e1 * e1  # of the hinge less its projection on the line
        if norm2 <= 0:
            continue
        hy = s1[k] - k * s0[k] - e0 * sy / math.sqrt(n) - e1 * sxy / math.sqrt(sxx)
        if abs(hy) / math.sqrt(norm2) > best:
            best, best_k = abs(hy) / math.sqrt(norm2), a + k
        if prev is not None:  # <h_j, h_k> = sum over x >= k of (x - j)(x - k)
            j, pe0, pe1, pnorm2 = prev
            cross = sjj + (k - j) * sj - pe0 * e0 - pe1 * e1
            length += math.sqrt(max(0.0, 2.0 - 2.0 * cross / math.sqrt(pnorm2 * norm2)))
        prev = (k, e0, e1, norm2)
    syy = sum(v * v for v in y) - sy * sy / n
    rss = max(0.0, syy - sxy * sxy / sxx - max(best, 0.0) ** 2)
    return best_k, best, length, math.sqrt(rss / (n - 3))


def hinge_splits(y: list[float], cuts: list[int], scale: Callable[[int, int], float],
                 alpha: float, m: int) -> list[tuple[int, float, float]]:
    """(vertex, statistic, p-value) of each kink found by binary segmentation
    within each stretch between ``cuts``, its p-value below ``alpha``."""
    out, stack = [], list(zip(cuts, cuts[1:], strict=False))
    while stack:
        a, b = stack.pop()
        if b - a < 2 * m + 1:
            continue
        k, stat, length, residual = _hinge(y, a, b, m)
        sd = max(scale(a, b), residual)
        if stat < 0 or sd <= 0:
            continue
        p = tube_p_value(stat / sd, length)
        if p < alpha:
            out.append((k, stat / sd, p))
            stack += [(a, k + 1), (k, b)]  # the vertex ends one line and starts the next
    return sorted(out)


def slope_changes(y: list[float], levels: list[int], scale: Callable[[int, int], float],
                  alpha: float, threshold: float, ratio: float, m: int, window: int,
                  ) -> list[tuple[int, float, float, float, float]]:
    """(first index of the new slope, statistic, p-value, where the old slope
    would have put the level and where the new one puts it at the end of the
    window after the vertex) of each kink between the level changes
    ``levels`` (see the module docstring)."""
    cuts = [0, *levels, len(y)]
    splits = hinge_splits(y, cuts, scale, alpha, m)
    bounds = sorted({*cuts, *(k for k, _s, _p in splits)})
    out = []
    for k, stat, p in splits:
        at = bounds.index(k)
        lo, hi = max(bounds[at - 1], k - window), min(bounds[at + 1], k + 1 + window)
        fit, sd = bend(y[lo:hi], k - lo), scale(lo, hi)
        if fit is None or sd <= 0 or abs(fit.z) < threshold * sd:
            continue
        span = hi - 1 - k
        old = fit.value + fit.slope * span
        new = old + fit.change * span
        if abs(new - old) >= ratio * abs(old):
            out.append((k + 1, stat, p, old, new))
    return out
