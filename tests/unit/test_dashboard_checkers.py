"""Each dashboard checker (tests/support/dashboard_layout_checks.py and
dashboard_query_checks.py) failing on a broken example, so that the
dashboard tests can fail."""

from __future__ import annotations

import json

from tests.support.dashboard_layout_checks import (
    grid_problems,
    legend_problems,
    link_problems,
    undefined_variables,
    unused_variables,
    url_problems,
)
from tests.support.dashboard_query_checks import (
    annotation_problems,
    newest_first_problems,
    rate_problems,
    raw_policy_problems,
    reads_rollable_from_raw,
    rollup_problems,
    threshold_problems,
)
from tests.support.dashboard_walk import link_urls

# --------------------------------------------------------------------------
# The checkers fail on broken examples


def test_grid_checker_rejects_overlap_and_overflow():
    panels = [{"title": "a", "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8}},
              {"title": "b", "gridPos": {"x": 6, "y": 4, "w": 12, "h": 8}},
              {"title": "c", "gridPos": {"x": 20, "y": 20, "w": 6, "h": 8}},
              {"title": "d", "gridPos": {"x": 0, "y": 8, "w": 6}}]
    problems = grid_problems(panels)
    assert any("'b' overlaps 'a'" in p for p in problems), problems
    assert any("'c'" in p and "outside" in p for p in problems), problems
    assert any("'d'" in p for p in problems), problems
    assert grid_problems(panels[:1] + [{"title": "e", "gridPos":
                                        {"x": 12, "y": 0, "w": 12, "h": 8}}]) == []


def test_link_checker_rejects_unknown_uids_and_tags():
    known = {"one": {"notify"}, "two": {"notify"}}
    broken = {"uid": "one",
              "links": [{"type": "dashboards", "title": "t", "tags": ["other"]},
                        {"type": "link", "title": "l", "url": "/d/nope?x=1"}],
              "panels": [{"title": "p", "links": [{"url": "/d/gone"}]}]}
    problems = link_problems(broken, known)
    assert len(problems) == 3, problems
    alone = {"uid": "one", "links": [{"type": "dashboards", "title": "t", "tags": ["notify"]}]}
    assert link_problems(alone, {"one": {"notify"}}) != []
    assert link_problems(alone, known) == []


def test_url_checker_takes_absolute_urls_variables_and_dashboard_paths_only():
    variables = {"docs": "http://localhost:8000/docs", "bad": "docs"}
    for url in ("https://grafana.com/docs", "/d/notify-overview?var-rp=%22raw%22",
                "${docs}/runbook#notifydeliveryp99high", "${__url_time_range}"):
        assert url_problems(url, variables) == [], url
    for url, complaint in (("docs/runbook.md#x", "neither absolute"),
                           ("/alerting/list", "neither absolute"),
                           ("${bad}/runbook", "neither absolute"),
                           ("${nope}/x", "no value"),
                           ("http://localhost:8000/api/v1/recommendations", "401")):
        assert any(complaint in p for p in url_problems(url, variables)), url
    text = {"panels": [{"type": "text", "options": {"content":
            "[report](${s}/admin/api/performance/report) `${s}/api/v1/x` <docs/a.md>"}}]}
    assert link_urls(text) == ["${s}/admin/api/performance/report"]


def test_annotation_checker_reads_as_grafana_does():
    good = {"name": "a", "query": 'SELECT "text", "kind", "level" FROM "raw"."config_change" '
                                  "WHERE $timeFilter", "textColumn": "text",
            "tagsColumn": "kind,level"}
    assert annotation_problems(good) == []
    same = {**good, "query": 'SELECT "event", "queued_bytes" FROM "notify_backpressure"',
            "textColumn": "event", "tagsColumn": "event"}
    assert any("as tag" in p for p in annotation_problems(same))
    actor = {**good, "query": good["query"].replace('"level"', '"level", "actor"'),
             "tagsColumn": "kind,level,actor"}
    assert any("'actor'" in p and "drops" in p for p in annotation_problems(actor))
    optional = {**good, "query": 'SELECT "text", "eta_s" FROM "analysis_trend"',
                "tagsColumn": "eta_s"}
    problems = annotation_problems(optional)
    assert any("optional_fields" in p for p in problems), problems
    assert any("a number" in p for p in problems), problems
    assert any("no tagsColumn" in p for p in annotation_problems({**good, "tagsColumn": ""}))
    # the first space is removed, the second stays: " level" is no column's name
    spaced = annotation_problems({**good, "tagsColumn": "text, kind, level"})
    assert any("' level'" in p for p in spaced), spaced
    # the backend path matches by substring: a text column containing a tag name is a tag
    clash = {**good, "query": 'SELECT "text", "kind" FROM "config_change"', "tagsColumn": "t"}
    assert any("'text' as tag" in p for p in annotation_problems(clash))


def test_threshold_checker_wants_limits_from_data():
    line = {"refId": "B", "query": 'SELECT last("connections") FROM "raw"."analysis_targets" '
                                   "WHERE $timeFilter GROUP BY time($__interval)"}
    dashed = {"matcher": {"id": "byFrameRefID", "options": "B"},
              "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash"}}]}
    series = {"type": "timeseries", "title": "c",
              "targets": [{"refId": "A", "query": 'SELECT max("connections") FROM '
                                                  '$rp."notify_ping" WHERE $timeFilter'}, line],
              "fieldConfig": {"defaults": {"thresholds": {"steps": [{"value": None}]}},
                              "overrides": [dashed]}}
    assert threshold_problems(series) == []
    constant = json.loads(json.dumps(series))
    constant["fieldConfig"]["defaults"]["thresholds"]["steps"].append({"value": 1000})
    constant["fieldConfig"]["defaults"]["custom"] = {"thresholdsStyle": {"mode": "dashed"}}
    assert len(threshold_problems(constant)) == 2
    undrawn = {**series, "targets": series["targets"][:1]}
    assert any("no dashed series" in p for p in threshold_problems(undrawn))
    stat = {**series, "type": "stat", "transformations": [
        {"id": "configFromData", "options": {"configRefId": "A"}}]}
    assert any("not analysis_targets" in p for p in threshold_problems(stat))
    cache = {**constant, "targets": [{"refId": "A", "query": 'SELECT sum("hits") FROM "cache"'}]}
    assert threshold_problems(cache) == []  # the cache's thresholds are the same at every level


