"""Trends of a metric's series: a least-squares line, whether its slope is
told apart from 0, and when it reaches a limit. Pure arithmetic, no I/O.

- **Slope**: ordinary least squares of value on time (hours), so
  ``slope_per_h`` is in the metric's unit per hour.
- **Significance**: the t-test of the slope, with the sample size reduced
  for autocorrelated residuals (``n_eff = n (1 - r1) / (1 + r1)`` for a lag-1
  autocorrelation r1 > 0, as Santer et al. 2000 do for climate trends):
  minute buckets of a metric are rarely independent, and the plain t-test
  would call most wiggles a trend. Degrees of freedom ``n_eff - 2``; the
  two-sided p-value comes from Student's t (regularized incomplete beta).
- **Direction**: ``rising`` or ``falling`` when p < ``ALPHA`` (0.05), with
  ``confidence`` 1 - p; otherwise ``flat``, with ``confidence`` p (how well
  the series fits a slope of 0: 1 for a constant one).
- **ETA**: only when rising towards a limit: ``(limit - last) / slope``, in
  seconds; 0 when the last value is at or past the limit already.
- Fewer than ``MIN_POINTS`` points: no trend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

ALPHA = 0.05
MIN_POINTS = 5
RISING, FALLING, FLAT = "rising", "falling", "flat"


@dataclass(frozen=True)
class Fit:
    slope: float  # per unit of x
    intercept: float
    n: int
    n_eff: float
    t: float  # the slope's t statistic (inf for an exact line)
    p: float  # two-sided p-value of "slope is 0"


@dataclass(frozen=True)
class Trend:
    slope_per_h: float
    direction: str
    confidence: float
    last: float
    limit: float | None = None
    eta_s: float | None = None

    def fields(self) -> dict[str, float | str]:
        """The ``analysis_trend`` fields; ``limit`` and ``eta_s`` only when set."""
        out: dict[str, float | str] = {"slope_per_h": self.slope_per_h,
                                       "direction": self.direction,
                                       "confidence": self.confidence, "last": self.last}
        if self.limit is not None:
            out["limit"] = self.limit
        if self.eta_s is not None:
            out["eta_s"] = self.eta_s
        return out


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    if df <= 0:
        return 1.0
    return incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def least_squares(xs: Sequence[float], ys: Sequence[float]) -> Fit | None:
    """The fitted line and its slope's significance; None under 3 points
    or when every x is the same."""
    n = len(xs)
    if n < 3 or n != len(ys):
        return None
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx <= 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = mean_y - slope * mean_x
    residuals = [y - (intercept + slope * x) for x, y in zip(xs, ys, strict=True)]
    sse = sum(e * e for e in residuals)
    scale = max(abs(mean_y), max(abs(y) for y in ys), 1e-300)
    if sse <= (1e-12 * scale) ** 2 * n:  # an exact line, up to rounding
        exact = slope != 0 and abs(slope) * math.sqrt(sxx / n) > 1e-9 * scale
        return Fit(slope, intercept, n, float(n), math.inf if exact else 0.0,
                   0.0 if exact else 1.0)
    r1 = sum(a * b for a, b in zip(residuals, residuals[1:], strict=False)) / sse
    n_eff = n * (1 - r1) / (1 + r1) if r1 > 0 else float(n)
    df = min(float(n), n_eff) - 2.0
    if df <= 0:
        return Fit(slope, intercept, n, n_eff, 0.0, 1.0)
    t = slope / math.sqrt(sse / df / sxx)
    return Fit(slope, intercept, n, n_eff, t, t_two_sided_p(t, df))


def trend(points: Sequence[tuple[datetime, float]], limit: float | None = None,
          *, alpha: float = ALPHA, min_points: int = MIN_POINTS) -> Trend | None:
    """The trend of ``points`` (time, value), oldest first; None when there
    are too few."""
    if len(points) < max(min_points, 3):
        return None
    origin = points[0][0]
    xs = [(at - origin).total_seconds() / 3600.0 for at, _ in points]
    ys = [float(v) for _, v in points]
    fit = least_squares(xs, ys)
    if fit is None:
        return None
    last = ys[-1]
    if fit.p < alpha:
        direction = RISING if fit.slope > 0 else FALLING
        confidence = 1.0 - fit.p
    else:
        direction, confidence = FLAT, fit.p
    eta_s = None
    if limit is not None and direction == RISING:
        eta_s = max(0.0, (limit - last) / fit.slope * 3600.0)
    return Trend(fit.slope, direction, min(1.0, max(0.0, confidence)), last,
                 None if limit is None else float(limit), eta_s)
