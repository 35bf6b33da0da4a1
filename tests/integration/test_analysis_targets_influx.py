"""The health, recommendations and impact jobs' points for the Overview, on
real InfluxDB 1.6, written the way the jobs process writes (its telemetry
ring and writer) and read back with the queries the dashboards use."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.adapters.influx_writer import InfluxWriter
from service.domain import health
from service.domain.tuning import preset
from service.service_layer import analysis
from service.service_layer.live_config import LiveConfig
from service.service_layer.telemetry import TelemetryRing
from tests.support.analysis_figures import Figures
from tests.support.fakes import InMemoryControlLog

pytestmark = pytest.mark.influx
URL = "https://notify.example.com"


def rows(influx, query):
    """(tags, [{column: value}]) per series of the first statement."""
    out = []
    for series in influx.query(query)[0].get("series", []):
        out.append((series.get("tags", {}),
                    [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]))
    return out


def test_targets_open_recommendations_and_impact_read_back_as_the_overview_reads(influx):
    ring = TelemetryRing()
    writer = InfluxWriter(ring, influx, {"node": "jobs-1", "role": "jobs"})
    log = InMemoryControlLog()
    config = LiveConfig("balanced", {}, lambda values: None, ring, log=log)
    cold = Figures({"delivered_per_s": 50.0, "delivery_p99_ms": 40.0, "drops_per_s": 0.0,
                    "cache_hit_rate": 0.5, "rss_node_max": 100e6, "cache_lookups": 5000.0,
                    "mean_batch": 3.0, "wait_p50_ms": 48.0, "cpu_node_max": 0.8})
    analysis.run_health(cold, ring, config, 1 << 30)
    analysis.run_recommendations(cold, config, ring, URL)
    config.change({"level": "aggressive"}, actor="alice")
    analysis.run_health(cold, ring, config, 1 << 30)
    changed_at = log.events[-1].at
    analysis.run_impact(cold, config, auto_rollback=True, telemetry=ring,
                        now=changed_at + timedelta(minutes=16))
    writer.close()

    [(_, targets)] = rows(influx, 'SELECT "level", "delivery_p99_ms", "connections", '
                                  '"rss_bytes" FROM "raw"."analysis_targets"')
    assert [t["level"] for t in targets] == ["balanced", "aggressive"]
    aggressive = preset("aggressive")
    assert targets[-1]["delivery_p99_ms"] == health.p99_target_ms(
        aggressive["batch_timeout_ms"])
    assert targets[-1]["connections"] == aggressive["max_connections"]
    assert targets[-1]["rss_bytes"] == aggressive["memory_budget_mb"] << 20
    # the threshold line as a panel draws it
    [(_, line)] = rows(influx, 'SELECT last("delivery_p99_ms") FROM "raw"."analysis_targets" '
                               "WHERE time > now() - 10m GROUP BY time(1m) fill(previous)")
    assert line[-1]["last"] == targets[-1]["delivery_p99_ms"]

    open_now = rows(influx, 'SELECT "id", "change", "evidence", "expected", "apply" '
                            'FROM "raw"."analysis_recommendation" WHERE time > now() - 10m '
                            'GROUP BY "rule" ORDER BY time DESC LIMIT 1')
    by_rule = {tags["rule"]: values[0] for tags, values in open_now}
    assert set(by_rule) == {"cache-grow", "batch-timeout-up"}
    assert by_rule["batch-timeout-up"]["change"] == "batch_timeout_ms 50 -> 75"
    assert by_rule["batch-timeout-up"]["apply"] == (
        'curl -X POST -H "Authorization: Bearer $ADMIN_TOKEN" '
        f"{URL}/api/v1/recommendations/batch-timeout-up:batch_timeout_ms=75.0/apply")

    [(tags, [impact])] = rows(influx, 'SELECT * FROM "raw"."analysis_impact" GROUP BY "verdict"')
    assert tags == {"verdict": "neutral"}
    assert impact["change"].startswith(f"#{log.events[-2].seq} level balanced -> aggressive; ")
    assert impact["delivery_p99_ms_before"] == impact["delivery_p99_ms_after"] == 40.0
    assert impact["rolled_back"] == 0 and impact["recommendation"] == ""
    field_types = {k: v for k, v in (
        influx.query('SHOW FIELD KEYS FROM "raw"."analysis_impact"')[0]["series"][0]["values"])}
    assert field_types["rolled_back"] == "integer"
    assert field_types["delivered_per_s_before"] == "float"
