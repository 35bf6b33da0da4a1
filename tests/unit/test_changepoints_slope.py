"""The slope test of the change-point detector: a trend that bends at one
point and goes on straight is a change (``kind="slope"``); a smooth curve,
a drift or the crest of a slow cycle is not; the broken-line p-value is
calibrated."""

import functools
import math
import random

import pytest

from service.domain import changepoint_slope
from service.domain.changepoint_fit import bend, polyfit
from service.domain.changepoint_slope import hinge_splits, tube_p_value
from service.domain.changepoints import detect


def kinked(n, at, before, after, seed, cv=0.01):
    """Around 100, rising ``before`` per point, then ``after`` from ``at`` on;
    Gaussian noise of ``cv`` of the level."""
    rng, out, level = random.Random(seed), [], 100.0
    for i in range(n):
        level += before if i < at else after
        out.append(level * (1 + cv * rng.gauss(0, 1)))
    return out


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("before", "after"), [(0.0, 0.4), (0.5, 0.0), (0.3, -0.3)])
def test_a_trend_that_bends_is_a_slope_change_at_the_bend(seed, before, after):
    found = detect(kinked(300, 150, before, after, seed))
    assert [p.kind for p in found] == ["slope"]
    [point] = found
    assert abs(point.index - 150) <= 5
    assert point.direction == ("up" if after > before else "down")
    assert point.confidence >= 0.9999
    assert point.magnitude_pct == pytest.approx(
        100 * (point.after_mean - point.before_mean) / abs(point.before_mean))


def test_without_the_slope_test_a_bend_is_not_found():
    values = kinked(300, 150, 0.0, 0.4, 0)
    assert detect(values, slope_threshold=0) == []
    assert detect(values) != []  # so that the test above can fail


def _curves(seed):
    rng = random.Random(seed)
    noise = [rng.gauss(0, 1) for _ in range(400)]
    return {
        "parabola": [100 + 40 * (i / 400) ** 2 + e for i, e in enumerate(noise)],
        "exponential growth": [100 * math.exp(i / 200) + e for i, e in enumerate(noise)],
        "slow sine, 0.6 of a cycle": [100 + 15 * math.sin(2 * math.pi * i / 667) + e
                                      for i, e in enumerate(noise)],
        "straight drift": [100 + 0.1 * i + e for i, e in enumerate(noise)],
    }


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", ["parabola", "exponential growth",
                                   "slow sine, 0.6 of a cycle", "straight drift"])
def test_a_smooth_curve_or_drift_is_no_slope_change(shape, seed):
    # (as steep growth raises |first differences|, the variance test may see it)
    assert [p for p in detect(_curves(seed)[shape]) if p.kind != "variance"] == []


@pytest.mark.parametrize("shape", ["parabola", "exponential growth", "slow sine, 0.6 of a cycle"])
def test_the_parabola_is_what_keeps_a_curve_from_being_kinks(shape, monkeypatch):
    # the hinge judged against a straight line instead: a turning slope is taken for kinks
    monkeypatch.setattr(changepoint_slope, "bend", functools.partial(bend, degree=1))
    assert any(p.kind == "slope" for p in detect(_curves(0)[shape]))


def test_the_broken_line_p_value_is_calibrated_on_straight_lines():
    rng, alarms, trials = random.Random(7), 0, 300
    for _ in range(trials):
        values = [0.02 * i + rng.gauss(0, 1) for i in range(120)]
        alarms += bool(hinge_splits(values, [0, 120], lambda _a, _b: 1.0, 0.05, 6))
    assert 0.01 <= alarms / trials <= 0.08  # the tube formula: conservative, not by much


def test_the_tube_p_value_falls_with_the_statistic_and_rises_with_the_length():
    assert tube_p_value(4.0, 10.0) < tube_p_value(3.0, 10.0) < 1.0
    assert tube_p_value(3.0, 2.0) < tube_p_value(3.0, 10.0)
    assert tube_p_value(3.0, 0.0) == pytest.approx(math.erfc(3.0 / math.sqrt(2)))


def test_a_bend_fit_gives_the_vertex_value_the_slope_and_its_change():
    seg = [5.0 + 0.5 * x + 0.01 * x * x + 0.3 * max(0, x - 12) for x in range(30)]
    fit = bend(seg, 12)
    assert fit.value == pytest.approx(seg[12])
    assert fit.slope == pytest.approx(0.5 + 0.02 * 12)
    assert fit.change == pytest.approx(0.3)
    assert fit.z > 0
    smooth = bend([5.0 + 0.5 * x + 0.01 * x * x for x in range(30)], 12)
    assert smooth.change == pytest.approx(0.0, abs=1e-9)
    assert bend(seg[:7], 3) is None
    assert polyfit([3.0 - 0.25 * x for x in range(10)], 0.0, 1).value == pytest.approx(3.0)
