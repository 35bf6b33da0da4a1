"""The rollups and trends jobs against a real InfluxDB: raw points seeded at
known times are rolled up into exactly the expected aggregates, a rerun
changes nothing, the key-metric series read them back, the trends job writes
what GET trends reads, and two schedulers running the rollups at once under
the PostgreSQL advisory lock run it once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from service.adapters.database import make_engine
from service.adapters.influx import Retention
from service.adapters.influx_reader import InfluxAnalysisReader
from service.adapters.influx_rollups import InfluxRollupStore
from service.adapters.influx_series import InfluxMetricSeries
from service.adapters.job_lock import PgAdvisoryJobLock
from service.adapters.line_protocol import encode
from service.domain.measurements import CATALOGUE, ROLLED_UP
from service.service_layer.job_runs import JobSpec, run_job
from service.service_layer.rollups import run_rollups
from service.service_layer.trend_job import run_trends
from tests.support.fakes import RecordingTelemetry

pytestmark = pytest.mark.influx

# A whole hour three hours back: its two first minutes hold the seeded points.
T = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
RUN_AT = T + timedelta(hours=1, minutes=3)  # minute buckets 0 and 1 and hour 0 complete
M0, M1 = T, T + timedelta(minutes=1)


def ns(moment):
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


def seeds():
    """(measurement, tags, fields, time, node, role) of every raw point."""
    out = []

    def add(measurement, tags, fields, at, node="a", role="serve"):
        out.append((measurement, tags, fields, at, node, role))

    for m in (0, 1):
        for s in range(0, 60, 10):
            at = T + timedelta(minutes=m, seconds=s)
            add("notify_delivery", {"mode": "live"},
                {"count": 1 + s // 10 + m, "latency_ms_p99": float(s + 100 * m),
                 "latency_ms_p50": float(s // 10 + 10 * m),
                 "latency_ms_max": float(s + 100 * m + 5)}, at)
            add("notify_delivery", {"mode": "live"},
                {"count": 3, "latency_ms_p99": 10.0 + s / 10}, at, node="b")
            add("notify_delivery", {"mode": "replay"},
                {"count": 2, "latency_ms_p99": 1000.0}, at, node="b")
            add("process", {}, {"rss_bytes": 1000 + s + m * 6000, "uptime_s": float(m * 60 + s),
                                "cpu_seconds": 0.01 * s}, at)
            add("process", {}, {"rss_bytes": 5000, "uptime_s": 1.0}, at, node="b")
            add("process", {}, {"rss_bytes": 99_999, "uptime_s": 2.0}, at, node="j", role="jobs")
            add("notify_ping", {}, {"connections": 10 + m * 50}, at)
            add("notify_ping", {}, {"connections": 40}, at, node="b")
            add("telemetry_self", {}, {"spool_bytes": s * m, "written": 100 + s}, at)
            add("telemetry_self", {}, {"spool_bytes": 7}, at, node="j", role="jobs")
            add("cache", {"level": "user", "cache": "streams"}, {"hits": 9, "misses": 1}, at)
            if m == 1:
                add("cache", {"level": "global", "cache": "log"}, {"hits": 1, "misses": 9}, at,
                    node="b")
            add("db_query", {"operation": "select"},
                {"count": 2, "duration_ms_sum": 3.0, "duration_ms_max": 2.5}, at)
    for s in (0, 30):
        add("notify_publish", {"priority": "normal", "category": "chat", "target": "user"},
            {"count": 5, "requests": 5, "duration_ms_max": float(s)}, T + timedelta(seconds=s))
    add("notify_publish", {"priority": "high", "category": "ops", "target": "broadcast"},
        {"count": 1, "requests": 1}, T + timedelta(minutes=1, seconds=20))
    add("notify_drop", {"reason": "slow_consumer"}, {"count": 4},
        T + timedelta(minutes=1, seconds=10))
    return out


LATE = ("notify_delivery", {"mode": "live"}, {"count": 999, "latency_ms_p99": 999.0},
        T + timedelta(hours=1, minutes=2, seconds=30), "a", "serve")  # in no complete bucket


def write_raw(influx, points):
    influx.write_lines([encode(m, tags, fields, ns(at), {"node": node, "role": role})
                        for m, tags, fields, at, node, role in points])


@pytest.fixture
def seeded(influx):
    influx.ensure_database(Retention())
    write_raw(influx, [*seeds(), LATE])
    return influx


def percentile(values, p):
    """InfluxDB's nearest rank: index floor(n * p / 100 + 0.5) - 1."""
    ordered = sorted(values)
    return ordered[int(len(ordered) * p / 100 + 0.5) - 1]


def aggregate(values, how):
    if how == "sum":
        return sum(v for _, v in values)
    if how == "max":
        return max(v for _, v in values)
    if how == "mean":
        return sum(v for _, v in values) / len(values)
    if how == "last":
        return max(values)[1]
    return percentile([v for _, v in values], int(how[1:]))


