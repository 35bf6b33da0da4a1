"""The structure of the provisioned Grafana dashboards (dashboards/*.json),
beyond what tests/unit/test_deploy_files.py checks of every dashboard (the
catalogue names in panel and variable queries, raw InfluxQL, $timeFilter in
panel targets, the datasource of panels and query variables).

Here, read the way Grafana 11.2 reads them (tests/support/grafana.py says
how, from Grafana's source): the six dashboards with their fixed uids and the
Overview's panel ids the alert rules link to; the 24-column grid; every
datasource reference, annotation, link and variable; the retention-policy
switch (``$rp``, docs/grafana.md) and the raw policy named where it is not
switched; annotations whose text and tags show; links a browser can follow;
limits that follow the optimization level drawn from data; counts as rates
per second; legends with last, mean and max. Each checker is also shown
failing on a broken example, so these tests can fail.
"""

from __future__ import annotations

import json
import re

import pytest

from service.domain.measurements import (
    ROLLUP_POLICIES,
)
from tests.support.compose import (
    ROOT,
    datasources,
    relative,
)
from tests.support.dashboard_expectations import (
    DASHBOARDS,
    GRAFANA_BUILTIN_DATASOURCE,
    OVERVIEW_PANELS,
    RAW_READS,
    RP_MIN_INTERVAL,
    SCHEMA_VERSION,
)
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
from tests.support.dashboard_walk import dashboards, datasource_refs, link_urls, variable_values
from tests.support.grafana import (
    RAW_POLICY,
    RP_FROM,
    RP_VARIABLE,
    all_panels,
    annotation_queries,
    dashboard_files,
    load_dashboard,
    measurement_of,
    query_panels,
    query_variables,
    rp_options,
    rule_folders,
    rule_panel_links,
    selected_columns,
    targets_of,
    variable_query,
)
from tests.support.influxql import clause, influxql_problems, measurements_in_from

# --------------------------------------------------------------------------
# The dashboards


