"""The analysis jobs' intervals and windows come from configuration
(JOB_INTERVALS, HEALTH_WINDOW_S, ADVICE_WINDOW_S, IMPACT_WINDOW_S): parsed,
refused with a clear error when wrong, and passed through to the jobs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import create_engine

from service.adapters.influx import InfluxClient
from service.config import ConfigError, Settings
from service.domain.job_settings import DEFAULT_INTERVALS, JobSettings, parse_intervals
from service.service_layer import analysis
from tests.support.fakes import RecordingTelemetry

QUIET = {"delivered_per_s": 100.0, "delivery_p99_ms": 30.0, "drops_per_s": 0.0,
         "cache_hit_rate": 0.95, "rss_bytes": 100e6}


def test_the_defaults_are_the_production_intervals_and_windows():
    jobs = Settings.from_env({}).jobs
    assert dict(jobs.intervals) == {"rollups": 60.0, "trends": 300.0, "regressions": 300.0,
                                    "health": 60.0, "recommendations": 300.0, "impact": 60.0}
    assert jobs.health_window == analysis.HEALTH_WINDOW == timedelta(minutes=5)
    assert jobs.advice_window == analysis.ADVICE_WINDOW == timedelta(minutes=30)
    assert jobs.impact_window == analysis.IMPACT_SPAN == timedelta(minutes=15)
    assert jobs.impact_min_after == analysis.IMPACT_MIN_AFTER


def test_named_jobs_take_their_interval_and_the_others_keep_theirs():
    intervals = parse_intervals(" health=5, recommendations=10 ,impact=2.5,")
    assert intervals == {**DEFAULT_INTERVALS, "health": 5.0, "recommendations": 10.0,
                         "impact": 2.5}


def test_the_windows_are_read_in_seconds():
    jobs = Settings.from_env({"HEALTH_WINDOW_S": "30", "ADVICE_WINDOW_S": "60",
                              "IMPACT_WINDOW_S": "45"}).jobs
    assert (jobs.health_window, jobs.advice_window, jobs.impact_window) == (
        timedelta(seconds=30), timedelta(seconds=60), timedelta(seconds=45))
    assert jobs.impact_min_after == timedelta(seconds=15)


@pytest.mark.parametrize(("env", "words"), [
    ({"JOB_INTERVALS": "helth=5"}, "'helth=5' is not job=seconds with a job of rollups"),
    ({"JOB_INTERVALS": "health"}, "'health' is not job=seconds"),
    ({"JOB_INTERVALS": "health=5,health=6"}, "health is given twice"),
    ({"JOB_INTERVALS": "impact=soon"}, "impact must be a number of seconds, not 'soon'"),
    ({"JOB_INTERVALS": "impact=0.1"}, "impact must be 1-86400 seconds"),
    ({"JOB_INTERVALS": "impact=nan"}, "impact must be 1-86400 seconds"),
    ({"IMPACT_WINDOW_S": "2"}, "IMPACT_WINDOW_S must be 10-604800 seconds, not 2"),
    ({"ADVICE_WINDOW_S": "-60"}, "ADVICE_WINDOW_S must be 10-604800 seconds"),
    ({"HEALTH_WINDOW_S": "five"}, "HEALTH_WINDOW_S must be a number of seconds"),
])
def test_a_bad_value_is_refused_with_the_variable_named(env, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        Settings.from_env(env)


def test_the_scheduler_gets_the_configured_intervals(tmp_path):
    from service.wiring.jobs_factory import build_jobs

    class Config:
        values = {"max_connections": 10, "memory_budget_mb": 64}

    settings = Settings(var_dir=str(tmp_path), node_id="n1",
                        jobs=JobSettings(intervals=parse_intervals("health=5,impact=7")))
    jobs = build_jobs(settings, InfluxClient(settings.influx_settings()),
                      create_engine("sqlite://"), Config(), RecordingTelemetry())
    by_name = {j.name: j.interval_s for j in jobs}
    assert by_name["health"] == 5.0 and by_name["impact"] == 7.0
    assert by_name["recommendations"] == 300.0


class Recording:
    """A reader that records the windows asked for."""

    def __init__(self):
        self.asked: list[timedelta] = []

    def health_inputs(self, start, end):
        self.asked.append(end - start)
        return dict(QUIET)

    def window_summary(self, start, end):
        self.asked.append(end - start)
        return dict(QUIET)


def test_the_advice_reads_the_configured_window(config):
    reader = Recording()
    analysis.run_advice(reader, config, window=timedelta(seconds=60))
    assert reader.asked == [timedelta(seconds=60)]


def test_the_impact_job_measures_the_configured_window_once_it_has_passed(config, log):
    config.change({"parameters": {"batch_size": 5}}, actor="alice")
    at = log.events[-1].at
    reader = Recording()
    span = timedelta(seconds=40)
    # 30 s after: the 40 s after-window is not over, nothing is measured yet
    assert analysis.run_impact(reader, config, auto_rollback=True, now=at + timedelta(seconds=30),
                               span=span, min_after=span / 3) == 0
    assert analysis.run_impact(reader, config, auto_rollback=True, now=at + timedelta(seconds=41),
                               span=span, min_after=span / 3) == 1
    assert reader.asked == [span, span]
    assert log.events[-1].reason == "measured 0.666667 min each side of #1"
