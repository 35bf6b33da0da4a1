"""The TCPD F1 of the changepoints benchmark, on hand-worked examples, and
the cycle guesser the detector relies on."""

import math
import random

import pytest

from bench.changepoints_tcpd import f1, load, true_positives
from service.domain.changepoint_shape import ar1, guess_periods


def test_a_prediction_within_the_margin_counts_and_point_0_is_added():
    # annotators {0, 10} and {0, 10, 50}; predictions {0, 11}
    # precision: 2 of 2 against the union {0, 10, 50}; recall: (2/2 + 2/3) / 2 = 5/6
    assert f1([[10], [10, 50]], [11]) == pytest.approx(2 * 1 * 5 / 6 / (1 + 5 / 6))


def test_no_prediction_scores_the_point_0_alone():
    # precision 1/1; recall (1/2 + 1/1) / 2 = 3/4
    assert f1([[30], []], []) == pytest.approx(2 * 0.75 / 1.75)


def test_a_prediction_outside_the_margin_is_a_false_positive():
    # predictions {0, 16}: 16 is 6 from 10. precision 1/2, recall 1/2
    assert f1([[10]], [16]) == pytest.approx(0.5)
    assert f1([[10]], [15]) == pytest.approx(1.0)


def test_each_prediction_matches_one_true_point_and_the_nearest_wins():
    assert true_positives({10, 12}, {11}) == 1
    assert true_positives({10, 12}, {11, 13}) == 2
    # point 0 is matched by the prediction 0, so 3 is left over: precision 1/2
    assert f1([[]], [3]) == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_the_vendored_series_are_all_there():
    series = load()
    assert len(series) == 31
    assert all(len(annotators) == 5 for _v, annotators in series.values())
    assert len(series["nile"][0]) == 100


@pytest.mark.parametrize(("periods", "n"), [((8,), 400), ((24,), 600), ((60,), 480),
                                            ((24, 288), 2000)])
def test_cycles_are_guessed(periods, n):
    rng = random.Random(1)
    values = [100 * math.prod(1 + 0.15 * math.sin(2 * math.pi * i / p) for p in periods)
              * (1 + 0.05 * rng.gauss(0, 1)) for i in range(n)]
    _cleaned, found = guess_periods(values)
    assert sorted(found) == sorted(periods)


def test_noise_and_a_drift_have_no_cycle():
    rng = random.Random(2)
    values = [100 + 0.01 * i + 5 * rng.gauss(0, 1) for i in range(1000)]
    assert guess_periods(values)[1] == []


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.7])
def test_the_noise_correlation_is_estimated_through_steps(phi):
    rng, prev, values = random.Random(3), 0.0, []
    for i in range(4000):
        prev = phi * prev + rng.gauss(0, 1)
        values.append(prev + (20 if i >= 2000 else 0))
    assert ar1(values) == pytest.approx(phi, abs=0.08)
