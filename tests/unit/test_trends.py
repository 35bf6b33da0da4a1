"""The trend maths (domain.trends) on series whose answer is known, and the
trends job over an in-memory series."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from service.domain.measurements import ANALYSIS_METRICS, CATALOGUE
from service.domain.trends import least_squares, t_two_sided_p, trend
from service.service_layer.trend_job import WINDOWS, run_trends, trend_limits
from tests.support.fake_metrics import InMemoryMetricSeries, RecordingPointWriter

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def minutes(values, start=T0):
    return [(start + timedelta(minutes=i), float(v)) for i, v in enumerate(values)]


def ar1(seed, n, phi, sigma=1.0):
    rng, x, out = random.Random(seed), 0.0, []
    for _ in range(n):
        x = phi * x + rng.gauss(0, sigma)
        out.append(100.0 + x)
    return out


@pytest.mark.parametrize(("t", "df", "p"), [
    (12.706, 1, 0.05), (2.228, 10, 0.05), (1.96, 1e6, 0.05), (2.576, 1e6, 0.01),
    (0.0, 5, 1.0), (1.0, 1, 0.5)])
def test_student_t_p_values_match_the_tables(t, df, p):
    assert t_two_sided_p(t, df) == pytest.approx(p, abs=2e-4)
    assert t_two_sided_p(-t, df) == pytest.approx(p, abs=2e-4)


def test_an_exact_rising_line_has_its_slope_per_hour_and_full_confidence():
    found = trend(minutes(5 + 2 * i / 60 for i in range(60)))  # +2 per hour
    assert found.slope_per_h == pytest.approx(2.0)
    assert (found.direction, found.confidence) == ("rising", 1.0)
    assert found.last == pytest.approx(5 + 2 * 59 / 60)


def test_a_noisy_falling_line_is_falling_with_about_its_slope():
    rng = random.Random(7)
    found = trend(minutes(1000 - 60 * i / 60 + rng.gauss(0, 3) for i in range(120)))
    assert found.direction == "falling"
    assert found.slope_per_h == pytest.approx(-60, rel=0.1)
    assert found.confidence > 0.99


def test_a_constant_series_is_flat_with_full_confidence():
    found = trend(minutes([42] * 30))
    assert (found.slope_per_h, found.direction, found.confidence, found.last) == (
        0.0, "flat", 1.0, 42.0)


def test_plain_noise_is_flat_about_as_often_as_the_test_level_says():
    flat = []
    for seed in range(200):
        rng = random.Random(seed)
        flat.append(trend(minutes(100 + rng.gauss(0, 5) for _ in range(60))).direction)
    assert flat.count("flat") >= 180  # 5 % expected to be called a trend


def plain_p(ys):
    """The textbook t-test of the slope, residuals taken as independent."""
    n = len(ys)
    xs = [i / 60 for i in range(n)]
    fit = least_squares(xs, ys)
    mean_x = sum(xs) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sse = sum((y - fit.intercept - fit.slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return t_two_sided_p(fit.slope / (sse / (n - 2) / sxx) ** 0.5, n - 2)


def test_autocorrelated_noise_is_not_taken_for_a_trend():
    # Minute buckets wander: the plain t-test calls most of these series a
    # trend; the effective sample size keeps that near the test's level.
    series = [ar1(s, 120, 0.9) for s in range(200)]
    assert sum(plain_p(ys) < 0.05 for ys in series) > 100
    directions = [trend(minutes(ys)).direction for ys in series]
    assert directions.count("flat") >= 170


def test_too_few_points_give_no_trend():
    assert trend(minutes([1, 2, 3, 4])) is None
    assert trend([]) is None


def test_eta_is_the_time_to_the_limit_at_the_slope_when_rising():
    found = trend(minutes(100 + 10 * i / 60 for i in range(61)), limit=200.0)  # +10/h
    assert found.last == pytest.approx(110.0)
    assert found.eta_s == pytest.approx((200 - 110) / 10 * 3600)
    assert found.fields()["limit"] == 200.0


def test_eta_is_zero_at_the_limit_and_absent_when_not_rising_or_without_limit():
    assert trend(minutes(190 + i for i in range(20)), limit=200.0).eta_s == 0.0
    falling = trend(minutes(300 - i for i in range(20)), limit=400.0)
    assert falling.direction == "falling" and falling.eta_s is None
    assert "eta_s" not in falling.fields() and falling.fields()["limit"] == 400.0
    assert trend(minutes([5] * 20), limit=10.0).eta_s is None
    no_limit = trend(minutes(range(20)))
    assert no_limit.eta_s is None and set(no_limit.fields()) == {
        "slope_per_h", "direction", "confidence", "last"}


def test_trend_fields_are_the_catalogue_fields():
    found = trend(minutes(range(20)), limit=100.0)
    assert set(found.fields()) <= set(CATALOGUE["analysis_trend"].fields)


def test_the_trends_job_fits_each_metric_and_window_from_its_resolution():
    now = T0 + timedelta(days=8)
    hour_ago = now - timedelta(hours=1)
    data = {
        ("connections", "1m"): minutes((100 + i for i in range(60)), hour_ago),  # +60/h
        ("rss_bytes", "1m"): minutes([300 << 20] * 60, hour_ago),
        ("connections", "1h"): [(now - timedelta(hours=h), 50.0) for h in range(1, 100)],
        ("drop_rate", "1m"): minutes([0.0] * 3, hour_ago),  # too few: no trend
    }
    series, writer = InMemoryMetricSeries(data), RecordingPointWriter()
    limits = trend_limits({"max_connections": 1000, "memory_budget_mb": 512,
                           "batch_timeout_ms": 50}, 1 << 20)
    # p99: the longest batch wait (low priority: twice the timeout) + 20 ms, as health has it
    assert limits == {"connections": 1000.0, "rss_bytes": 512.0 * (1 << 20),
                      "delivery_p99_ms": 120.0, "spool_bytes": float(1 << 20)}
    assert run_trends(series, writer, limits, now=now) == 5
    assert len(series.calls) == len(WINDOWS) * len(ANALYSIS_METRICS)
    assert {(c[3], c[2] - c[1]) for c in series.calls} == {
        ("1m", timedelta(hours=1)), ("1m", timedelta(hours=24)), ("1h", timedelta(days=7))}
    points = {(dict(p.tags)["metric"], dict(p.tags)["window"]): p for p, rp in writer.written}
    assert all(rp is None for _, rp in writer.written)
    assert set(points) == {("connections", "1h"), ("connections", "24h"),
                           ("connections", "7d"), ("rss_bytes", "1h"), ("rss_bytes", "24h")}
    rising = points[("connections", "1h")]
    assert rising.at == now and rising.measurement == "analysis_trend"
    assert dict(rising.tags) == {"metric": "connections", "window": "1h",
                                 "node": "cluster", "role": "jobs"}
    assert rising.fields["direction"] == "rising"
    assert rising.fields["slope_per_h"] == pytest.approx(60.0)
    assert rising.fields["eta_s"] == pytest.approx((1000 - 159) / 60 * 3600)
    flat = points[("rss_bytes", "1h")].fields
    assert flat["direction"] == "flat" and flat["limit"] == 512.0 * (1 << 20)
    assert "eta_s" not in flat
