"""What the analysis jobs write for the Overview: the live level's targets
(``analysis_targets``) from the one p99 target health and advice use, one
point per open recommendation with at most one open per rule
(``analysis_recommendation``), and one point per measured impact
(``analysis_impact``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.domain import advice, health
from service.domain.control import EventDraft
from service.domain.measurements import CATALOGUE
from service.domain.tuning import preset
from service.service_layer import analysis
from service.service_layer.analysis_points import apply_command
from service.service_layer.recommendations import list_recommendations
from service.service_layer.trend_job import trend_limits
from tests.support.fakes import RecordingTelemetry

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
QUIET = {"delivered_per_s": 100.0, "delivery_p99_ms": 30.0, "drops_per_s": 0.0,
         "cache_hit_rate": 0.95, "rss_node_max": 100e6, "cpu_node_max": 0.4,
         "mean_batch": 30.0, "wait_p50_ms": 10.0, "cache_lookups": 5000.0}
URL = "https://notify.example.com"


class Figures:
    """A reader whose figures are set by the test; ``fail`` makes it raise."""

    def __init__(self, figures=None, fail=False):
        self.figures, self.fail = dict(figures or {}), fail

    def health_inputs(self, start, end):
        if self.fail:
            raise RuntimeError("InfluxDB did not answer")
        return dict(self.figures)

    def window_summary(self, start, end):
        return {k: self.figures.get(k) for k in ("delivered_per_s", "delivery_p99_ms",
                                                 "drops_per_s", "cache_hit_rate", "rss_bytes")}


def points(telemetry, measurement):
    return [(tags, fields) for m, tags, fields in telemetry.records if m == measurement]


@pytest.mark.parametrize("level", ["conservative", "balanced", "aggressive", "maximum"])
def test_health_advice_trends_and_targets_share_one_p99_target(level):
    values = preset(level)
    target = health.p99_target_ms(values["batch_timeout_ms"])
    limits = analysis.limits(values, 1 << 30)
    # health: a p99 at the target is exactly at its warning bound (ratio 1)
    assert health.figure("p99_over_target", {"delivery_p99_ms": target}, limits) == 1.0
    assert advice._p99_target({"level": level, "parameters": values}) == target
    assert trend_limits(values, 1 << 30)["delivery_p99_ms"] == target


def test_each_health_run_writes_the_live_levels_targets_even_without_data(config):
    telemetry = RecordingTelemetry()
    analysis.run_health(Figures({}), telemetry, config, 1 << 30, now=NOW)
    config.change({"level": "aggressive", "parameters": {"max_connections": 2000}})
    with pytest.raises(RuntimeError):
        analysis.run_health(Figures(fail=True), telemetry, config, 1 << 30, now=NOW)
    first, second = points(telemetry, "analysis_targets")
    balanced, aggressive = preset("balanced"), preset("aggressive")
    assert first == ({}, {"level": "balanced",
                          "delivery_p99_ms": health.p99_target_ms(balanced["batch_timeout_ms"]),
                          "connections": float(balanced["max_connections"]),
                          "rss_bytes": float(balanced["memory_budget_mb"] << 20)})
    assert second[1]["level"] == "aggressive" and second[1]["connections"] == 2000.0
    assert second[1]["delivery_p99_ms"] == health.p99_target_ms(aggressive["batch_timeout_ms"])
    assert second[1]["rss_bytes"] == float(aggressive["memory_budget_mb"] << 20)
    assert set(second[1]) == set(CATALOGUE["analysis_targets"].fields)


def test_open_recommendations_are_written_with_the_command_that_applies_them(config):
    telemetry = RecordingTelemetry()
    reader = Figures({**QUIET, "cache_hit_rate": 0.5, "mean_batch": 3.0,
                      "wait_p50_ms": 48.0, "cpu_node_max": 0.8})
    assert analysis.run_recommendations(reader, config, telemetry, URL, now=NOW) == 4
    written = {tags["rule"]: fields for tags, fields in
               points(telemetry, "analysis_recommendation")}
    assert set(written) == {"cache-grow", "batch-timeout-up"}
    timeout = written["batch-timeout-up"]
    assert timeout["id"] == "batch-timeout-up:batch_timeout_ms=75.0"
    assert timeout["change"] == "batch_timeout_ms 50 -> 75"
    assert timeout["evidence"] == "mean_batch=3, wait_p50_ms=48, cpu_node_max=0.8"
    assert timeout["expected"].startswith("larger batches")
    assert timeout["apply"] == ('curl -X POST -H "Authorization: Bearer $ADMIN_TOKEN" '
                                f"{URL}/api/v1/recommendations/"
                                "batch-timeout-up:batch_timeout_ms=75.0/apply")
    entries = preset("balanced")["cache_entries"]
    assert written["cache-grow"]["change"] == f"cache_entries {entries} -> {entries * 2}"
    assert set(timeout) == set(CATALOGUE["analysis_recommendation"].fields)
    # applied: no longer open, so the next run leaves it out
    from service.service_layer.recommendations import apply_recommendation

    apply_recommendation(config, timeout["id"], "alice")
    telemetry.records.clear()
    analysis.run_recommendations(reader, config, telemetry, URL, now=NOW)
    assert [t["rule"] for t, _ in points(telemetry, "analysis_recommendation")] == ["cache-grow"]


def test_a_rule_has_one_open_recommendation_even_when_its_proposal_moves_in_silence(config):
    """The cache stays cold while nothing is delivered (no evidence either
    way for expiring); an admin sets cache_entries meanwhile, so the rule
    proposes a new value. Before, both stayed open; the Overview keys them
    by rule and would show one at random."""
    telemetry = RecordingTelemetry()
    cold = {"cache_hit_rate": 0.5, "rss_node_max": 100e6, "cache_lookups": 5000.0}
    analysis.run_recommendations(Figures(cold), config, telemetry, URL, now=NOW)
    config.change({"parameters": {"cache_entries": 7000}}, actor="alice")
    later = NOW + timedelta(minutes=5)
    analysis.run_recommendations(Figures(cold), config, telemetry, URL, now=later)
    open_ = list_recommendations(config, "issued")
    assert [r["id"] for r in open_] == ["cache-grow:cache_entries=14000"]
    superseded = config.events()[-1]
    assert superseded.type == "recommendation_dismissed"
    first_id = f"cache-grow:cache_entries={2 * preset('balanced')['cache_entries']}"
    assert superseded.payload["id"] == first_id
    assert "superseded" in superseded.reason and "cache_entries=14000" in superseded.reason
    last_run = points(telemetry, "analysis_recommendation")[-1:]
    assert [f["id"] for _, f in last_run] == ["cache-grow:cache_entries=14000"]
    assert last_run[0][1]["change"] == "cache_entries 7000 -> 14000"


def test_of_a_log_with_two_open_the_newest_is_written(config):
    for rid in ("cache-grow:cache_entries=10", "cache-grow:cache_entries=20"):
        config.append([EventDraft("recommendation_issued",
                                  {"id": rid, "rule": "cache-grow",
                                   "parameters": {"cache_entries": int(rid[-2:])}}, "jobs")])
    telemetry = RecordingTelemetry()
    from service.service_layer.analysis_points import emit_open_recommendations

    assert emit_open_recommendations(telemetry, config, URL) == 1
    assert points(telemetry, "analysis_recommendation")[0][1]["id"].endswith("=20")


def test_the_apply_command_escapes_what_a_path_cannot_hold():
    command = apply_command("http://127.0.0.1:8000/", "odd id/with?chars")
    assert command.endswith("/api/v1/recommendations/odd%20id%2Fwith%3Fchars/apply")
    assert "8000//" not in command


def test_each_impact_measurement_is_written_with_its_figures(config, log):
    telemetry = RecordingTelemetry()
    config.change({"parameters": {"batch_size": 5}}, actor="alice")
    at = log.events[-1].at
    regressed = Figures({**QUIET, "delivery_p99_ms": 90.0})
    before = Figures({**QUIET, "delivery_p99_ms": 30.0})

    class Windows(Figures):
        def window_summary(self, start, end):
            source = before if end <= at else regressed
            return Figures.window_summary(source, start, end)

    appended = analysis.run_impact(Windows(), config, auto_rollback=True,
                                   now=at + timedelta(minutes=16), telemetry=telemetry)
    assert appended == 2
    [(tags, fields)] = points(telemetry, "analysis_impact")
    assert tags == {"verdict": "regressed"}
    assert fields == {"recommendation": "", "change": "#1 batch_size 50 -> 5",
                      "text": "delivery p99 +60 ms (+200 %)", "rolled_back": 1,
                      "delivery_p99_ms_before": 30.0, "delivery_p99_ms_after": 90.0,
                      "delivered_per_s_before": 100.0, "delivered_per_s_after": 100.0,
                      "drops_per_s_before": 0.0, "drops_per_s_after": 0.0,
                      "cache_hit_rate_before": 0.95, "cache_hit_rate_after": 0.95}
    assert set(fields) <= set(CATALOGUE["analysis_impact"].fields)


def test_an_impact_not_measured_lacks_the_figures_and_names_the_recommendation(config, log):
    config.append([EventDraft("recommendation_issued",
                              {"id": "r1", "rule": "level-down", "level": "conservative"}, "jobs")])
    from service.service_layer.recommendations import apply_recommendation

    apply_recommendation(config, "r1", "alice")
    config.change({"parameters": {"batch_size": 7}}, actor="bob")  # too soon after it
    telemetry = RecordingTelemetry()
    later = log.events[-1].at + timedelta(minutes=20)
    analysis.run_impact(Figures(QUIET), config, auto_rollback=True, now=later,
                        telemetry=telemetry)
    first = points(telemetry, "analysis_impact")[0]
    assert first[0] == {"verdict": "inconclusive"}
    assert first[1]["recommendation"] == "r1" and first[1]["rolled_back"] == 0
    assert first[1]["change"].startswith("#2 level balanced -> conservative; ")
    assert first[1]["text"] == "the next change came too soon"
    missing = set(CATALOGUE["analysis_impact"].fields) - set(first[1])
    assert missing == set(CATALOGUE["analysis_impact"].optional_fields)


def test_service_url_defaults_to_this_node_and_must_be_absolute():
    from service.config import ConfigError, Settings

    secrets = {"PUBLISH_TOKEN": "p" * 20, "ADMIN_TOKEN": "a" * 20, "USER_TOKEN_SECRET": "s"}
    assert Settings.from_env({**secrets, "PORT": "9001"}).service_url == "http://127.0.0.1:9001"
    given = Settings.from_env({**secrets, "SERVICE_URL": "https://notify.example.com/ops/"})
    assert given.service_url == "https://notify.example.com/ops"
    for bad in ("notify.example.com", "ftp://x", "http://"):
        with pytest.raises(ConfigError, match="SERVICE_URL"):
            Settings.from_env({**secrets, "SERVICE_URL": bad})
