"""The structure of the provisioned Grafana dashboards (dashboards/*.json),
beyond what tests/unit/test_deploy_files.py checks of every dashboard (the
catalogue names in panel and variable queries, raw InfluxQL, $timeFilter in
panel targets, the datasource of panels and query variables).

Here: the six dashboards exist with their fixed uids; the layout fits the
24-column grid without overlaps; every datasource reference, annotation and
link resolves; every variable a dashboard uses is defined and every one it
defines is used; and the retention-policy switch (``$rp``, docs/grafana.md)
reads only what the rollups hold. Each checker is also shown failing on a
broken example, so these tests can fail.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from service.domain.telemetry import CATALOGUE, ROLLUP_POLICIES, ROLLUPS
from tests.unit.test_deploy_files import (
    _QUOTED,
    GRAFANA_BUILTINS,
    ROOT,
    _clause,
    _measurements_in_from,
    _strip_aliases,
    _strip_literals,
    all_panels,
    dashboard_files,
    datasources,
    influxql_problems,
    load_dashboard,
    query_panels,
    query_variables,
    relative,
    variable_query,
)

DASHBOARDS = {
    "notify-overview": "overview.json",  # the control API redirects to /d/notify-overview
    "notify-delivery": "delivery.json",
    "notify-resources": "resources.json",
    "notify-storage": "storage.json",
    "notify-optimization": "optimization.json",
    "notify-telemetry": "telemetry.json",
}
GRID_COLUMNS = 24
SCHEMA_VERSION = 39
GRAFANA_BUILTIN_DATASOURCE = "-- Grafana --"  # the built-in annotations' source
# Variables Grafana defines for links and text, beside those of queries.
LINK_BUILTINS = {"__url_time_range", "__all_variables", "__data", "__field", "__series",
                 "__value"}
# Where a dashboard narrows by priority and category, the measurement must carry
# the tag: only notify_publish has category, and notify_throttle priority too.
RP_VARIABLE = "rp"
RP_FROM = re.compile(r"\$\{?" + RP_VARIABLE + r"\}?\s*\.")
RP_MIN_INTERVAL = "${rp:text}"
RAW_POLICY = '""'  # the database's default retention policy, which is raw
# Targets that read a rolled-up measurement from raw whatever $rp says, and why.
RAW_READS = {
    ("notify-optimization", "Analysis job runs by outcome"):
        "a count of runs needs the raw points: job_run's rollups keep duration_ms and "
        "items, not a count",
    ("notify-optimization", "Failed job runs"):
        "the error text is not rolled up; a table of the newest 20 failures, not a series",
}
_VARIABLE_REF = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


# --------------------------------------------------------------------------
# Walking a dashboard


def dashboards() -> list[tuple[Path, dict]]:
    return [(path, load_dashboard(path)) for path in dashboard_files()]


def targets_of(dashboard: dict) -> list[tuple[dict, dict]]:
    return [(panel, target) for panel in query_panels(dashboard)
            for target in panel.get("targets") or []]


def annotation_queries(dashboard: dict) -> list[dict]:
    return [a for a in dashboard.get("annotations", {}).get("list", []) if not a.get("builtIn")]


def datasource_refs(node: object, where: str = "") -> list[tuple[str, object]]:
    """Every value of a ``datasource`` key anywhere in the document."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append((where, value))
            found += datasource_refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += datasource_refs(item, f"{where}[{i}]")
    return found


def variable_references(text: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in _VARIABLE_REF.finditer(text or "")}


def link_urls(dashboard: dict) -> list[str]:
    urls = [link.get("url", "") for link in dashboard.get("links") or []]
    for panel in all_panels(dashboard.get("panels") or []):
        urls += [link.get("url", "") for link in panel.get("links") or []]
        defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
        urls += [link.get("url", "") for link in defaults.get("links") or []]
    return [u for u in urls if u]


