"""InfluxAnalysisReader against a real InfluxDB: points written at known times,
encoded through the catalogue as the service writes them, are read back as
exactly those values; an unreachable InfluxDB is StorageUnavailable."""

from datetime import UTC, datetime, timedelta

import pytest

from service.adapters.influx import InfluxClient, InfluxSettings
from service.adapters.influx_reader import InfluxAnalysisReader
from service.adapters.line_protocol import encode
from service.domain.errors import StorageUnavailable
from service.domain.report import METRIC_KEYS
from tests.conftest import INFLUX_URL, unique

pytestmark = pytest.mark.influx

# whole minutes, two hours back: inside the trend lookback, never "now"
T = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)


def ns(moment):
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


def point(measurement, tags, fields, moment, node="a", role="serve"):
    return encode(measurement, tags, fields, ns(moment), {"node": node, "role": role})


def s(seconds):
    return T + timedelta(seconds=seconds)


@pytest.fixture
def raw_points(influx):
    influx.write_lines([
        point("notify_delivery", {"mode": "live"}, {"count": 10, "latency_ms_p99": 5.0}, s(0)),
        point("notify_delivery", {"mode": "live"}, {"count": 20, "latency_ms_p99": 7.0}, s(1)),
        point("notify_delivery", {"mode": "replay"}, {"count": 30, "latency_ms_p99": 100.0},
              s(2), node="b"),
        # just outside [T, T + 60 s): the end is excluded
        point("notify_delivery", {"mode": "live"}, {"count": 1000, "latency_ms_p99": 900.0},
              s(-1)),
        point("notify_delivery", {"mode": "live"}, {"count": 1000, "latency_ms_p99": 900.0},
              s(60)),
        point("notify_drop", {"reason": "slow_consumer"}, {"count": 3}, s(5)),
        point("notify_drop", {"reason": "disconnected"}, {"count": 3}, s(6), node="b"),
        point("cache", {"level": "user", "cache": "streams"}, {"hits": 90, "misses": 10}, s(10)),
        point("cache", {"level": "global", "cache": "log"}, {"hits": 10, "misses": 40}, s(10),
              node="b"),
        point("process", {}, {"rss_bytes": 100}, s(0)),
        point("process", {}, {"rss_bytes": 300}, s(10)),
        point("process", {}, {"rss_bytes": 1000}, s(10), node="b"),
        point("process", {}, {"rss_bytes": 99_999}, s(10), node="b", role="jobs"),
        # a later minute with the process sampled and nothing else
        point("process", {}, {"rss_bytes": 500}, s(130)),
    ])
    return influx


def test_a_window_summary_is_computed_from_the_raw_measurements(raw_points):
    cluster = InfluxAnalysisReader(raw_points)
    assert cluster.window_summary(s(0), s(60)) == {
        "delivered_per_s": 60 / 60,
        "delivery_p99_ms": 7.0,  # live only: node b's 100 ms was a replay
        "drops_per_s": 6 / 60,
        "cache_hit_rate": 100 / 150,
        "rss_bytes": 200.0 + 1000.0,  # mean per serving node, summed
    }
    node_a = InfluxAnalysisReader(raw_points, node="a")
    assert node_a.window_summary(s(0), s(60)) == {
        "delivered_per_s": 30 / 60, "delivery_p99_ms": 7.0, "drops_per_s": 3 / 60,
        "cache_hit_rate": 90 / 100, "rss_bytes": 200.0}


def test_a_window_without_traffic_reads_zero_rates_and_without_points_nothing(raw_points):
    reader = InfluxAnalysisReader(raw_points)
    assert reader.window_summary(s(120), s(180)) == {
        "delivered_per_s": 0.0, "delivery_p99_ms": None, "drops_per_s": 0.0,
        "cache_hit_rate": None, "rss_bytes": 500.0}
    assert reader.window_summary(s(300), s(360)) == dict.fromkeys(METRIC_KEYS)
    assert reader.window_summary(s(60), s(60)) == dict.fromkeys(METRIC_KEYS)


def test_delivery_p99_is_the_99th_percentile_of_the_interval_p99s_not_their_maximum(influx):
    influx.write_lines([point("notify_delivery", {"mode": "live"},
                              {"count": 1, "latency_ms_p99": float(i)}, s(1000 + i))
                        for i in range(1, 101)])
    summary = InfluxAnalysisReader(influx).window_summary(s(1000), s(1200))
    assert summary["delivery_p99_ms"] == 99.0  # nearest rank of 100; the maximum is 100
    assert summary["delivered_per_s"] == 100 / 200


