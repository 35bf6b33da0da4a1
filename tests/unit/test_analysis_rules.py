"""Health thresholds, recommendation rules (each firing and not), impact
verdicts, and the jobs that append them to the control log (in memory)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.domain import advice, health
from service.domain.control import EventDraft
from service.domain.impact import IMPROVED, INCONCLUSIVE, NEUTRAL, REGRESSED, judge
from service.domain.tuning import preset
from service.service_layer import analysis
from tests.support.fakes import RecordingTelemetry

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
BALANCED = {"level": "balanced", "parameters": preset("balanced")}
LIMITS = analysis.limits(preset("balanced"), 1 << 30)
QUIET = {"delivered_per_s": 100.0, "delivery_p99_ms": 30.0, "drops_per_s": 0.0,
         "cache_hit_rate": 0.95, "rss_bytes": 100e6, "published_per_s": 2.0,
         "throttled_per_s": 0.0, "mean_batch": 30.0, "wait_p50_ms": 10.0,
         "connections_node_max": 100.0, "rss_node_max": 100e6, "cpu_node_max": 0.4,
         "db_query_ms": 2.0, "db_slow": 0.0, "telemetry_dropped": 0.0,
         "spool_bytes": 0.0, "job_errors": 0.0, "cache_lookups": 5000.0,
         "slow_consumer_drops_per_s": 0.0, "wait_p99_ms": 12.0}


def test_a_quiet_cluster_is_healthy_everywhere():
    components = health.assess(QUIET, LIMITS)
    assert set(components) == set(health.COMPONENTS)
    assert {c["status"] for c in components.values()} == {"healthy"}
    assert health.overall(components) == "healthy"


@pytest.mark.parametrize(("figure", "value", "component", "status"), [
    ("delivery_p99_ms", 150.0, "delivery", "warning"),      # over 2 x 50 + 20 ms
    ("delivery_p99_ms", 400.0, "delivery", "critical"),     # over 3x that
    ("drops_per_s", 0.5, "delivery", "warning"),
    ("connections_node_max", 14_000.0, "connections", "warning"),   # of 15,000
    ("rss_node_max", 500e6, "connections", "critical"),             # of 512 MiB
    ("db_query_ms", 50.0, "storage", "warning"),
    ("cache_hit_rate", 0.4, "cache", "critical"),
    ("telemetry_dropped", 5.0, "telemetry", "warning"),
    ("job_errors", 4.0, "scheduler", "critical"),
])
def test_each_threshold_names_its_figure(figure, value, component, status):
    components = health.assess({**QUIET, figure: value}, LIMITS)
    assert components[component]["status"] == status
    assert components[component]["reason"] != "within thresholds"
    assert health.overall(components) == status


def test_low_priority_waiting_twice_the_timeout_is_within_the_target():
    assert health.assess({**QUIET, "delivery_p99_ms": 110.0}, LIMITS)["delivery"]["status"] \
        == "healthy"


def test_a_hit_rate_of_a_few_lookups_is_not_judged():
    few = health.assess({**QUIET, "cache_hit_rate": 0.0, "cache_lookups": 12.0}, LIMITS)
    assert few["cache"] == {"status": "healthy", "reason": "no data", "figures": {}}
    assert not [p for p in advice.propose({**QUIET, "cache_hit_rate": 0.1,
                                           "cache_lookups": 12.0}, BALANCED)]


def test_silence_is_no_data_but_publishing_without_delivery_is_a_warning():
    silent = health.assess({}, LIMITS)
    assert {c["reason"] for c in silent.values()} == {"no data"}
    stuck = health.assess({"published_per_s": 5.0}, LIMITS)
    assert stuck["delivery"]["status"] == "warning"


def test_every_health_threshold_and_rule_is_documented():
    operations = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    for rule in health.RULES:
        assert f"| {rule.component} | {rule.text} | {rule.warning:g} | {rule.critical:g} |" \
            in operations, rule
    for name in advice.RULES:
        assert f"| `{name}` |" in operations, name


@pytest.mark.parametrize(("rule", "fires", "quiet"), [
    ("batch-timeout-up", {"mean_batch": 3.0, "wait_p50_ms": 48.0, "cpu_node_max": 0.8},
     {"mean_batch": 3.0, "wait_p50_ms": 48.0, "cpu_node_max": 0.2}),
    ("cache-grow", {"cache_hit_rate": 0.5, "rss_node_max": 100e6},
     {"cache_hit_rate": 0.5, "rss_node_max": 400e6}),
    ("burst-down", {"throttled_per_s": 5.0, "slow_consumer_drops_per_s": 2.0},
     {"throttled_per_s": 5.0, "slow_consumer_drops_per_s": 0.0}),
    ("level-down", {"cpu_node_max": 0.1, "delivery_p99_ms": 150.0, "wait_p99_ms": 100.0},
     {"cpu_node_max": 0.5, "delivery_p99_ms": 150.0, "wait_p99_ms": 100.0}),
])
def test_each_rule_fires_on_its_evidence_and_not_without(rule, fires, quiet):
    [proposal] = [p for p in advice.propose({**QUIET, **fires}, BALANCED) if p.rule == rule]
    assert 0.5 <= proposal.confidence <= 0.95 and proposal.expected_effect
    assert rule not in {p.rule for p in advice.propose({**QUIET, **quiet}, BALANCED)}
    payload = proposal.payload()
    assert payload["id"] == proposal.id and payload["evidence"]


def test_proposed_changes_are_exact_and_within_range():
    by_rule = {p.rule: p for p in advice.propose(
        {**QUIET, "mean_batch": 3.0, "wait_p50_ms": 48.0, "cpu_node_max": 0.8,
         "cache_hit_rate": 0.5, "throttled_per_s": 1.0, "slow_consumer_drops_per_s": 2.0},
        BALANCED)}
    assert by_rule["batch-timeout-up"].change == {"parameters": {"batch_timeout_ms": 75}}
    assert by_rule["cache-grow"].change == {"parameters": {
        "cache_entries": preset("balanced")["cache_entries"] * 2}}
    assert "normal=" in by_rule["burst-down"].change["parameters"]["throttle"]
    bottom = {"level": "conservative", "parameters": preset("conservative")}
    assert not [p for p in advice.propose({**QUIET, "cpu_node_max": 0.1,
                                           "delivery_p99_ms": 90.0, "wait_p99_ms": 50.0}, bottom)
                if p.rule == "level-down"]


def rules_fired(figures):
    return {p.rule for p in advice.propose({**QUIET, **figures}, BALANCED)}


def test_burst_down_counts_only_the_drops_a_burst_can_cause():
    # the full run's scenario: drops were clients leaving with a batch waiting
    left = {"throttled_per_s": 5.0, "drops_per_s": 6.73, "slow_consumer_drops_per_s": 0.0}
    assert "burst-down" not in rules_fired(left)
    assert "burst-down" in rules_fired({**left, "slow_consumer_drops_per_s": 0.5})
    assert "burst-down" not in rules_fired({"throttled_per_s": 0.0, "drops_per_s": 6.73,
                                            "slow_consumer_drops_per_s": 0.5})
    assert advice.PROMISES["burst-down"] == ("slow_consumer_drops_per_s", "down")


@pytest.mark.parametrize(("p99", "wait_p99_ms", "fires"), [
    (150.0, 75.0, True),     # half of p99, within 1.5 x balanced's 100 ms longest wait
    (150.0, 74.9, False),    # just below half
    (377.0, 30.0, False),    # the latency is from before the batches (commits)
    (300.0, 150.0, True),    # 1.5 times the longest wait
    (300.0, 150.1, False),   # past it: the batches flushed late
    (185.0, 183.0, False),   # the first level-down run: the lower level cut p99 by 10 %
    (400.0, 400.0, False),   # a run on commits: waits as long as the whole p99
])
def test_level_down_fires_only_when_the_latency_is_the_batching(p99, wait_p99_ms, fires):
    figures = {"cpu_node_max": 0.1, "delivery_p99_ms": p99, "wait_p99_ms": wait_p99_ms}
    assert ("level-down" in rules_fired(figures)) is fires
    assert "level-down" not in rules_fired({**figures, "wait_p99_ms": None})


def test_level_down_proposes_the_level_below_only_where_the_node_fits_it():
    figures = {"cpu_node_max": 0.1, "delivery_p99_ms": 140.0, "wait_p99_ms": 105.0}
    [proposal] = [p for p in advice.propose({**QUIET, **figures}, BALANCED)
                  if p.rule == "level-down"]
    assert proposal.change == {"level": "conservative"}  # batches wait 25 ms, not 50
    # conservative allows 5,000 connections and 256 MiB: past 80 % or 60 %, silent
    assert "level-down" not in rules_fired({**figures, "connections_node_max": 4_001.0})
    assert "level-down" in rules_fired({**figures, "connections_node_max": 4_000.0})
    assert "level-down" not in rules_fired({**figures, "rss_node_max": 0.61 * 256 * 2**20})
    assert "level-down" not in rules_fired({**figures, "rss_node_max": None})


@pytest.mark.parametrize(("before", "after", "verdict"), [
    ({"delivery_p99_ms": 40.0}, {"delivery_p99_ms": 80.0}, REGRESSED),
    ({"delivery_p99_ms": 40.0}, {"delivery_p99_ms": 45.0}, NEUTRAL),   # +12 %, 5 ms
    ({"delivery_p99_ms": 80.0}, {"delivery_p99_ms": 40.0}, IMPROVED),
    ({"drops_per_s": 0.0}, {"drops_per_s": 3.0}, REGRESSED),
    ({"drops_per_s": 4.0}, {"drops_per_s": 1.0}, IMPROVED),
    # burst-down's promise: fewer slow-consumer drops, though all drops stay under 1/s
    ({"slow_consumer_drops_per_s": 0.8}, {"slow_consumer_drops_per_s": 0.2}, IMPROVED),
    ({"slow_consumer_drops_per_s": 0.8}, {"slow_consumer_drops_per_s": 0.5}, NEUTRAL),
    ({"delivered_per_s": 100.0}, {"delivered_per_s": 10.0}, NEUTRAL),  # less to send
    ({"delivery_p99_ms": None}, {"delivery_p99_ms": None}, INCONCLUSIVE),
])
def test_impact_verdicts(before, after, verdict):
    assert judge(before, after)[0] == verdict


class Figures:
    """A reader whose figures depend on the time: ``regimes`` are (from, figures)."""

    def __init__(self, regimes):
        self.regimes = sorted(regimes, key=lambda r: r[0])

    def _at(self, moment):
        current = {}
        for start, figures in self.regimes:
            if start <= moment:
                current = figures
        return current

    def health_inputs(self, start, end):
        return dict(self._at(end - timedelta(seconds=1)))

    def window_summary(self, start, end):
        return {k: v for k, v in self._at(end - timedelta(seconds=1)).items()
                if k in ("delivered_per_s", "delivery_p99_ms", "drops_per_s",
                         "cache_hit_rate", "rss_bytes")}


def test_health_job_writes_one_point_per_component(config):
    telemetry = RecordingTelemetry()
    reader = Figures([(NOW - timedelta(hours=1), {**QUIET, "db_query_ms": 150.0})])
    assert analysis.run_health(reader, telemetry, config, 1 << 30, now=NOW) == 6
    points = {dict(t)["component"]: (dict(t)["status"], f["level"])
              for m, t, f in telemetry.records if m == "analysis_health"}
    assert points["storage"] == ("critical", 2) and points["cache"] == ("healthy", 0)


def test_advice_is_issued_once_and_expires_with_its_evidence(config, log):
    slow_cache = {**QUIET, "cache_hit_rate": 0.5}
    reader = Figures([(NOW - timedelta(hours=1), slow_cache)])
    assert analysis.run_advice(reader, config, now=NOW) == 1
    [issued] = [e for e in log.events if e.type == "recommendation_issued"]
    assert issued.actor == "jobs" and issued.payload["rule"] == "cache-grow"
    assert analysis.run_advice(reader, config, now=NOW + timedelta(minutes=5)) == 0
    reader.regimes.append((NOW + timedelta(minutes=6), QUIET))
    assert analysis.run_advice(reader, config, now=NOW + timedelta(minutes=10)) == 1
    assert log.events[-1].type == "recommendation_dismissed"
    assert "expired" in log.events[-1].reason
    silent = Figures([])
    assert analysis.run_advice(silent, config, now=NOW + timedelta(minutes=20)) == 0


def test_a_change_is_measured_once_and_a_clear_regression_rolled_back(config, log):
    config.change({"parameters": {"batch_size": 5}}, actor="alice")
    changed_at = log.events[-1].at
    reader = Figures([(changed_at - timedelta(hours=1), {**QUIET, "delivery_p99_ms": 30.0}),
                      (changed_at, {**QUIET, "delivery_p99_ms": 90.0})])
    early = changed_at + timedelta(minutes=10)
    assert analysis.run_impact(reader, config, auto_rollback=True, now=early) == 0
    later = changed_at + timedelta(minutes=16)
    assert analysis.run_impact(reader, config, auto_rollback=True, now=later) == 2
    impact, rollback = log.events[-2:]
    assert impact.type == "impact_measured" and impact.payload["verdict"] == "regressed"
    assert impact.payload["rolled_back"] is True
    assert impact.payload["effect"]["delivery_p99_ms"]["delta_pct"] == 200.0
    assert rollback.type == "rollback" and rollback.payload == {"to_seq": 0}
    assert rollback.actor == "jobs" and "p99" in rollback.reason
    assert config.values["batch_size"] == preset("balanced")["batch_size"]
    # the rollback is a change too: measured (its clock reads it 16 min old
    # here), never rolled back itself; then nothing is left to measure
    assert analysis.run_impact(reader, config, auto_rollback=True, now=later) == 1
    assert log.events[-1].payload["seq"] == rollback.seq
    assert log.events[-1].payload["rolled_back"] is False
    assert analysis.run_impact(reader, config, auto_rollback=True, now=later) == 0


@pytest.mark.parametrize(("change", "p99_after", "verdict"), [
    ({"batch_timeout_ms": 75}, 75.0, "neutral"),      # +45 ms, within the target's +50 ms
    ({"batch_timeout_ms": 75}, 272.0, "regressed"),   # the bench's run: far past it
    ({"batch_size": 5}, 75.0, "regressed"),            # moves no target: all of it counts
])
def test_a_rise_of_p99_that_the_change_asked_for_is_no_regression(config, log, change,
                                                                  p99_after, verdict):
    config.change({"parameters": change}, actor="alice")  # balanced: 50 ms -> target 120
    at = log.events[-1].at
    reader = Figures([(at - timedelta(hours=1), {**QUIET, "delivery_p99_ms": 30.0}),
                      (at, {**QUIET, "delivery_p99_ms": p99_after})])
    analysis.run_impact(reader, config, auto_rollback=True, now=at + timedelta(minutes=16))
    [impact] = [e for e in log.events if e.type == "impact_measured"]
    assert impact.payload["verdict"] == verdict


def test_without_auto_rollback_the_regression_is_only_recorded(config, log):
    config.change({"level": "aggressive"}, actor="alice")
    at = log.events[-1].at
    reader = Figures([(at - timedelta(hours=1), {**QUIET, "drops_per_s": 0.0}),
                      (at, {**QUIET, "drops_per_s": 5.0})])
    analysis.run_impact(reader, config, auto_rollback=False, now=at + timedelta(minutes=20))
    assert log.events[-1].type == "impact_measured"
    assert log.events[-1].payload["rolled_back"] is False and config.level == "aggressive"


def test_the_expected_effect_of_an_applied_recommendation_is_recorded(config, log):
    config.append([EventDraft("recommendation_issued",
                              {"id": "r", "level": "aggressive", "expected_effect": "faster"},
                              "jobs")])
    from service.service_layer.recommendations import apply_recommendation

    apply_recommendation(config, "r", "alice")
    at = log.events[-1].at
    reader = Figures([(at - timedelta(hours=1), QUIET)])
    analysis.run_impact(reader, config, auto_rollback=True, now=at + timedelta(minutes=20))
    assert log.events[-1].payload["expected"] == "faster"
    assert log.events[-1].payload["verdict"] == "neutral"


def test_regressions_are_found_in_each_metric_and_stamped_with_their_bucket():
    import random

    from service.domain.changepoints import detect
    from tests.support.fake_metrics import InMemoryMetricSeries

    rng = random.Random(7)
    start = NOW - timedelta(hours=3)
    minutes = [start + timedelta(minutes=i) for i in range(180)]
    p99 = [(t, (40.0 if i < 120 else 52.0) * rng.gauss(1, 0.05)) for i, t in enumerate(minutes)]
    flat = [(t, 100.0 * rng.gauss(1, 0.05)) for t in minutes]
    series = InMemoryMetricSeries({("delivery_p99_ms", "1m"): p99, ("delivery_rate", "1m"): flat})
    rows = analysis.find_regressions(series, detect, now=NOW)
    [row] = rows
    assert row["metric"] == "delivery_p99_ms" and row["direction"] == "up"
    assert abs((row["at"] - minutes[120]).total_seconds()) <= 5 * 60
    assert 20 <= row["magnitude_pct"] <= 40 and "delivery_p99_ms up" in row["text"]


def test_a_trend_that_bends_is_a_regression_worded_as_a_bend():
    import random

    from service.domain.changepoints import detect
    from tests.support.fake_metrics import InMemoryMetricSeries

    rng = random.Random(3)
    start = NOW - timedelta(hours=3)
    minutes = [start + timedelta(minutes=i) for i in range(180)]
    # memory flat at 200, then growing 1 a minute from minute 90: a leak starting
    rss = [(t, 200.0 + max(0, i - 90) * 1.0 + rng.gauss(0, 1.0)) for i, t in enumerate(minutes)]
    series = InMemoryMetricSeries({("rss_bytes", "1m"): rss})
    rows = analysis.find_regressions(series, detect, now=NOW)
    [row] = [r for r in rows if r["kind"] == "slope"]
    assert row["direction"] == "up" and "rss_bytes trend bent up" in row["text"]
    assert abs((row["at"] - minutes[91]).total_seconds()) <= 5 * 60