def texts_using_variables(dashboard: dict) -> list[tuple[str, str]]:
    """(where, text) of everything Grafana interpolates, except target aliases
    ($tag_x and $col are alias patterns, not variables)."""
    found = []
    for panel in all_panels(dashboard.get("panels") or []):
        title = panel.get("title", "")
        found.append((f"panel {title!r} title", title))
        found.append((f"panel {title!r} interval", panel.get("interval", "")))
        if panel.get("type") == "text":
            found.append((f"panel {title!r} text", panel["options"].get("content", "")))
        for target in panel.get("targets") or []:
            found.append((f"panel {title!r} query", target.get("query", "")))
    for annotation in annotation_queries(dashboard):
        found.append((f"annotation {annotation.get('name')!r}", annotation.get("query", "")))
    for variable in query_variables(dashboard):
        found.append((f"variable {variable['name']!r}", variable_query(variable)))
    found += [("link", url) for url in link_urls(dashboard)]
    return found


def rp_options(dashboard: dict) -> dict[str, str]:
    """{value: text} of the $rp variable."""
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("name") == RP_VARIABLE:
            return {o["value"]: o["text"] for o in variable.get("options") or []}
    return {}


# --------------------------------------------------------------------------
# Checkers, each shown failing below


def grid_problems(panels: list[dict]) -> list[str]:
    """Panels outside the 24-column grid, and panels that overlap."""
    problems, placed = [], []
    for panel in panels:
        pos = panel.get("gridPos") or {}
        x, y, w, h = (pos.get(k) for k in ("x", "y", "w", "h"))
        name = panel.get("title") or panel.get("id")
        if not all(isinstance(v, int) for v in (x, y, w, h)):
            problems.append(f"{name!r}: gridPos {pos} is not four integers")
            continue
        if x < 0 or y < 0 or w < 1 or h < 1 or x + w > GRID_COLUMNS:
            problems.append(f"{name!r}: gridPos {pos} is outside the {GRID_COLUMNS} columns")
        for other, (ox, oy, ow, oh) in placed:
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                problems.append(f"{name!r} overlaps {other!r}")
        placed.append((name, (x, y, w, h)))
    return problems


def link_problems(dashboard: dict, known: dict[str, set[str]]) -> list[str]:
    """Links to dashboards that do not exist. ``known``: {uid: tags}."""
    problems = []
    own = dashboard.get("uid")
    for link in dashboard.get("links") or []:
        if link.get("type") == "dashboards":
            tags = set(link.get("tags") or [])
            if not tags:
                problems.append(f"link {link.get('title')!r}: a dashboards link without tags")
            elif not any(tags <= t for uid, t in known.items() if uid != own):
                problems.append(f"link {link.get('title')!r}: no other dashboard has {tags}")
    for url in link_urls(dashboard):
        for uid in re.findall(r"/d/([\w-]+)", url):
            if uid not in known:
                problems.append(f"link {url!r}: no dashboard {uid!r}")
        if url.startswith("http") and "/d/" in url:
            problems.append(f"link {url!r}: absolute; Grafana's own links are relative")
    return problems


def undefined_variables(dashboard: dict) -> list[str]:
    defined = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    allowed = defined | GRAFANA_BUILTINS | LINK_BUILTINS
    return [f"{where}: ${name} is not defined"
            for where, text in texts_using_variables(dashboard)
            for name in sorted(variable_references(text) - allowed)]


def unused_variables(dashboard: dict) -> list[str]:
    used = set().union(*(variable_references(text)
                         for _, text in texts_using_variables(dashboard)))
    return [f"variable ${v['name']} is never used"
            for v in dashboard.get("templating", {}).get("list", []) if v["name"] not in used]


def fields_named(query: str, measurement: str) -> set[str]:
    """The fields of ``measurement`` that a query names in SELECT and WHERE."""
    clean = _strip_literals(query)
    select = _strip_aliases(_clause(clean, r"^\s*SELECT"))
    where = _clause(clean, r"\bWHERE")
    names = set(re.findall(_QUOTED, select)) | set(re.findall(_QUOTED, where))
    return names & set(CATALOGUE[measurement].fields)