def trend(metric, window, fields, moment, node="jobs-1"):
    return point("analysis_trend", {"metric": metric, "window": window}, fields, moment,
                 node=node, role="jobs")


def test_the_latest_trend_of_each_metric_and_window_is_read(influx):
    rising = {"slope_per_h": 1.5, "direction": "rising", "confidence": 0.9, "last": 100.0,
              "limit": 200.0, "eta_s": 240_000.0}
    influx.write_lines([
        trend("rss_bytes", "1h", rising, s(0)),
        trend("rss_bytes", "1h", {"slope_per_h": 0.0, "direction": "flat", "confidence": 0.4,
                                  "last": 101.0, "limit": 200.0}, s(60)),
        trend("delivery_p99_ms", "24h", {**rising, "last": 42.5, "eta_s": 7.0}, s(30),
              node="jobs-2"),
        trend("connections", "7d", rising, T - timedelta(days=3)),  # beyond the lookback
    ])
    found = sorted(InfluxAnalysisReader(influx).latest_trends(), key=lambda t: t["metric"])
    assert found == [
        {"metric": "delivery_p99_ms", "window": "24h", "at": iso(s(30)), "node": "jobs-2",
         "slope_per_h": 1.5, "direction": "rising", "confidence": 0.9, "last": 42.5,
         "limit": 200.0, "eta_s": 7.0},
        {"metric": "rss_bytes", "window": "1h", "at": iso(s(60)), "node": "jobs-1",
         "slope_per_h": 0.0, "direction": "flat", "confidence": 0.4, "last": 101.0,
         "limit": 200.0, "eta_s": None},  # the newest point has none: it never gets there
    ]
    one_node = InfluxAnalysisReader(influx, node="jobs-2").latest_trends()
    assert [t["metric"] for t in one_node] == ["delivery_p99_ms"]


def iso(moment):
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def test_regressions_in_the_period_are_read_newest_first_then_returned_oldest_first(influx):
    def regression(minute, metric, direction, pct):
        return point("analysis_regression", {"metric": metric, "direction": direction},
                     {"before_mean": 10.0, "after_mean": 10.0 * (1 + pct / 100),
                      "magnitude_pct": pct, "text": f"{metric} {direction} {pct}%"},
                     s(minute * 60), node="jobs-1", role="jobs")

    influx.write_lines([regression(-1, "rss_bytes", "up", 5.0),  # before the period
                        regression(1, "delivery_p99_ms", "up", 20.0),
                        regression(2, "delivery_rate", "down", -50.0),
                        regression(3, "cache_hit_rate", "down", -10.0),
                        regression(10, "rss_bytes", "up", 5.0)])  # at until: excluded
    reader = InfluxAnalysisReader(influx)
    found = reader.regressions(s(0), s(600), 10)
    assert [r["metric"] for r in found] == ["delivery_p99_ms", "delivery_rate",
                                            "cache_hit_rate"]
    assert found[1] == {"at": iso(s(120)), "metric": "delivery_rate", "direction": "down",
                        "node": "jobs-1", "before_mean": 10.0, "after_mean": 5.0,
                        "magnitude_pct": -50.0, "text": "delivery_rate down -50.0%"}
    assert [r["metric"] for r in reader.regressions(s(0), s(600), 2)] == [
        "delivery_rate", "cache_hit_rate"]


def test_a_database_not_created_yet_reads_as_empty(influx_database):
    missing = InfluxClient(InfluxSettings(url=INFLUX_URL, database=unique("absent")))
    reader = InfluxAnalysisReader(missing)
    assert reader.latest_trends() == []
    assert reader.regressions(s(0), s(60), 10) == []
    assert reader.window_summary(s(0), s(60)) == dict.fromkeys(METRIC_KEYS)


def test_an_unreachable_influxdb_is_storage_unavailable():
    client = InfluxClient(InfluxSettings(url="http://127.0.0.1:9", timeout=1.0))
    reader = InfluxAnalysisReader(client)
    for call in (reader.latest_trends, lambda: reader.regressions(s(0), s(60), 10),
                 lambda: reader.window_summary(s(0), s(60))):
        with pytest.raises(StorageUnavailable) as caught:
            call()
        assert caught.value.code == "storage_unavailable"
