"""Checkers of a dashboard's layout, links, legends and variables, each a
function listing what is wrong (tests/unit/test_dashboard_checkers.py shows
each failing on a broken example)."""

from __future__ import annotations

import re

from tests.support.dashboard_expectations import (
    GRID_COLUMNS,
    LEGEND_CALCS,
    LINK_BUILTINS,
    SHELL_VARIABLES,
)
from tests.support.dashboard_walk import link_urls, texts_using_variables, variable_references
from tests.support.influxql import GRAFANA_BUILTINS


def grid_problems(panels: list[dict]) -> list[str]:
    """Panels outside the 24-column grid, and panels that overlap."""
    problems: list[str] = []
    placed: list[tuple[object, tuple[int, int, int, int]]] = []
    for panel in panels:
        pos = panel.get("gridPos") or {}
        x, y, w, h = (pos.get(k) for k in ("x", "y", "w", "h"))
        name = panel.get("title") or panel.get("id")
        if not (isinstance(x, int) and isinstance(y, int) and isinstance(w, int)
                and isinstance(h, int)):
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
