"""The checkers behind tests/unit/test_dashboards.py: how Grafana 11.2 reads
the provisioned dashboards (tests/support/grafana.py says how, from its
source), as functions that list what is wrong with a dashboard, panel or
query. tests/unit/test_dashboard_checkers.py shows each failing on a broken
example."""

from __future__ import annotations

import re
from pathlib import Path

from service.domain.telemetry import (
    CATALOGUE,
    ROLLUPS,
    FieldType,
)
from tests.support.grafana import (
    RP_FROM,
    all_panels,
    annotation_queries,
    annotation_roles,
    bare_selected_names,
    dashboard_files,
    grafana_tag_entries,
    interval_seconds,
    load_dashboard,
    measurement_of,
    query_variables,
    select_items,
    selected_columns,
    variable_query,
)
from tests.support.influxql import (
    GRAFANA_BUILTINS,
    QUOTED,
    clause,
    measurements_in_from,
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
