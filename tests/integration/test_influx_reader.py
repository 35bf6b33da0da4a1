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
from tests.support.backing_services import INFLUX_URL, unique

pytestmark = pytest.mark.influx

# whole minutes, two hours back: inside the trend lookback, never "now"
T = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)


def ns(moment):
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


def point(measurement, tags, fields, moment, node="a", role="serve"):
    return encode(measurement, tags, fields, ns(moment), {"node": node, "role": role})


def s(seconds):
    return T + timedelta(seconds=seconds)


# the lever rules' effect figures of a window with none of their points
NO_LEVER_POINTS = {"refused_connections_per_s": 0.0, "refused_publishes_per_s": 0.0,
                   "pool_waiting": 0.0, "wire_ratio": None, "slow_consumer_drops_per_s": 0.0}


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
        **NO_LEVER_POINTS,
        "slow_consumer_drops_per_s": 3 / 60,  # node b's were clients that left
    }
    node_a = InfluxAnalysisReader(raw_points, node="a")
    assert node_a.window_summary(s(0), s(60)) == {
        "delivered_per_s": 30 / 60, "delivery_p99_ms": 7.0, "drops_per_s": 3 / 60,
        "cache_hit_rate": 90 / 100, "rss_bytes": 200.0, **NO_LEVER_POINTS,
        "slow_consumer_drops_per_s": 3 / 60}
    node_b = InfluxAnalysisReader(raw_points, node="b").window_summary(s(0), s(60))
    assert node_b["drops_per_s"] == 3 / 60 and node_b["slow_consumer_drops_per_s"] == 0.0


def test_a_window_without_traffic_reads_zero_rates_and_without_points_nothing(raw_points):
    reader = InfluxAnalysisReader(raw_points)
    assert reader.window_summary(s(120), s(180)) == {
        "delivered_per_s": 0.0, "delivery_p99_ms": None, "drops_per_s": 0.0,
        "cache_hit_rate": None, "rss_bytes": 500.0, **NO_LEVER_POINTS}
    assert reader.window_summary(s(300), s(360)) == dict.fromkeys(METRIC_KEYS)
    assert reader.window_summary(s(60), s(60)) == dict.fromkeys(METRIC_KEYS)


def test_delivery_p99_is_the_99th_percentile_of_the_interval_p99s_not_their_maximum(influx):
    influx.write_lines([point("notify_delivery", {"mode": "live"},
                              {"count": 1, "latency_ms_p99": float(i)}, s(1000 + i))
                        for i in range(1, 101)])
    summary = InfluxAnalysisReader(influx).window_summary(s(1000), s(1200))
    assert summary["delivery_p99_ms"] == 99.0  # nearest rank of 100; the maximum is 100
    assert summary["delivered_per_s"] == 100 / 200


def test_the_batch_wait_p99_is_taken_as_delivery_p99_is_from_live_deliveries(influx):
    influx.write_lines([point("notify_delivery", {"mode": "live"},
                              {"count": 1, "latency_ms_p99": 400.0, "wait_ms_p50": 1.0,
                               "wait_ms_p99": float(i)}, s(1000 + i))
                        for i in range(1, 101)] + [
        point("notify_delivery", {"mode": "replay"},
              {"count": 1, "latency_ms_p99": 400.0, "wait_ms_p99": 5000.0}, s(1150))])
    figures = InfluxAnalysisReader(influx).health_inputs(s(1000), s(1200))
    assert figures["wait_p99_ms"] == 99.0 and figures["delivery_p99_ms"] == 400.0
    assert figures["wait_p50_ms"] == 1.0
    assert InfluxAnalysisReader(influx).health_inputs(s(2000), s(2060))["wait_p99_ms"] is None


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