def test_rate_checker_rejects_counts_per_interval():
    def panel(kind, query, **more):
        return {"type": kind, "title": "p", "targets": [{"query": query}], **more}

    per_interval = 'SELECT sum("count") AS "n" FROM $rp."notify_drop" WHERE $timeFilter'
    assert rate_problems(panel("timeseries", per_interval))
    assert rate_problems(panel("timeseries", per_interval.replace(
        'sum("count")', 'sum("count") * 1000 / $__interval_ms'))) == []
    assert rate_problems(panel("timeseries", 'SELECT sum("hits") / (sum("hits") + '
                                             'sum("misses")) FROM "cache"')) == []
    increase = 'SELECT non_negative_difference(last("count")) FROM "telemetry_dropped"'
    assert rate_problems(panel("timeseries", increase))
    window = 'SELECT sum("count") / 300 FROM "raw"."notify_throttle" WHERE $timeFilter'
    assert rate_problems(panel("stat", window, timeFrom="5m")) == []
    assert rate_problems(panel("stat", window, timeFrom="15m"))
    assert rate_problems(panel("stat", window))


def test_legend_checker_wants_a_table_with_last_mean_and_max():
    def panel(legend):
        return {"type": "timeseries", "title": "p", "options": {"legend": legend}}

    assert legend_problems(panel({"displayMode": "table",
                                  "calcs": ["lastNotNull", "mean", "max"]})) == []
    assert len(legend_problems(panel({"displayMode": "list"}))) == 4
    assert len(legend_problems(panel({"displayMode": "table", "calcs": ["mean"]}))) == 2


def test_raw_policy_and_newest_first_checkers():
    assert raw_policy_problems('SELECT "x" FROM "raw"."m", $rp."n" WHERE $timeFilter') == []
    assert raw_policy_problems('SHOW TAG VALUES FROM "raw"."process" WITH KEY = "node"') == []
    assert raw_policy_problems('SELECT "x" FROM "m" WHERE $timeFilter')
    assert raw_policy_problems('SELECT "x" FROM ""."m" WHERE $timeFilter')
    grouped = ('SELECT "seq" FROM "raw"."control_event" WHERE $timeFilter GROUP BY "type" '
               "ORDER BY time DESC LIMIT 200")
    assert newest_first_problems(grouped)
    assert newest_first_problems(grouped.replace("LIMIT 200", "LIMIT 1")) == []
    assert newest_first_problems(grouped.replace('GROUP BY "type" ', "")) == []


def test_variable_checker_rejects_undefined_and_unused_variables():
    dashboard = {
        "templating": {"list": [{"name": "node", "type": "query", "query": ""},
                                {"name": "idle", "type": "custom", "query": "a"}]},
        "panels": [{"title": "p", "interval": "${nope:text}", "targets": [
            {"query": 'SELECT 1 FROM "x" WHERE "node" =~ /^$node$/ AND $timeFilter '
                      "AND [[other]] GROUP BY time($__interval)"}]},
                   {"title": "t", "type": "text", "options": {"content": "$ADMIN_TOKEN $x"}}],
    }
    assert sorted(undefined_variables(dashboard)) == [
        "panel 'p' interval: $nope is not defined", "panel 'p' query: $other is not defined",
        "panel 't' text: $x is not defined"]
    assert unused_variables(dashboard) == ["variable $idle is never used"]


def test_rollup_checker_rejects_raw_only_fields_and_measurements():
    ok = ('SELECT max("latency_ms_p99") FROM $rp."notify_delivery" WHERE "mode" = \'live\' '
          "AND $timeFilter GROUP BY time($__interval)")
    assert rollup_problems(ok) == []
    assert rollup_problems(ok.replace("$rp.", "")) == []  # raw needs no rollup
    assert reads_rollable_from_raw(ok.replace("$rp.", "")) == ["notify_delivery"]
    assert reads_rollable_from_raw(ok) == []
    error = 'SELECT last("error") FROM $rp."job_run" WHERE $timeFilter'
    assert rollup_problems(error) == ["job_run.error is not rolled up"]
    event = 'SELECT "text" FROM ${rp}."config_change" WHERE $timeFilter'
    assert rollup_problems(event) == ["config_change is not rolled up: it cannot switch to a "
                                      "rollup"]
