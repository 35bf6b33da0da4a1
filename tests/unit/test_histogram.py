import math

from hypothesis import given
from hypothesis import strategies as st

from service.domain.histogram import GROWTH, Histogram

latencies = st.lists(st.floats(min_value=0.0, max_value=1e6, allow_nan=False), min_size=1,
                     max_size=300)


def true_percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@given(latencies, st.sampled_from([0.5, 0.95, 0.99, 1.0]))
def test_percentiles_are_within_the_bucket_growth(values, q):
    histogram = Histogram()
    histogram.extend(values)
    truth = true_percentile(values, q)
    assert histogram.count == len(values)
    assert histogram.max == max(values)
    assert truth <= histogram.percentile(q) <= max(truth * GROWTH, 0.001 * GROWTH) * 1.000001


@given(latencies, st.integers(min_value=1, max_value=16))
def test_a_weighted_value_stands_for_the_ones_not_observed(values, weight):
    weighted, repeated = Histogram(), Histogram()
    weighted.extend(values, weight)
    for _ in range(weight):
        repeated.extend(values)
    assert weighted.count == repeated.count == len(values) * weight
    assert weighted.buckets == repeated.buckets
    assert weighted.percentile(0.5) == repeated.percentile(0.5)