def test_the_six_dashboards_exist_with_their_uids():
    found = {load_dashboard(path).get("uid"): path.name for path in dashboard_files()}
    assert found == DASHBOARDS


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_dashboard_parses_with_the_overviews_schema(path):
    dashboard = json.loads(path.read_text())
    assert dashboard["schemaVersion"] == SCHEMA_VERSION
    assert dashboard["title"].startswith("Notify / ")
    assert dashboard.get("description"), "say which question the dashboard answers"


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_panels_fit_the_grid_without_overlapping(path):
    dashboard = load_dashboard(path)
    panels = dashboard.get("panels") or []
    problems = grid_problems(panels)
    for panel in panels:  # a collapsed row keeps its panels inside it
        problems += grid_problems(panel.get("panels") or [])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_every_datasource_is_the_provisioned_one(path):
    provisioned = {ds.get("uid") for ds in datasources()}
    problems = []
    for where, ref in datasource_refs(load_dashboard(path)):
        if not isinstance(ref, dict):
            problems.append(f"{where}: datasource {ref!r} by name, not by uid")
        elif ref.get("uid") == GRAFANA_BUILTIN_DATASOURCE:
            if ref.get("type") != "grafana":
                problems.append(f"{where}: {ref}")
        elif ref.get("uid") not in provisioned:
            problems.append(f"{where}: uid {ref.get('uid')!r} is not provisioned ({provisioned})")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_every_panel_says_what_it_shows(path):
    missing = [p.get("title") for p in all_panels(load_dashboard(path).get("panels") or [])
               if p.get("type") not in ("row", "text") and not p.get("description")]
    assert not missing, f"panels without a description: {missing}"


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_annotations_query_the_catalogue_within_the_time_range(path):
    dashboard = load_dashboard(path)
    variables = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    problems = []
    for annotation in annotation_queries(dashboard):
        name, query = annotation.get("name"), annotation.get("query", "")
        if "$timeFilter" not in query:
            problems.append(f"annotation {name!r}: no $timeFilter")
        problems += [f"annotation {name!r}: {p}" for p in influxql_problems(query, variables)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_annotations_show_their_text_and_tags_as_grafana_reads_them(path):
    problems = [p for a in annotation_queries(load_dashboard(path))
                for p in annotation_problems(a)]
    assert not problems, "\n".join(problems)


def test_config_changes_and_regressions_are_annotations_where_asked():
    def measurements(uid):
        dashboard = load_dashboard(ROOT / "dashboards" / DASHBOARDS[uid])
        return {m for a in annotation_queries(dashboard)
                for m in measurements_in_from(clause(a["query"], r"\bFROM"))[0]}

    for uid in ("notify-overview", "notify-optimization"):
        assert {"config_change", "analysis_regression"} <= measurements(uid), uid


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_links_resolve(path):
    known = {d.get("uid"): set(d.get("tags") or []) for _, d in dashboards()}
    dashboard = load_dashboard(path)
    assert any(link.get("type") == "dashboards" for link in dashboard.get("links") or []), \
        "no link to the other dashboards"
    problems = link_problems(dashboard, known)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_every_link_is_absolute_or_a_grafana_path(path):
    dashboard = load_dashboard(path)
    variables = variable_values(dashboard)
    problems = [p for url in link_urls(dashboard) for p in url_problems(url, variables)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_variables_used_are_defined_and_those_defined_are_used(path):
    dashboard = load_dashboard(path)
    problems = undefined_variables(dashboard) + unused_variables(dashboard)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_every_dashboard_filters_by_node(path):
    names = {v["name"] for v in load_dashboard(path).get("templating", {}).get("list", [])}
    assert "node" in names


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_aggregates_over_time_follow_the_interval_with_a_minimum(path):
    problems = []
    for panel, target in targets_of(load_dashboard(path)):
        query = target.get("query", "")
        for argument in re.findall(r"GROUP\s+BY\s+time\(\s*([^),]+)", query, re.I):
            if argument.strip() != "$__interval":
                problems.append(f"{panel['title']!r}: GROUP BY time({argument}), "
                                "not $__interval")
        if re.search(r"GROUP\s+BY\s+time\(", query, re.I) and not panel.get("interval"):
            problems.append(f"{panel['title']!r}: no minimum interval")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_limits_that_follow_the_level_come_from_data(path):
    problems = [p for panel in query_panels(load_dashboard(path))
                for p in threshold_problems(panel)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_counts_are_rates_per_second(path):
    problems = [p for panel in query_panels(load_dashboard(path)) for p in rate_problems(panel)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_time_series_legends_are_tables_with_last_mean_and_max(path):
    problems = [p for panel in query_panels(load_dashboard(path)) for p in legend_problems(panel)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_tables_listed_newest_first_are_not_grouped_by_a_tag(path):
    problems = [f"{panel['title']!r}: {p}" for panel, target in targets_of(load_dashboard(path))
                for p in newest_first_problems(target.get("query", ""))]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------
# The Overview and the Optimization report


def test_overview_has_the_panels_the_alert_rules_link_to():
    dashboard = load_dashboard(ROOT / "dashboards" / DASHBOARDS["notify-overview"])
    panels = {p["id"]: p for p in all_panels(dashboard["panels"])}
    for pid, (kind, word) in OVERVIEW_PANELS.items():
        assert pid in panels, f"no panel {pid} ({word})"
        assert panels[pid]["type"] == kind, (pid, panels[pid]["type"])
        assert word in panels[pid]["title"].lower(), (pid, panels[pid]["title"])
    others = set(panels) - set(OVERVIEW_PANELS)
    assert all(pid >= 40 for pid in others), sorted(others)


def test_overview_lists_the_alerts_of_the_rules_folder():
    dashboard = load_dashboard(ROOT / "dashboards" / DASHBOARDS["notify-overview"])
    alerts = next(p for p in dashboard["panels"] if p["type"] == "alertlist")
    options = alerts["options"]
    assert options["folder"]["title"] in rule_folders()  # Grafana filters by the title
    assert options["stateFilter"]["firing"] and options["stateFilter"]["pending"]
    assert not options["stateFilter"]["normal"] and not options["dashboardAlerts"]


def test_alert_rules_link_panels_that_exist():
    panels = {uid: {p["id"] for p in all_panels(load_dashboard(
        ROOT / "dashboards" / name)["panels"])} for uid, name in DASHBOARDS.items()}
    problems = [f"{title}: {uid} panel {pid}" for title, uid, pid in rule_panel_links()
                if pid not in panels.get(uid, set())]
    assert not problems, "\n".join(problems)


def test_optimization_reports_recommendations_and_impact_from_influxdb():
    dashboard = load_dashboard(ROOT / "dashboards" / DASHBOARDS["notify-optimization"])
    reads = {measurement_of(t["query"]): t["query"] for _, t in targets_of(dashboard)}
    assert "apply" in selected_columns(reads["analysis_recommendation"])
    impact = selected_columns(reads["analysis_impact"])
    assert "verdict" in impact and "rolled_back" in impact
    for figure in ("delivery_p99_ms", "delivered_per_s", "drops_per_s"):
        assert {f"{figure}_before", f"{figure}_after"} <= set(impact), figure
    text = next(p for p in dashboard["panels"] if p["type"] == "text")["options"]["content"]
    for name in ("analysis_recommendation", "analysis_impact"):
        assert name in text, f"the text panel does not say where to find {name}"


# --------------------------------------------------------------------------
# The retention-policy switch


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_rp_variable_offers_raw_and_each_rollup_with_its_resolution(path):
    expected = {RAW_POLICY: "10s"}
    expected.update({f'"{policy}"': resolution for resolution, policy in ROLLUP_POLICIES.items()})
    dashboard = load_dashboard(path)
    assert rp_options(dashboard) == expected
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == RP_VARIABLE)
    assert variable["type"] == "custom" and not variable.get("multi")
    assert variable["current"]["value"] == RAW_POLICY, "raw by default"
    # Grafana builds the options from the query: "text : value" pairs
    pairs = [part.split(" : ") for part in variable["query"].split(",")]
    assert {value: text for text, value in pairs} == expected


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_raw_reads_name_the_raw_policy(path):
    dashboard = load_dashboard(path)
    queries = ([(f"panel {p['title']!r}", t.get("query", "")) for p, t in targets_of(dashboard)]
               + [(f"annotation {a['name']!r}", a["query"]) for a in annotation_queries(dashboard)]
               + [(f"variable {v['name']!r}", variable_query(v))
                  for v in query_variables(dashboard)])
    problems = [f"{where}: {p}" for where, query in queries for p in raw_policy_problems(query)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_switching_panels_read_rolled_up_fields_at_the_rollups_resolution(path):
    dashboard = load_dashboard(path)
    problems = []
    for panel, target in targets_of(dashboard):
        query, title = target.get("query", ""), panel.get("title")
        problems += [f"{title!r}: {p}" for p in rollup_problems(query)]
        if RP_FROM.search(query) and panel.get("interval") != RP_MIN_INTERVAL:
            problems.append(f"{title!r} reads $rp but its minimum interval is "
                            f"{panel.get('interval')!r}, not {RP_MIN_INTERVAL}")
        if (dashboard["uid"], title) in RAW_READS or panel.get("timeFrom"):
            continue
        for measurement in reads_rollable_from_raw(query):
            problems.append(f"{title!r} reads {measurement} from raw: a 7-day view would "
                            "read raw events; use $rp or list it in RAW_READS with a reason")
    assert not problems, "\n".join(problems)


def test_raw_reads_name_existing_panels():
    titles = {(d["uid"], p.get("title")) for _, d in dashboards()
              for p in query_panels(d)}
    assert set(RAW_READS) <= titles


def test_most_panels_over_the_range_switch_resolution():
    """Of the targets that follow the time picker and read a rolled-up
    measurement, most switch with $rp."""
    follow = [t.get("query", "") for _, d in dashboards() for p, t in targets_of(d)
              if not p.get("timeFrom") and (RP_FROM.search(t.get("query", ""))
                                            or reads_rollable_from_raw(t.get("query", "")))]
    switching = sum(bool(RP_FROM.search(q)) for q in follow)
    assert switching >= 0.9 * len(follow), (switching, len(follow))
