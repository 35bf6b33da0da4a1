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
from pathlib import Path

import pytest

from service.domain.telemetry import CATALOGUE, ROLLUP_POLICIES, ROLLUPS, FieldType
from tests.support.compose import ROOT, datasources
from tests.support.grafana import (
    RAW_POLICY,
    RP_FROM,
    RP_VARIABLE,
    all_panels,
    annotation_queries,
    annotation_roles,
    bare_selected_names,
    dashboard_files,
    grafana_tag_entries,
    interval_seconds,
    load_dashboard,
    measurement_of,
    query_panels,
    query_variables,
    rp_options,
    rule_folders,
    rule_panel_links,
    select_items,
    selected_columns,
    targets_of,
    variable_query,
)
from tests.support.influxql import (
    GRAFANA_BUILTINS,
    QUOTED,
    clause,
    influxql_problems,
    measurements_in_from,
    relative,
    strip_aliases,
    strip_literals,
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
# Shell variables in the commands text panels show: Grafana leaves a $NAME it
# does not know as written (TemplateSrv.replace), and the commands need them.
SHELL_VARIABLES = {"ADMIN_TOKEN"}
RP_MIN_INTERVAL = "${rp:text}"
# Targets that read a rolled-up measurement from raw whatever $rp says, and why
# (besides panels with a relative time of their own: their window is fixed and
# recent, the rollups' lag would show, so they read raw).
RAW_READS = {
    ("notify-optimization", "Analysis job runs by outcome"):
        "a count of runs needs the raw points: job_run's rollups keep duration_ms and "
        "items, not a count",
    ("notify-optimization", "Failed job runs"):
        "the error text is not rolled up; a table of the newest 20 failures, not a series",
}
# Fields that points written before a change lack, though the catalogue now
# has them on every point: raw keeps such points for 7 days.
HISTORICALLY_ABSENT = {
    ("config_change", "actor"): "start-up points before issue 19 carry no actor",
}
# Figures whose limit is set by the optimization level, and where the jobs
# write that limit (analysis_targets, every minute).
LEVEL_FIGURES = {
    **{("notify_delivery", f): "delivery_p99_ms"
       for f in ("latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "latency_ms_max",
                 "wait_ms_p50", "wait_ms_p95", "wait_ms_p99", "wait_ms_max")},
    ("notify_ping", "connections"): "connections",
    ("notify_connection", "active"): "connections",
    ("cluster", "connections"): "connections",
    ("process", "rss_bytes"): "rss_bytes",
    ("notify_backpressure", "rss_bytes"): "rss_bytes",
    ("notify_backpressure", "memory_budget_bytes"): "rss_bytes",
}
TARGETS_MEASUREMENT = "analysis_targets"
# The Overview's panels the alert rules and the docs name (the contracts of
# issue 19): id -> (type, a word of its title). Others have ids >= 40.
OVERVIEW_PANELS = {
    1: ("alertlist", "alerts"), 2: ("table", "health"), 3: ("table", "recommendations"),
    4: ("stat", "level"), 10: ("stat", "delivery rate"), 11: ("stat", "p99"),
    12: ("stat", "connections"), 13: ("stat", "backpressure"), 14: ("stat", "429"),
    15: ("stat", "queue"), 16: ("stat", "cache hit rate"), 17: ("stat", "statement time"),
    18: ("stat", "job failures"), 19: ("stat", "unaccounted"), 20: ("table", "books"),
    30: ("timeseries", "publish rate"), 31: ("timeseries", "delivery rate"),
    32: ("timeseries", "p99"), 33: ("timeseries", "drops"),
    34: ("timeseries", "connections"), 35: ("state-timeline", "health"),
    36: ("timeseries", "books"),
}
LEGEND_CALCS = ({"lastNotNull", "last"}, {"mean"}, {"max"})
_VARIABLE_REF = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


# --------------------------------------------------------------------------
# Walking a dashboard


def dashboards() -> list[tuple[Path, dict]]:
    return [(path, load_dashboard(path)) for path in dashboard_files()]


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


def markdown_urls(text: str) -> list[str]:
    """Link targets of markdown (``[x](url)``, ``<url>``) and HTML (``href``)
    outside code, where Grafana's text panel makes links."""
    text = re.sub(r"```.*?```|`[^`]*`", "", text or "", flags=re.S)
    return (re.findall(r"\]\(\s*([^)\s]+)", text) + re.findall(r"<((?:https?:|/|\$)[^>]*)>", text)
            + re.findall(r"href\s*=\s*[\"']([^\"']*)", text))


def link_urls(dashboard: dict) -> list[str]:
    """Every URL a user can follow: dashboard links, panel links, data links
    (field defaults and overrides) and the links of text panels."""
    urls = [link.get("url", "") for link in dashboard.get("links") or []
            if link.get("type") != "dashboards"]
    for panel in all_panels(dashboard.get("panels") or []):
        urls += [link.get("url", "") for link in panel.get("links") or []]
        field_config = panel.get("fieldConfig") or {}
        urls += [link.get("url", "") for link in (field_config.get("defaults") or {}).get(
            "links") or []]
        for override in field_config.get("overrides") or []:
            for prop in override.get("properties") or []:
                if prop.get("id") == "links":
                    urls += [link.get("url", "") for link in prop.get("value") or []]
        if panel.get("type") == "text":
            urls += markdown_urls((panel.get("options") or {}).get("content", ""))
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


def variable_values(dashboard: dict) -> dict[str, str]:
    """The current value of each variable a user types or picks (what a
    link built from it starts with)."""
    values = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        current = (variable.get("current") or {}).get("value")
        if variable.get("type") in ("textbox", "constant", "custom") and isinstance(current, str):
            values[variable["name"]] = current
    return values


def figures_of(query: str) -> set[tuple[str, str]]:
    """(measurement, field) of the catalogue fields a query names."""
    measurements, _ = measurements_in_from(clause(strip_literals(query), r"\bFROM"))
    return {(m, f) for m in measurements if m in CATALOGUE for f in fields_named(query, m)}


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
    return problems


def url_problems(url: str, variables: dict[str, str]) -> list[str]:
    """A URL a browser can follow from Grafana: absolute (``http(s)://``),
    built from a variable whose value is absolute, or a dashboard path of
    Grafana's own (``/d/<uid>``: Grafana puts its sub-path in front,
    ``locationUtil.assureBaseUrl``). Anything else relative resolves against
    the dashboard's own address and 404s, another ``/`` path asks Grafana for
    a page it does not have. Nor may a link call the control API: it needs
    the admin token, which a browser does not send (401)."""
    lead = re.match(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)", url)
    resolved = url
    if lead:
        name = lead.group(1) or lead.group(2)
        if name in LINK_BUILTINS:
            return []
        if name not in variables:
            return [f"{url!r}: built from ${name}, which has no value to check"]
        resolved = variables[name] + url[lead.end():]
    problems = []
    if not (re.match(r"https?://[^/]", resolved) or re.match(r"/d/[\w-]+", resolved)):
        problems.append(f"{url!r}: neither absolute nor a Grafana dashboard path (/d/...)")
    if re.search(r"/(admin/)?api/", resolved):
        problems.append(f"{url!r}: the control API answers a browser 401 (no admin token)")
    return problems


def annotation_problems(annotation: dict) -> list[str]:
    """What stops an InfluxDB annotation from showing as meant, read as
    Grafana reads it (tests/support/grafana.py)."""
    name, query = annotation.get("name"), annotation.get("query", "")
    measurement = measurement_of(query)
    spec = CATALOGUE.get(measurement)
    if spec is None:
        return [f"annotation {name!r}: measurement {measurement!r} is not in the catalogue"]
    columns = selected_columns(query)
    problems = []
    for column in bare_selected_names(query):
        if column in spec.optional_fields:
            problems.append(f"annotation {name!r}: {column!r} is missing on some points "
                            "(optional_fields): Grafana drops those rows")
        if (measurement, column) in HISTORICALLY_ABSENT:
            problems.append(f"annotation {name!r}: {column!r}: "
                            f"{HISTORICALLY_ABSENT[(measurement, column)]}; Grafana drops "
                            "those rows")
    text, tags = annotation.get("textColumn"), grafana_tag_entries(annotation.get("tagsColumn"))
    if not annotation.get("tagsColumn"):
        problems.append(f"annotation {name!r}: no tagsColumn: every column would be a tag")
    if annotation.get("timeColumn") not in (None, "", "time"):
        problems.append(f"annotation {name!r}: timeColumn {annotation['timeColumn']!r}: "
                        "Grafana takes the time column")
    for key in ("textColumn", "titleColumn"):
        if annotation.get(key) and annotation[key] not in columns:
            problems.append(f"annotation {name!r}: {key} {annotation[key]!r} not selected")
    for tag in tags:
        if tag and tag not in columns:
            problems.append(f"annotation {name!r}: tag column {tag!r} not selected")
        elif tag and spec.fields.get(tag, FieldType.STRING) != FieldType.STRING:
            problems.append(f"annotation {name!r}: tag column {tag!r} is a number: "
                            "Grafana splits tags as text")
    roles = annotation_roles(annotation, measurement, columns)
    if text and roles.get(text) != "text":
        problems.append(f"annotation {name!r}: Grafana reads {text!r} as {roles.get(text)}, "
                        "not as the text")
    for column, role in roles.items():
        if role == "tag" and column not in tags:
            problems.append(f"annotation {name!r}: Grafana reads {column!r} as a tag")
        if role == "text" and column != text:
            problems.append(f"annotation {name!r}: Grafana reads {column!r} as the text")
    return problems


def threshold_problems(panel: dict) -> list[str]:
    """A figure whose limit is set by the level gets it from data: no
    constant threshold step beyond the base, no constant threshold lines;
    a time series draws the limit as a dashed series from analysis_targets,
    a stat colours by thresholds taken from it (``configFromData``)."""
    targets = panel.get("targets") or []
    figures = set().union(*(figures_of(t.get("query", "")) for t in targets))
    level = figures & set(LEVEL_FIGURES)
    if not level:
        return []
    title, problems = panel.get("title"), []
    field_config = panel.get("fieldConfig") or {}
    defaults = field_config.get("defaults") or {}
    configs = [("defaults", defaults.get("thresholds"))] + [
        (f"override {o.get('matcher')}", p.get("value"))
        for o in field_config.get("overrides") or [] for p in o.get("properties") or []
        if p.get("id") == "thresholds"]
    for where, thresholds in configs:
        steps = (thresholds or {}).get("steps") or []
        if len(steps) > 1:
            problems.append(f"{title!r} {where}: constant thresholds "
                            f"{[s.get('value') for s in steps[1:]]} on {sorted(level)}")
    style = ((defaults.get("custom") or {}).get("thresholdsStyle") or {}).get("mode", "off")
    if style != "off":
        problems.append(f"{title!r}: threshold lines ({style}) of constants")
    from_targets = {t.get("refId") for t in targets
                    if measurement_of(t.get("query", "")) == TARGETS_MEASUREMENT}
    for transformation in panel.get("transformations") or []:
        if (transformation.get("id") == "configFromData"
                and transformation["options"].get("configRefId") not in from_targets):
            problems.append(f"{title!r}: thresholds from a query that is not "
                            f"{TARGETS_MEASUREMENT}")
    replay_only = all("'replay'" in t.get("query", "") for t in targets
                      if figures_of(t.get("query", "")) & level)
    if panel.get("type") == "timeseries" and not replay_only:
        dashed = {o["matcher"].get("options") for o in field_config.get("overrides") or []
                  if o.get("matcher", {}).get("id") == "byFrameRefID"
                  and any(p.get("id") == "custom.lineStyle"
                          and (p.get("value") or {}).get("fill") == "dash"
                          for p in o.get("properties") or [])}
        if not from_targets & dashed:
            limits = sorted({LEVEL_FIGURES[f] for f in level})
            problems.append(f"{title!r}: no dashed series of {TARGETS_MEASUREMENT} {limits}")
    return problems


def rate_problems(panel: dict) -> list[str]:
    """Counts over time are rates per second, not sums per interval (which
    change with the zoom): in a time series each sum or count is divided by
    the interval (``* 1000 / $__interval_ms``) or is a ratio, and counters
    use ``non_negative_derivative(..., 1s)``; a stat that divides by a number
    of seconds reads a window (its relative time) of that length."""
    problems, title = [], panel.get("title")
    for target in panel.get("targets") or []:
        for expression, _ in select_items(target.get("query", "")):
            counts = re.search(r"\b(sum|count)\(", expression)
            if panel.get("type") == "timeseries":
                if "non_negative_difference(" in expression:
                    problems.append(f"{title!r}: {expression}: an increase per interval; "
                                    "use non_negative_derivative(..., 1s)")
                elif counts and "/" not in expression:
                    problems.append(f"{title!r}: {expression}: a count per interval; "
                                    "divide it by $__interval_ms")
            divisor = re.search(r"/\s*(\d+)\s*$", expression)
            if panel.get("type") == "stat" and counts and divisor:
                window = interval_seconds(panel["timeFrom"]) if panel.get("timeFrom") else None
                if int(divisor.group(1)) != window:
                    problems.append(f"{title!r}: {expression}: per {divisor.group(1)} s, but "
                                    f"the panel reads {panel.get('timeFrom') or 'the range'}")
    return problems


def legend_problems(panel: dict) -> list[str]:
    if panel.get("type") != "timeseries":
        return []
    legend = (panel.get("options") or {}).get("legend") or {}
    problems = []
    if legend.get("displayMode") != "table" or legend.get("showLegend") is False:
        problems.append(f"{panel.get('title')!r}: legend {legend.get('displayMode')!r}, "
                        "not a table")
    calcs = set(legend.get("calcs") or [])
    for wanted in LEGEND_CALCS:
        if not calcs & wanted:
            problems.append(f"{panel.get('title')!r}: legend without {sorted(wanted)[0]}")
    return problems


def raw_policy_problems(query: str) -> list[str]:
    """Every measurement read names its retention policy: $rp, or "raw"."""
    items = clause(strip_literals(query), r"\bFROM").split(",")
    return [f"FROM {item.strip()}: no retention policy (\"raw\". or $rp.)" for item in items
            if item.strip() and not re.match(r'(\$\{?rp\}?|"raw")\s*\.', item.strip())]


def newest_first_problems(query: str) -> list[str]:
    """``ORDER BY time DESC`` with ``GROUP BY <tag>`` orders each series on
    its own and lists one series after another: newest first only with
    ``LIMIT 1`` (the newest of each)."""
    if not re.search(r"ORDER\s+BY\s+time\s+DESC", query, re.I):
        return []
    group_by = re.sub(r"time\([^)]*\)|fill\([^)]*\)", "",
                      clause(strip_literals(query), r"\bGROUP\s+BY"))
    limit = re.search(r"\bLIMIT\s+(\d+)", query, re.I)
    if re.search(QUOTED, group_by) and (not limit or int(limit.group(1)) > 1):
        return [f"GROUP BY {group_by.strip()} with ORDER BY time DESC: one series after "
                "another, not newest first"]
    return []


def undefined_variables(dashboard: dict) -> list[str]:
    defined = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    allowed = defined | GRAFANA_BUILTINS | LINK_BUILTINS
    problems = []
    for where, text in texts_using_variables(dashboard):
        extra = SHELL_VARIABLES if where.endswith(" text") else set()
        problems += [f"{where}: ${name} is not defined"
                     for name in sorted(variable_references(text) - allowed - extra)]
    return problems


def unused_variables(dashboard: dict) -> list[str]:
    used = set().union(*(variable_references(text)
                         for _, text in texts_using_variables(dashboard)))
    return [f"variable ${v['name']} is never used"
            for v in dashboard.get("templating", {}).get("list", []) if v["name"] not in used]


def fields_named(query: str, measurement: str) -> set[str]:
    """The fields of ``measurement`` that a query names in SELECT and WHERE."""
    clean = strip_literals(query)
    select = strip_aliases(clause(clean, r"^\s*SELECT"))
    where = clause(clean, r"\bWHERE")
    names = set(re.findall(QUOTED, select)) | set(re.findall(QUOTED, where))
    return names & set(CATALOGUE[measurement].fields)


def rollup_problems(query: str) -> list[str]:
    """A query that switches retention policy must read rolled-up fields only."""
    if not RP_FROM.search(query):
        return []
    problems = []
    measurements, _ = measurements_in_from(clause(strip_literals(query), r"\bFROM"))
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
    measurements, _ = measurements_in_from(clause(strip_literals(query), r"\bFROM"))
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