def expected_rollups(step):
    """{(measurement, tags, bucket start): fields} computed here from the seeds."""
    groups = {}
    for m, tags, fields, at, node, role in seeds():
        bucket = at - (at - T) % step
        key = (m, tuple(sorted({**tags, "node": node, "role": role}.items())), bucket)
        for field, value in fields.items():
            if field in CATALOGUE[m].rollups:
                groups.setdefault(key, {}).setdefault(field, []).append((at, value))
    return {key: {f: aggregate(vs, CATALOGUE[key[0]].rollups[f]) for f, vs in fields.items()}
            for key, fields in groups.items()}


def stored_rollups(influx, rp):
    found = {}
    for measurement in ROLLED_UP:
        (result,) = influx.query(f'SELECT * FROM "{rp}"."{measurement}" GROUP BY *')
        for series in result.get("series", []):
            tags = tuple(sorted((k, v) for k, v in series["tags"].items() if v))
            for row in series["values"]:
                at = datetime.fromtimestamp(row[0] / 1000, UTC)
                fields = {c: v for c, v in zip(series["columns"][1:], row[1:], strict=True)
                          if v is not None}
                found[(measurement, tags, at)] = fields
    return found


def approx_series(expected):
    return [(at, pytest.approx(value)) for at, value in expected]


def assert_same(found, expected):
    assert set(found) == set(expected)
    for key, fields in expected.items():
        assert found[key] == pytest.approx(fields), key


def test_rollups_hold_exactly_the_expected_aggregates(seeded):
    store = InfluxRollupStore(seeded)
    written = run_rollups(store, RUN_AT)
    minute, hour = expected_rollups(timedelta(minutes=1)), expected_rollups(timedelta(hours=1))
    assert written == len(minute) + len(hour)
    assert_same(stored_rollups(seeded, "rollup_1m"), minute)
    assert_same(stored_rollups(seeded, "rollup_1h"), hour)
    # a few by hand: node a's live deliveries in minute 0 (1+2+...+6), its p99
    # (nearest rank of 6 values: the 6th), the hour's p99 (the 12th of 12)
    live_a = (("mode", "live"), ("node", "a"), ("role", "serve"))
    assert minute[("notify_delivery", live_a, M0)]["count"] == 21
    assert minute[("notify_delivery", live_a, M0)]["latency_ms_p99"] == 50.0
    assert hour[("notify_delivery", live_a, T)]["latency_ms_p99"] == 150.0
    assert hour[("notify_delivery", live_a, T)]["count"] == 21 + 27
    # p50 of 0-5 and 10-15: the 6th of 12 (a percentile, not a mean or a maximum)
    assert hour[("notify_delivery", live_a, T)]["latency_ms_p50"] == 5.0
    assert minute[("process", (("node", "a"), ("role", "serve")), M1)]["rss_bytes"] == 7025
    types = seeded.query('SHOW FIELD KEYS FROM "rollup_1m"."process"')[0]["series"][0]["values"]
    assert dict(types)["rss_bytes"] == "float" and dict(types)["uptime_s"] == "float"


def test_a_rerun_rewrites_the_same_points(seeded):
    store = InfluxRollupStore(seeded)
    first = run_rollups(store, RUN_AT)
    before = (stored_rollups(seeded, "rollup_1m"), stored_rollups(seeded, "rollup_1h"))
    # no raw point after minute 1, so the marker stays there: the overlap is redone
    assert 0 < run_rollups(store, RUN_AT) < first
    assert (stored_rollups(seeded, "rollup_1m"), stored_rollups(seeded, "rollup_1h")) == before

    class Forgetful(InfluxRollupStore):
        def newest_bucket(self, resolution, since):
            return None  # as if nothing was rolled up: every bucket again

    assert run_rollups(Forgetful(seeded), RUN_AT) == first
    assert (stored_rollups(seeded, "rollup_1m"), stored_rollups(seeded, "rollup_1h")) == before


def test_late_points_within_the_overlap_are_taken_in_by_the_next_bucket_run(seeded):
    store = InfluxRollupStore(seeded)
    run_rollups(store, T + timedelta(minutes=3))  # minutes 0 and 1
    write_raw(seeded, [("notify_drop", {"reason": "disconnected"}, {"count": 6},
                        T + timedelta(minutes=1, seconds=59), "b", "serve"),
                       ("process", {}, {"rss_bytes": 1, "uptime_s": 1.0},
                        T + timedelta(minutes=2), "b", "serve")])
    run_rollups(store, T + timedelta(minutes=4))  # minute 2 complete: 1 and 0 again
    rates = InfluxMetricSeries(seeded).series("drop_rate", T, T + timedelta(minutes=3))
    assert rates == [(M0, 0.0), (M1, 10 / 60), (M1 + timedelta(minutes=1), 0.0)]


