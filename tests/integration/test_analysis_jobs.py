"""The health, advice and impact jobs on real InfluxDB with seeded telemetry:
the figures they read are exactly the seeded ones, and what they decide
lands where the API reads it."""

from datetime import UTC, datetime, timedelta

import pytest

from service.adapters.influx_reader import InfluxAnalysisReader
from service.adapters.line_protocol import encode
from service.domain.tuning import preset
from service.service_layer import analysis
from service.service_layer.live_config import LiveConfig
from tests.support.fakes import InMemoryControlLog, RecordingTelemetry

pytestmark = pytest.mark.influx

NOW = datetime.now(UTC).replace(microsecond=0)


def ns(moment):
    return int(moment.timestamp() * 1e9)


def point(measurement, tags, fields, seconds_ago, node="a", role="serve"):
    return encode(measurement, tags, fields, ns(NOW - timedelta(seconds=seconds_ago)),
                  {"node": node, "role": role})


@pytest.fixture
def seeded(influx):
    """Four minutes of a cluster of two nodes with a slow database and a cold cache."""
    lines = []
    for s in range(10, 240, 10):
        for node in ("a", "b"):
            lines += [
                point("notify_publish", {"priority": "normal"}, {"count": 10}, s, node),
                point("notify_delivery", {"mode": "live"},
                      {"count": 100, "batches": 20, "latency_ms_p99": 40.0,
                       "wait_ms_p50": 45.0}, s, node),
                point("notify_ping", {}, {"connections": 1000 if node == "a" else 400}, s, node),
                point("process", {}, {"rss_bytes": 200 << 20, "cpu_seconds": 1000.0 + s * -0.8},
                      s, node),
                point("db_query", {"operation": "select"},
                      {"count": 10, "duration_ms_sum": 1500.0, "slow": 1}, s, node),
                point("cache", {"level": "user", "cache": "streams"},
                      {"hits": 40, "misses": 60}, s, node),
            ]
    lines.append(point("notify_drop", {"reason": "slow_consumer"}, {"count": 24}, 50))
    influx.write_lines(lines)
    return InfluxAnalysisReader(influx)


def test_health_inputs_are_the_seeded_figures(seeded):
    figures = seeded.health_inputs(NOW - timedelta(minutes=5), NOW + timedelta(seconds=1))
    seconds = 301
    assert figures["published_per_s"] == pytest.approx(2 * 23 * 10 / seconds)
    assert figures["mean_batch"] == 5.0 and figures["wait_p50_ms"] == 45.0
    assert figures["connections_node_max"] == 1000.0
    assert figures["rss_node_max"] == float(200 << 20)
    assert figures["cpu_node_max"] == pytest.approx(0.8 * 220 / seconds)  # spread / window
    assert figures["db_query_ms"] == 150.0 and figures["db_slow"] == 46.0
    assert figures["cache_hit_rate"] == 0.4
    assert figures["drops_per_s"] == pytest.approx(24 / seconds)
    assert figures["job_errors"] == 0.0 and figures["telemetry_dropped"] == 0.0
    assert figures["cache_lookups"] == 2 * 23 * 100


def test_the_health_job_writes_what_get_health_reads(seeded, influx):
    telemetry = RecordingTelemetry()
    config = LiveConfig("balanced", {}, lambda v: None, None)
    analysis.run_health(seeded, telemetry, config, 1 << 30,
                        now=NOW + timedelta(seconds=1))
    influx.write_lines([encode(m, t, f, ns(NOW), {"node": "jobs-1", "role": "jobs"})
                        for m, t, f in telemetry.records])
    cluster = seeded.latest_health()
    assert cluster["storage"]["status"] == "critical"  # 150 ms a statement
    assert "mean statement time" in cluster["storage"]["reason"]
    assert cluster["cache"]["status"] == "critical"  # 0.4
    assert cluster["delivery"]["status"] == "warning"  # drops
    assert cluster["scheduler"]["status"] == "healthy"


