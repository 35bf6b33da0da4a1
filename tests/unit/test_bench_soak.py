"""The soak benchmark's pure parts: the RSS slope, the delivery ratio, the
latency histogram's merge and percentiles, the progress line."""

import argparse

import pytest

from bench.loadgen import percentile
from bench.soak_setup import raise_fd_limit
from bench.soak_stats import (
    clock,
    delivered_ratio,
    lsq_slope,
    merge_hist,
    render_progress,
    rss_growth_mb_per_h,
)


def test_lsq_slope_of_a_line_and_of_noise_around_it():
    assert lsq_slope([(0, 1.0), (1, 3.0), (2, 5.0)]) == pytest.approx(2.0)
    # symmetric noise around y = 10 + 0.5 x leaves the slope alone
    points = [(x, 10 + 0.5 * x + (1 if x % 2 else -1)) for x in range(100)]
    assert lsq_slope(points) == pytest.approx(0.5, abs=0.001)
    assert lsq_slope([(0, 5.0), (10, 5.0)]) == 0.0


def test_lsq_slope_needs_two_distinct_x():
    assert lsq_slope([]) is None
    assert lsq_slope([(3, 1.0)]) is None
    assert lsq_slope([(3, 1.0), (3, 2.0)]) is None


def test_rss_growth_ignores_the_warm_up():
    # a steep start-up, then 1 MB every 60 s: 60 MB an hour
    warm = [(t, 100.0 + t) for t in range(0, 60, 5)]
    steady = [(t, 200.0 + (t - 60) / 60) for t in range(60, 300, 5)]
    assert rss_growth_mb_per_h(warm + steady, warmup_s=60) == pytest.approx(60.0)
    assert rss_growth_mb_per_h(warm + steady, warmup_s=0) > 200  # the start-up counted
    assert rss_growth_mb_per_h([(t, 50.0) for t in range(0, 300, 5)], 60) == 0.0
    shrinking = [(t, 300.0 - t / 10) for t in range(0, 300, 5)]
    assert rss_growth_mb_per_h(shrinking, 60) == pytest.approx(-360.0)


def test_rss_growth_without_samples_after_the_warm_up():
    assert rss_growth_mb_per_h([(t, 1.0) for t in range(0, 50, 5)], warmup_s=60) is None
    assert rss_growth_mb_per_h([(70, 1.0)], warmup_s=60) is None


def test_delivered_ratio():
    assert delivered_ratio(0, 0) is None  # nothing was owed: no ratio, not 1
    assert delivered_ratio(50, 100) == 0.5
    assert delivered_ratio(99_999, 100_000) == 0.99999
    assert delivered_ratio(2, 3) == 0.66667
    assert delivered_ratio(101, 100) == 1.01  # more than owed is shown, not capped


def test_merge_hist_adds_json_keys_as_numbers():
    total = merge_hist({}, {"0.25": 2, "12.5": 1})
    merge_hist(total, {"12.5": 3, "130.4": 1})
    assert total == {0.25: 2, 12.5: 4, 130.4: 1}


def test_percentiles_of_a_merged_histogram_are_nearest_rank():
    hist = merge_hist({}, {str(v): 1 for v in range(1, 101)})  # 1..100 ms, once each
    assert percentile(hist, 0.99) == 99.0
    assert percentile(hist, 0.5) == 50.0
    assert percentile(hist, 1.0) == 100.0
    skewed = {1.0: 989, 500.0: 11}  # 1.1 % slow: p99 is slow
    assert percentile(skewed, 0.99) == 500.0
    assert percentile({1.0: 991, 500.0: 9}, 0.99) == 1.0
    assert percentile({}, 0.99) is None


def test_progress_bar_on_a_terminal():
    line = render_progress("soak publishing", 30, 120, ["0:30/2:00", "open 10,000"], width=20)
    assert line == "soak publishing [#####...............]  25% | 0:30/2:00 | open 10,000"
    full = render_progress("soak", 500, 120, ["x"], width=10)
    assert "[##########] 100%" in full  # past the end: full, not over
    assert "[..........]   0%" in render_progress("soak", -1, 120, ["x"], width=10)
    assert "100%" in render_progress("soak", 0, 0, ["x"], width=10)


def test_progress_line_without_a_terminal_has_no_bar():
    line = render_progress("soak publishing", 60, 120, ["1:00/2:00"], bar=False)
    assert line == "soak publishing  50% | 1:00/2:00"


def test_clock():
    assert clock(0) == "0:00"
    assert clock(61.9) == "1:01"
    assert clock(300) == "5:00"
    assert clock(-3) == "0:00"


def test_fd_limit_is_raised_and_a_node_share_must_fit(monkeypatch):
    import bench.soak_setup as soak

    limits = {"soft": 1024}
    monkeypatch.setattr(soak.resource, "getrlimit", lambda _which: (limits["soft"], 20_000))
    monkeypatch.setattr(soak.resource, "setrlimit",
                        lambda _which, pair: limits.update(soft=pair[0]))
    assert raise_fd_limit(argparse.Namespace(connections=10_000)) == {
        "soft_before": 1024, "soft": 20_000, "hard": 20_000}
    with pytest.raises(SystemExit, match="too low for 19900"):
        raise_fd_limit(argparse.Namespace(connections=39_800))  # 19,900 + margin > 20,000


def test_fd_limit_when_raising_it_is_not_permitted(monkeypatch):
    import bench.soak_setup as soak

    def refuse(*_args):
        raise ValueError("not allowed")

    monkeypatch.setattr(soak.resource, "getrlimit", lambda _which: (1024, 20_000))
    monkeypatch.setattr(soak.resource, "setrlimit", refuse)
    assert raise_fd_limit(argparse.Namespace(connections=1_000))["soft"] == 1024
    with pytest.raises(SystemExit, match="limit 1024"):
        raise_fd_limit(argparse.Namespace(connections=10_000))