def test_the_series_reader_returns_the_key_metrics_per_bucket(seeded):
    run_rollups(InfluxRollupStore(seeded), RUN_AT)
    reader = InfluxMetricSeries(seeded)

    def read(metric, resolution="1m", **kw):
        return reader.series(metric, T - timedelta(hours=1), T + timedelta(hours=2),
                             resolution, **kw)

    delivered0 = 21 + 6 * 3 + 6 * 2
    delivered1 = 27 + 6 * 3 + 6 * 2
    assert read("delivery_rate") == approx_series([(M0, delivered0 / 60),
                                                   (M1, delivered1 / 60)])
    assert read("delivery_rate", "1h") == approx_series([(T, (delivered0 + delivered1) / 3600)])
    assert read("delivery_rate", node="a") == approx_series([(M0, 21 / 60), (M1, 27 / 60)])
    assert read("publish_rate") == approx_series([(M0, 10 / 60), (M1, 1 / 60)])
    assert read("drop_rate") == approx_series([(M0, 0.0), (M1, 4 / 60)])  # 0: alive, no drops
    assert read("delivery_p99_ms") == [(M0, 50.0), (M1, 150.0)]  # live only, the worst node
    assert read("delivery_p99_ms", node="b") == [(M0, 15.0), (M1, 15.0)]
    assert read("connections") == [(M0, 40.0), (M1, 60.0)]  # the busiest node
    assert read("rss_bytes") == [(M0, 5000.0), (M1, 7025.0)]  # serving processes only
    assert read("spool_bytes") == [(M0, 7.0), (M1, 25.0)]
    assert read("cache_hit_rate") == approx_series([(M0, 0.9), (M1, 60 / 120)])
    assert read("db_query_ms") == [(M0, 1.5), (M1, 1.5)]
    assert reader.series("connections", T + timedelta(minutes=5), T + timedelta(minutes=9)) == []
    with pytest.raises(ValueError):
        reader.series("no_such_metric", T, RUN_AT)


def test_the_series_of_a_database_without_rollups_is_empty(influx):
    assert InfluxMetricSeries(influx).series("connections", T, RUN_AT) == []


def test_trends_are_fitted_from_the_rollups_and_served_by_the_reader(influx):
    influx.ensure_database(Retention())
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=62)
    write_raw(influx, [("notify_ping", {}, {"connections": 100 + 2 * i},  # +120 per hour
                        start + timedelta(minutes=i, seconds=30), "a", "serve")
                       for i in range(62)])
    store = InfluxRollupStore(influx)
    run_rollups(store, now)
    limits = {"connections": 1000.0, "rss_bytes": 512.0 * (1 << 20)}
    assert run_trends(InfluxMetricSeries(influx), store, limits, now=now) == 2  # 1h and 24h
    trends = {(t["metric"], t["window"]): t for t in InfluxAnalysisReader(influx).latest_trends()}
    assert set(trends) == {("connections", "1h"), ("connections", "24h")}
    hour = trends[("connections", "1h")]
    assert hour["direction"] == "rising" and hour["confidence"] == pytest.approx(1.0)
    assert hour["slope_per_h"] == pytest.approx(120.0)
    assert hour["limit"] == 1000.0 and hour["node"] == "cluster"
    last = 100 + 2 * 60  # the newest complete minute
    assert hour["last"] == last
    assert hour["eta_s"] == pytest.approx((1000 - last) / 120 * 3600)


@pytest.mark.postgres
def test_two_schedulers_at_once_run_the_rollups_once(seeded, pg_url):
    engines = [make_engine(pg_url), make_engine(pg_url)]  # two nodes: two sessions
    finished = [threading.Event(), threading.Event()]
    outcomes = [None, None]
    telemetry = RecordingTelemetry()

    def node(i):
        def run():
            written = run_rollups(InfluxRollupStore(seeded), RUN_AT)
            finished[1 - i].wait(10)  # hold the lock until the other node has tried
            return written
        outcomes[i] = run_job(JobSpec("rollups", 60, run), PgAdvisoryJobLock(engines[i]),
                              telemetry)
        finished[i].set()

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=lambda i=i: (barrier.wait(), node(i))) for i in (0, 1)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        for engine in engines:
            engine.dispose()
    assert sorted(outcomes) == ["ok", "skipped"]
    runs = {r[1]["outcome"]: r[2] for r in telemetry.records}
    minute, hour = expected_rollups(timedelta(minutes=1)), expected_rollups(timedelta(hours=1))
    assert runs["ok"]["items"] == len(minute) + len(hour)
    assert runs["skipped"]["items"] == 0
    assert_same(stored_rollups(seeded, "rollup_1m"), minute)
    assert_same(stored_rollups(seeded, "rollup_1h"), hour)