@pytest.fixture
def lever_points(influx):
    """Points of the measurements the lever rules read, in [s(0), s(60)),
    with look-alikes they must leave out (other reasons, roles, times)."""
    refused = {"event": "refused", "reason": "connection_limit"}
    influx.write_lines([
        point("notify_connection", refused, {"count": 4, "active": 50}, s(1)),
        point("notify_connection", refused, {"count": 2, "active": 50}, s(2), node="b"),
        point("notify_connection", {"event": "refused", "reason": "rate_limited"},
              {"count": 100, "active": 50}, s(3)),
        point("notify_connection", {"event": "opened", "reason": "ok"},
              {"count": 100, "active": 50}, s(3)),
        point("notify_connection", refused, {"count": 1000, "active": 50}, s(60)),
        point("notify_throttle", {"priority": "low", "reason": "backpressure"},
              {"count": 9, "recipients": 1}, s(4)),
        point("notify_throttle", {"priority": "low", "reason": "rate"},
              {"count": 500, "recipients": 3}, s(4)),
        point("db_pool", {}, {"size": 5, "checked_out": 5, "overflow": 0, "waits": 10,
                              "wait_ms_sum": 200.0, "wait_ms_max": 50.0}, s(10)),
        point("db_pool", {}, {"size": 10, "checked_out": 1, "overflow": 0, "waits": 30,
                              "wait_ms_sum": 100.0, "wait_ms_max": 9.0}, s(20), node="b"),
        point("db_pool", {}, {"size": 40, "checked_out": 1, "overflow": 0, "waits": 1000,
                              "wait_ms_sum": 99_000.0, "wait_ms_max": 99.0}, s(20),
              role="jobs"),
        point("notify_delivery", {"mode": "live", "trigger": "size"},
              {"count": 100, "batches": 4, "bytes": 8000, "wire_bytes": 2000}, s(5)),
        point("notify_delivery", {"mode": "replay", "trigger": "replay"},
              {"count": 50, "batches": 1, "bytes": 2000, "wire_bytes": 2000}, s(6), node="b"),
        point("notify_queues", {}, {"samples": 20, "queued_bytes_max": 7000,
                                    "backlogged_connections_max": 3}, s(7)),
        point("notify_queues", {}, {"samples": 20, "queued_bytes_max": 3000,
                                    "backlogged_connections_max": 1}, s(8), node="b"),
        point("cache", {"level": "user", "cache": "streams"},
              {"hits": 60, "misses": 40, "evictions": 5, "evictions_ttl": 20,
               "evictions_bytes": 1, "invalidations": 3}, s(10)),
        point("cache", {"level": "global", "cache": "log"},
              {"hits": 0, "misses": 10, "evictions": 1, "evictions_ttl": 2,
               "evictions_bytes": 0, "invalidations": 4}, s(10), node="b"),
    ])
    return influx


def test_the_lever_rules_figures_are_read_from_their_measurements(lever_points):
    reader = InfluxAnalysisReader(lever_points)
    summary = reader.window_summary(s(0), s(60))
    assert {k: summary[k] for k in NO_LEVER_POINTS} == {
        "refused_connections_per_s": 6 / 60,  # connection_limit only, both nodes
        "refused_publishes_per_s": 9 / 60,    # backpressure only
        "pool_waiting": 0.3 / 60,             # serving nodes: the jobs' pool left out
        "wire_ratio": 4000 / 10_000,
        "slow_consumer_drops_per_s": 0.0,
    }
    figures = reader.health_inputs(s(0), s(60))
    assert {k: figures[k] for k in (
        "batch_bytes_mean", "delivered_bytes_per_s", "pool_checkouts", "pool_wait_ms",
        "queued_bytes_max",
        "pool_size", "cache_misses", "cache_evictions_lru", "cache_evictions_ttl",
        "cache_evictions_bytes", "cache_invalidations")} == {
        "batch_bytes_mean": 10_000 / 5, "delivered_bytes_per_s": 10_000 / 60,
        "pool_checkouts": 40.0, "pool_wait_ms": 300.0 / 40, "queued_bytes_max": 7000.0,
        "pool_size": 10.0,
        "cache_misses": 50.0, "cache_evictions_lru": 6.0, "cache_evictions_ttl": 22.0,
        "cache_evictions_bytes": 1.0, "cache_invalidations": 7.0}
    node_b = InfluxAnalysisReader(lever_points, node="b").health_inputs(s(0), s(60))
    assert node_b["refused_connections_per_s"] == 2 / 60 and node_b["pool_size"] == 10.0
    assert node_b["queued_bytes_max"] == 3000.0 and node_b["wire_ratio"] == 1.0


def test_without_lever_points_their_figures_are_unknown(raw_points):
    figures = InfluxAnalysisReader(raw_points).health_inputs(s(0), s(60))
    assert figures["queued_bytes_max"] is None and figures["pool_size"] is None
    assert figures["pool_checkouts"] == 0.0 and figures["batch_bytes_mean"] is None
    assert figures["cache_evictions_ttl"] == 0.0  # the cache reported, with no evictions
    quiet = InfluxAnalysisReader(raw_points).health_inputs(s(300), s(360))
    assert quiet["cache_misses"] is None and quiet["refused_publishes_per_s"] is None
