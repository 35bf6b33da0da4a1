"""Least-squares polynomials through a stretch of a series: with the
standard error of their value at a point (``polyfit``), and with a change
of slope at a vertex (``bend``). Pure Python, no I/O;
used by ``service.domain.changepoints`` and ``changepoint_slope``."""

from __future__ import annotations

import operator
from dataclasses import dataclass


@dataclass(frozen=True)
class Fit:
    value: float  # of the polynomial at x0
    value_var: float  # its variance / sigma^2
    top_z: float  # the highest coefficient / (its standard error / sigma)


def polyfit(seg: list[float], x0: float, degree: int) -> Fit | None:
    """The least-squares polynomial of ``degree`` through seg (at abscissae
    0, 1, ..), at x0; None when seg has fewer than 2 (degree + 1) points."""
    w, k = len(seg), degree + 1
    if w < 2 * k:
        return None
    c = (w - 1) / 2  # centred and scaled abscissae keep the normal equations well conditioned
    xs = [(i - c) / w for i in range(w)]
    moments = [sum(x ** j for x in xs) for j in range(2 * k - 1)]
    a = [[moments[i + j] for j in range(k)] for i in range(k)]
    b = [sum(v * x ** i for x, v in zip(xs, seg, strict=True)) for i in range(k)]
    inverse = _inverse(a)
    if inverse is None:
        return None
    coef = [sum(inverse[i][j] * b[j] for j in range(k)) for i in range(k)]
    u = (x0 - c) / w
    at = [u ** j for j in range(k)]
    var = sum(at[i] * inverse[i][j] * at[j] for i in range(k) for j in range(k))
    return Fit(value=sum(ci * ai for ci, ai in zip(coef, at, strict=True)), value_var=var,
               top_z=coef[-1] / inverse[-1][-1] ** 0.5)


def _inverse(a: list[list[float]]) -> list[list[float]] | None:
    """Gauss-Jordan inverse of a small symmetric positive matrix."""
    k = len(a)
    m = [row[:] + [1.0 if i == j else 0.0 for j in range(k)] for i, row in enumerate(a)]
    for col in range(k):
        pivot = max(range(col, k), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-12:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        div = m[col][col]
        m[col] = [v / div for v in m[col]]
        for r in range(k):
            if r != col and m[r][col]:
                f = m[r][col]
                m[r] = [v - f * p for v, p in zip(m[r], m[col], strict=True)]
    return [row[k:] for row in m]


@dataclass(frozen=True)
class Bend:
    z: float  # the hinge's coefficient / (its standard error / sigma)
    value: float  # of the fit at the vertex
    slope: float  # of the fit just before the vertex, per point
    change: float  # the hinge's coefficient: the change of slope at the vertex, per point


def bend(seg: list[float], k: int, degree: int = 2) -> Bend | None:
    """Least squares of seg on a polynomial of ``degree`` plus the hinge
    (x - k)_+, a change of slope at the vertex k that the polynomial cannot
    follow; None when seg is too short or k not inside it."""
    w, p = len(seg), degree + 2
    if w < 2 * p or not 0 < k < w - 1:
        return None
    c = (w - 1) / 2  # centred and scaled abscissae, as in polyfit
    xs = [(i - c) / w for i in range(w)]
    cols = [[x ** j for x in xs] for j in range(degree + 1)]
    cols.append([max(0, i - k) / w for i in range(w)])
    inverse = _inverse([[sum(map(operator.mul, u, v)) for v in cols] for u in cols])
    if inverse is None:
        return None
    b = [sum(map(operator.mul, u, seg)) for u in cols]
    coef = [sum(inverse[i][j] * b[j] for j in range(p)) for i in range(p)]
    u = (k - c) / w
    return Bend(z=coef[-1] / inverse[-1][-1] ** 0.5,
                value=sum(coef[j] * u ** j for j in range(degree + 1)),
                slope=sum(j * coef[j] * u ** (j - 1) for j in range(1, degree + 1)) / w,
                change=coef[-1] / w)