def rollup_problems(query: str) -> list[str]:
    """A query that switches retention policy must read rolled-up fields only."""
    if not RP_FROM.search(query):
        return []
    problems = []
    measurements, _ = _measurements_in_from(_clause(_strip_literals(query), r"\bFROM"))
    for measurement in measurements:
        if measurement not in ROLLUPS:
            problems.append(f"{measurement} is not rolled up: it cannot switch to a rollup")
            continue
        for name in sorted(fields_named(query, measurement) - set(ROLLUPS[measurement])):
            problems.append(f"{measurement}.{name} is not rolled up")
    return problems


def reads_rollable_from_raw(query: str) -> list[str]:
    """Rolled-up measurements a query reads without $rp (so always from raw)."""
    if RP_FROM.search(query):
        return []
    measurements, _ = _measurements_in_from(_clause(_strip_literals(query), r"\bFROM"))
    return [m for m in measurements if m in ROLLUPS]


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
def test_every_query_panel_says_what_it_shows(path):
    missing = [p.get("title") for p in query_panels(load_dashboard(path))
               if not p.get("description")]
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
        columns = re.findall(_QUOTED, _clause(_strip_literals(query), r"^\s*SELECT"))
        for key in ("textColumn",):
            if annotation.get(key) not in columns:
                problems.append(f"annotation {name!r}: {key} {annotation.get(key)!r} not selected")
        for column in filter(None, (annotation.get("tagsColumn") or "").split(",")):
            if column.strip() not in columns:
                problems.append(f"annotation {name!r}: tag column {column!r} not selected")
    assert not problems, "\n".join(problems)


def test_config_changes_and_regressions_are_annotations_where_asked():
    def measurements(uid):
        dashboard = load_dashboard(ROOT / "dashboards" / DASHBOARDS[uid])
        return {m for a in annotation_queries(dashboard)
                for m in _measurements_in_from(_clause(a["query"], r"\bFROM"))[0]}

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
def test_switching_panels_read_rolled_up_fields_at_the_rollups_resolution(path):
    dashboard = load_dashboard(path)
    problems = []
    for panel, target in targets_of(dashboard):
        query, title = target.get("query", ""), panel.get("title")
        problems += [f"{title!r}: {p}" for p in rollup_problems(query)]
        if RP_FROM.search(query) and panel.get("interval") != RP_MIN_INTERVAL:
            problems.append(f"{title!r} reads $rp but its minimum interval is "
                            f"{panel.get('interval')!r}, not {RP_MIN_INTERVAL}")
        if (dashboard["uid"], title) in RAW_READS:
            continue
        for measurement in reads_rollable_from_raw(query):
            problems.append(f"{title!r} reads {measurement} from raw: a 7-day view would "
                            "read raw events; use $rp or list it in RAW_READS with a reason")
    assert not problems, "\n".join(problems)


def test_raw_reads_name_existing_panels():
    titles = {(d["uid"], p.get("title")) for _, d in dashboards()
              for p in query_panels(d)}
    assert set(RAW_READS) <= titles


def test_most_panels_switch_resolution():
    switching = sum(bool(RP_FROM.search(t.get("query", "")))
                    for _, d in dashboards() for _, t in targets_of(d))
    total = sum(len(targets_of(d)) for _, d in dashboards())
    assert switching >= 0.7 * total, (switching, total)


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


def test_variable_checker_rejects_undefined_and_unused_variables():
    dashboard = {
        "templating": {"list": [{"name": "node", "type": "query", "query": ""},
                                {"name": "idle", "type": "custom", "query": "a"}]},
        "panels": [{"title": "p", "interval": "${nope:text}", "targets": [
            {"query": 'SELECT 1 FROM "x" WHERE "node" =~ /^$node$/ AND $timeFilter '
                      "AND [[other]] GROUP BY time($__interval)"}]}],
    }
    assert sorted(undefined_variables(dashboard)) == [
        "panel 'p' interval: $nope is not defined", "panel 'p' query: $other is not defined"]
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
