"""The change-point detector: it finds a 10 % step in latency-like noise
within a few points, and stays quiet on noise, daily cycles and spikes."""

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.changepoints import ChangePoint, detect, guess_period

DAY = 288  # 5-minute points


def latency(n, cv, seed, steps=(), level=100.0, cycle=0.0, spikes=0):
    """Lognormal noise of coefficient of variation ``cv`` around ``level``;
    ``steps`` are (index, factor); ``cycle`` a multiplicative daily swing."""
    rng = random.Random(seed)
    s = math.sqrt(math.log(1 + cv * cv))
    out = []
    for i in range(n):
        value = level * rng.lognormvariate(-s * s / 2, s)
        for at, factor in steps:
            if i >= at:
                value *= factor
        out.append(value * (1 + cycle * math.sin(2 * math.pi * i / DAY)))
    for i in random.Random(seed + 1).sample(range(5, n - 5), spikes):
        out[i] *= 5
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("cv", "factor"), [(0.05, 1.1), (0.05, 0.9), (0.10, 1.1), (0.10, 0.9)])
def test_a_10pct_step_is_found_near_its_index_with_its_direction_and_size(seed, cv, factor):
    found = detect(latency(800, cv, seed, steps=[(400, factor)]))
    assert len(found) == 1, found
    point = found[0]
    assert abs(point.index - 400) <= (5 if cv == 0.05 else 15)
    assert point.direction == ("up" if factor > 1 else "down")
    assert point.magnitude_pct == pytest.approx((factor - 1) * 100, abs=3.5)
    assert point.after_mean / point.before_mean == pytest.approx(factor, abs=0.035)


@pytest.mark.parametrize("seed", range(8))
def test_a_10pct_step_shows_a_few_points_after_it_happened(seed):
    values = latency(500, 0.05, seed, steps=[(480, 1.1)])  # 20 points of the new level
    [point] = detect(values)
    assert point.direction == "up"
    assert abs(point.index - 480) <= 3


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("cv", [0.05, 0.10, 0.15])
def test_plain_noise_raises_no_alarm(seed, cv):
    assert detect(latency(2000, cv, seed)) == []


@pytest.mark.parametrize("seed", range(5))
def test_a_daily_cycle_raises_no_alarm_when_its_period_is_given(seed):
    values = latency(7 * DAY, 0.10, seed, cycle=0.35)
    assert detect(values, period=DAY) == []
    assert len(detect(values, period=0)) > 5  # the cycle alone would alarm


@pytest.mark.parametrize("seed", range(3))
def test_without_a_period_the_cycle_is_guessed(seed):
    values = latency(7 * DAY, 0.10, seed, cycle=0.35)
    assert abs(guess_period(values) - DAY) <= 2
    assert detect(values) == []


def test_noise_has_no_period():
    assert guess_period(latency(2000, 0.1, 3)) is None


def test_a_cycle_around_zero_is_removed_additively():
    values = [v - 100 for v in latency(7 * DAY, 0.10, 4, cycle=0.35)]
    assert min(values) < 0 < max(values)
    assert detect(values, period=DAY, min_magnitude_pct=0) == []


@pytest.mark.parametrize("seed", range(4))
def test_a_step_on_a_daily_cycle_is_found(seed):
    values = latency(7 * DAY, 0.10, seed, cycle=0.35, steps=[(1000, 1.2)])
    found = detect(values, period=DAY)
    assert [p.direction for p in found] == ["up"]
    assert abs(found[0].index - 1000) <= 5


@pytest.mark.parametrize("seed", range(5))
def test_single_spikes_raise_no_alarm(seed):
    values = latency(2000, 0.10, seed, spikes=12)
    assert max(values) > 300
    assert detect(values) == []


def test_a_short_burst_is_not_a_new_level():
    values = latency(600, 0.05, 9)
    for i in range(300, 304):
        values[i] *= 1.5
    assert detect(values) == []


def test_the_minimum_magnitude_filters_small_steps():
    values = latency(1000, 0.02, 5, steps=[(500, 1.04)])
    assert [p.index for p in detect(values, min_magnitude_pct=2)] == [500]
    assert detect(values) == []  # 4 % < the default 5 %


def test_a_point_carries_its_means():
    values = [100.0] * 50 + [150.0] * 50
    assert detect(values) == [ChangePoint(index=50, direction="up", magnitude_pct=50.0,
                                          before_mean=100.0, after_mean=150.0,
                                          score=detect(values)[0].score)]


def test_a_rise_from_zero_is_infinite():
    [point] = detect([0.0] * 40 + [5.0] * 40)
    assert (point.index, point.magnitude_pct) == (40, math.inf)


@pytest.mark.parametrize("values", [[], [1.0], [1.0, 2.0] * 5])
def test_too_short_a_series_has_no_change_points(values):
    assert detect(values) == []


@pytest.mark.parametrize(("values", "options"), [
    ([1.0, math.nan] * 20, {}),
    ([1.0, math.inf] * 20, {}),
    ([1.0] * 40, {"period": -1}),
    ([1.0] * 40, {"min_segment": 10, "max_window": 8}),
    ([1.0] * 40, {"threshold": 0}),
])
def test_bad_arguments_are_refused(values, options):
    with pytest.raises(ValueError):
        detect(values, **options)


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
       st.integers(min_value=0, max_value=3 * DAY + 10),
       st.sampled_from([None, 0, 24, DAY]))
def test_a_constant_series_has_no_change_points(value, n, period):
    assert detect([value] * n, period=period) == []


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.sampled_from([0.05, 0.10, 0.15]),
       st.sampled_from([1.0, 0.8, 1.1, 1.5]), st.floats(min_value=1e-3, max_value=1e4),
       st.floats(min_value=-1e4, max_value=1e4))
def test_shifting_and_scaling_does_not_move_the_change_points(seed, cv, factor, scale, shift):
    values = latency(600, cv, seed, steps=[(300, factor)], spikes=3)
    indices = [p.index for p in detect(values, period=0, min_magnitude_pct=0)]
    moved = [scale * v + shift for v in values]
    assert [p.index for p in detect(moved, period=0, min_magnitude_pct=0)] == indices
    scaled = [scale * v for v in values]  # a relative threshold and a guessed cycle scale too
    assert [p.index for p in detect(scaled)] == [p.index for p in detect(values)]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rise", [0.3, -0.2])
def test_a_steady_trend_is_not_a_staircase_of_steps(seed, rise):
    values = [v * (1 + rise * i / 500) for i, v in enumerate(latency(500, 0.05, seed))]
    assert detect(values) == []


def test_a_step_on_a_trend_is_still_found():
    stepped = latency(800, 0.05, 2, steps=[(400, 1.2)])
    values = [v * (1 + 0.2 * i / 800) for i, v in enumerate(stepped)]
    [point] = detect(values)
    assert (abs(point.index - 400) <= 2, point.direction) == (True, "up")
