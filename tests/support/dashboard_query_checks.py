"""Checkers of what a dashboard's queries read and how Grafana shows it:
annotations, level-set thresholds, rates, retention policies, newest-first
tables and rollups, each a function listing what is wrong
(tests/unit/test_dashboard_checkers.py shows each failing on a broken
example)."""

from __future__ import annotations

import re

from service.domain.measurements import (
    CATALOGUE,
    ROLLED_UP,
    FieldType,
)
from tests.support.dashboard_expectations import (
    HISTORICALLY_ABSENT,
    LEVEL_FIGURES,
    TARGETS_MEASUREMENT,
)
from tests.support.dashboard_walk import fields_named, figures_of
from tests.support.grafana import (
    RP_FROM,
    annotation_roles,
    bare_selected_names,
    grafana_tag_entries,
    interval_seconds,
    measurement_of,
    select_items,
    selected_columns,
)
from tests.support.influxql import (
    QUOTED,
    clause,
    measurements_in_from,
    strip_literals,
)


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


def rollup_problems(query: str) -> list[str]:
    """A query that switches retention policy must read rolled-up fields only."""
    if not RP_FROM.search(query):
        return []
    problems = []
    measurements, _ = measurements_in_from(clause(strip_literals(query), r"\bFROM"))
    for measurement in measurements:
        if measurement not in ROLLED_UP:
            problems.append(f"{measurement} is not rolled up: it cannot switch to a rollup")
            continue
        for name in sorted(fields_named(query, measurement) - set(CATALOGUE[measurement].rollups)):
            problems.append(f"{measurement}.{name} is not rolled up")
    return problems


def reads_rollable_from_raw(query: str) -> list[str]:
    """Rolled-up measurements a query reads without $rp (so always from raw)."""
    if RP_FROM.search(query):
        return []
    measurements, _ = measurements_in_from(clause(strip_literals(query), r"\bFROM"))
    return [m for m in measurements if m in ROLLED_UP]
