"""The provisioned Grafana files read the way Grafana 11.2 reads them: the
dashboards (dashboards/*.json) and the alert rules' InfluxQL
(provisioning/alerting/rules.yml). The unit checks
(tests/unit/test_dashboards.py, tests/unit/test_deploy_files.py) and the e2e
test that runs every query (tests/e2e/test_dashboard_queries.py) share them.

What Grafana does that matters here, from its source (grafana/grafana, the
InfluxDB datasource and the panels):

- An InfluxQL annotation's rows become a table, one column per selected
  column, named ``<measurement>.<column>`` on the backend path
  (``response_parser.ts`` ``getTableCols``); a row with a null in any column
  is dropped (``getTableRows``: ``metrics.indexOf(null) < 0``). Then
  ``transformAnnotationResponse`` sorts the columns, in this order: ``time``;
  the title (``=== titleColumn``); a tag if the name *contains* an entry of
  ``tagsColumn.replace(' ', '').split(',')`` (one space removed, and an empty
  ``tagsColumn`` is ``['']``, which every name contains); the text if it
  contains ``textColumn``; the end time. The classic path
  (``InfluxSeries.getAnnotations``) compares the raw column names exactly, in
  the same order. Tag values are ``.split(',')``: a number there throws.
- ``$timeFilter``, ``$__interval`` and ``$__interval_ms`` follow the panel:
  its relative time (``timeFrom``) replaces the dashboard's range, its
  minimum interval (``interval``) bounds ``$__interval`` from below.
- A variable Grafana does not know is left as written (``TemplateSrv.replace``
  returns the match), so ``$ADMIN_TOKEN`` in a command survives a text panel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.support.repository import ROOT

DASHBOARDS_DIR = ROOT / "dashboards"
RULES_FILE = ROOT / "provisioning" / "alerting" / "rules.yml"
DATASOURCE_UID = "notify-influxdb"

RP_VARIABLE = "rp"
RP_FROM = re.compile(r"\$\{?" + RP_VARIABLE + r"\}?\s*\.")
RAW_POLICY = '"raw"'  # the $rp value of raw points: FROM "raw"."m"
# Panels that query nothing: rows group panels, text panels show markdown, an
# alert list shows Grafana's own alert rules.
QUERYLESS_PANEL_TYPES = {"row", "text", "alertlist"}


# --------------------------------------------------------------------------
# Walking the dashboards


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.rglob("*.json"))


def load_dashboard(path: Path) -> dict:
    with path.open() as fh:
        return json.load(fh)


def all_panels(panels: list[dict]) -> list[dict]:
    """Panels, including those nested in (collapsed) rows."""
    found = []
    for panel in panels:
        found.append(panel)
        found.extend(all_panels(panel.get("panels") or []))
    return found


def query_panels(dashboard: dict) -> list[dict]:
    return [p for p in all_panels(dashboard.get("panels") or [])
            if p.get("type") not in QUERYLESS_PANEL_TYPES]


def query_variables(dashboard: dict) -> list[dict]:
    return [v for v in dashboard.get("templating", {}).get("list", []) if v.get("type") == "query"]


def variable_query(variable: dict) -> str:
    query = variable.get("query")
    if isinstance(query, dict):  # newer Grafana stores {"query": "...", "refId": ...}
        query = query.get("query")
    return query or ""


def targets_of(dashboard: dict) -> list[tuple[dict, dict]]:
    return [(panel, target) for panel in query_panels(dashboard)
            for target in panel.get("targets") or []]


def annotation_queries(dashboard: dict) -> list[dict]:
    return [a for a in dashboard.get("annotations", {}).get("list", []) if not a.get("builtIn")]


def rp_options(dashboard: dict) -> dict[str, str]:
    """{value: text} of the $rp variable."""
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("name") == RP_VARIABLE:
            return {o["value"]: o["text"] for o in variable.get("options") or []}
    return {}


# --------------------------------------------------------------------------
# InfluxQL, roughly


def select_items(query: str) -> list[tuple[str, str | None]]:
    """(expression, alias) of each item of the SELECT list, split at the
    commas outside parentheses and string literals."""
    match = re.match(r"\s*SELECT\s+(.*?)\s+FROM\s", query, re.I | re.S)
    if not match:
        return []
    items, depth, quoted, current = [], 0, "", ""
    for ch in match.group(1):
        if quoted:
            quoted = "" if ch == quoted else quoted
        elif ch in "\"'":
            quoted = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        current += ch
    items.append(current)
    found = []
    for item in items:
        alias = re.search(r'\s+AS\s+"([^"]*)"\s*$', item, re.I)
        expression = item[:alias.start()] if alias else item
        found.append((expression.strip(), alias.group(1) if alias else None))
    return found


def selected_columns(query: str) -> list[str]:
    """The columns a raw (not aggregated) SELECT returns besides time: each
    bare ``"name"`` (a field or a tag), or its alias."""
    columns = []
    for expression, alias in select_items(query):
        bare = re.fullmatch(r'"([^"]+)"', expression)
        columns.append(alias or (bare.group(1) if bare else expression))
    return columns


def bare_selected_names(query: str) -> list[str]:
    """The fields and tags a raw SELECT names as they are (not in a function)."""
    return [m.group(1) for expression, _ in select_items(query)
            if (m := re.fullmatch(r'"([^"]+)"', expression))]


def measurement_of(query: str) -> str:
    match = re.search(r'\bFROM\s+(?:[$\w{}"]+\.)?"?(\w+)"?', query)
    return match.group(1) if match else ""


# --------------------------------------------------------------------------
# Annotations as Grafana reads them


def grafana_tag_entries(tags_column: str | None) -> list[str]:
    """``(tagsColumn || '').replace(' ', '').split(',')``: JavaScript's
    replace with a string removes the first space only."""
    return (tags_column or "").replace(" ", "", 1).split(",")


def annotation_roles(annotation: dict, measurement: str, columns: list[str]) -> dict[str, str]:
    """{column: title | tag | text | timeEnd | other}, as the backend path
    sorts the columns (their names there: ``<measurement>.<column>``)."""
    tags = grafana_tag_entries(annotation.get("tagsColumn"))
    roles = {}
    for column in columns:
        name = f"{measurement}.{column}"
        if name.lower() == "time":
            continue
        if column == annotation.get("titleColumn"):
            roles[column] = "title"
        elif any(tag in name for tag in tags):
            roles[column] = "tag"
        elif annotation.get("textColumn") and annotation["textColumn"] in name:
            roles[column] = "text"
        elif column == annotation.get("timeEndColumn"):
            roles[column] = "timeEnd"
        else:
            roles[column] = "other"
    return roles


# --------------------------------------------------------------------------
# Grafana's macros, as the InfluxDB datasource fills them

_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)|\[\[(\w+)(?::(\w+))?\]\]")
AUTO_INTERVAL_S = 10  # what Grafana's auto interval is raised to at least, here
RANGE = "1h"  # the dashboards' default range


def interval_seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+)([smhdw])", text)
    assert match, f"not an interval: {text!r}"
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[
        match.group(2)]


def fill_macros(query: str, dashboard: dict, rp: tuple[str, str], min_interval: str = "",
                time_from: str = "") -> str:
    """``query`` as Grafana sends it: ``rp`` is the ($rp value, its text),
    ``min_interval`` the panel's (``${rp:text}`` allowed), ``time_from`` its
    relative time (else the last hour). The range is widened by an hour on
    the 1h rollups: an hour bucket is stamped with its start, so a run that
    crossed the hour has data in a bucket that starts before the range."""
    rp_value, rp_text = rp
    minimum = (min_interval or "").replace("${rp:text}", rp_text)
    seconds = max(AUTO_INTERVAL_S, interval_seconds(minimum) if minimum else 0)
    span = interval_seconds(time_from or RANGE) + (3600 if rp_text == "1h" else 0)
    values = {"timeFilter": f"time > now() - {span}s",
              "__interval": f"{seconds}s", "__interval_ms": str(seconds * 1000),
              "rp": rp_value}
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable["name"]
        if name == RP_VARIABLE:
            continue
        if variable.get("includeAll"):
            values[name] = variable["allValue"]  # "All": a regex matching every value
        else:
            values[name] = variable["current"]["value"]

    def substitute(match: re.Match) -> str:
        name = match.group(1) or match.group(3) or match.group(4)
        form = match.group(2) or match.group(5)
        if name == RP_VARIABLE and form == "text":
            return rp_text
        assert name in values, f"${name} is not a variable or macro of this dashboard"
        return values[name]

    return _VARIABLE.sub(substitute, query)


# --------------------------------------------------------------------------
# The alert rules' InfluxQL


def rule_queries(path: Path = RULES_FILE) -> list[tuple[str, str, str, dict]]:
    """(rule title, refId, query, relativeTimeRange) of every InfluxQL query
    of the provisioned alert rules."""
    document = yaml.safe_load(path.read_text()) or {}
    found = []
    for group in document.get("groups") or []:
        for rule in group.get("rules") or []:
            for step in rule.get("data") or []:
                if step.get("datasourceUid") == DATASOURCE_UID:
                    found.append((rule["title"], step["refId"], step["model"]["query"],
                                  step.get("relativeTimeRange") or {}))
    return found


def rule_panel_links(path: Path = RULES_FILE) -> list[tuple[str, str, int]]:
    """(rule title, dashboardUid, panelId) of every rule that links a panel."""
    document = yaml.safe_load(path.read_text()) or {}
    found = []
    for group in document.get("groups") or []:
        for rule in group.get("rules") or []:
            uid = rule.get("dashboardUid") or (rule.get("annotations") or {}).get(
                "__dashboardUid__")
            panel = rule.get("panelId") or (rule.get("annotations") or {}).get("__panelId__")
            if uid:
                if panel is None:  # Grafana links a rule to a panel: both or neither
                    raise ValueError(f"alert rule {rule['title']!r} names a dashboard "
                                     "but no panel")
                found.append((rule["title"], uid, int(panel)))
    return found


def rule_folders(path: Path = RULES_FILE) -> set[str]:
    document = yaml.safe_load(path.read_text()) or {}
    return {group.get("folder") for group in document.get("groups") or []}