def test_the_advice_job_issues_from_seeded_evidence(seeded):
    log = InMemoryControlLog()
    config = LiveConfig("balanced", {}, lambda v: None, None, log=log)
    assert analysis.run_advice(seeded, config, now=NOW + timedelta(seconds=1)) >= 1
    issued = {e.payload["rule"]: e.payload for e in log.events
              if e.type == "recommendation_issued"}
    assert issued["cache-grow"]["parameters"] == {
        "cache_entries": preset("balanced")["cache_entries"] * 2}
    assert issued["cache-grow"]["evidence"]["cache_hit_rate"] == 0.4


def test_the_impact_job_measures_a_change_on_seeded_windows(influx):
    log = InMemoryControlLog()
    config = LiveConfig("balanced", {}, lambda v: None, None, log=log)
    config.change({"parameters": {"batch_size": 7}}, actor="alice")
    at = log.events[-1].at
    lines = []
    for s in range(30, 900, 30):  # p99 40 ms before the change, 100 ms after
        lines.append(encode("notify_delivery", {"mode": "live"},
                            {"count": 50, "latency_ms_p99": 40.0},
                            ns(at - timedelta(seconds=s)), {"node": "a", "role": "serve"}))
        lines.append(encode("notify_delivery", {"mode": "live"},
                            {"count": 50, "latency_ms_p99": 100.0},
                            ns(at + timedelta(seconds=s)), {"node": "a", "role": "serve"}))
    influx.write_lines(lines)
    reader = InfluxAnalysisReader(influx)
    appended = analysis.run_impact(reader, config, auto_rollback=True,
                                   now=at + timedelta(minutes=15, seconds=5))
    assert appended == 2, [e.type for e in log.events]
    impact, rollback = log.events[-2:]
    assert impact.payload["verdict"] == "regressed"
    assert impact.payload["effect"]["delivery_p99_ms"]["before"] == 40.0
    assert impact.payload["effect"]["delivery_p99_ms"]["after"] == 100.0
    assert rollback.type == "rollback" and config.values["batch_size"] != 7


def test_the_regression_job_finds_a_step_in_the_rollups_and_writes_it_once(influx):
    import random

    from service.adapters.influx import Retention
    from service.adapters.influx_analysis_writer import write_regressions
    from service.adapters.influx_rollups import InfluxRollupStore
    from service.adapters.influx_series import InfluxMetricSeries
    from service.domain.changepoints import detect
    from service.service_layer.rollups import run_rollups

    influx.ensure_database(Retention())
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start, rng, lines = now - timedelta(minutes=110), random.Random(3), []
    for minute in range(110):  # p99 about 40 ms, then about 60 ms from minute 80
        level = 40.0 if minute < 80 else 60.0
        for second in (10, 30, 50):
            at = start + timedelta(minutes=minute, seconds=second)
            lines.append(encode("notify_delivery", {"mode": "live"},
                                {"count": 100, "latency_ms_p99": level * rng.gauss(1, 0.05)},
                                ns(at), {"node": "a", "role": "serve"}))
            lines.append(encode("process", {}, {"rss_bytes": 1 << 27, "uptime_s": 1.0},
                                ns(at), {"node": "a", "role": "serve"}))
    influx.write_lines(lines)
    run_rollups(InfluxRollupStore(influx), now)
    series = InfluxMetricSeries(influx)
    rows = [r for r in analysis.find_regressions(series, detect, now=now)
            if r["metric"] == "delivery_p99_ms"]
    assert [r["direction"] for r in rows] == ["up"], rows
    assert abs((rows[0]["at"] - (start + timedelta(minutes=80))).total_seconds()) <= 300
    for _run in range(2):  # a rerun overwrites: same time, same tags
        write_regressions(influx, rows)
    [found] = InfluxAnalysisReader(influx).regressions(now - timedelta(hours=3), now)
    assert found["metric"] == "delivery_p99_ms" and found["magnitude_pct"] > 30
