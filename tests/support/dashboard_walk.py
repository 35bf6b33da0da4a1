"""Walking a provisioned dashboard as Grafana 11.2 reads it: every
datasource reference, link, interpolated text and variable value, and the
catalogue figures a query names."""

from __future__ import annotations

import re
from pathlib import Path

from service.domain.measurements import CATALOGUE
from tests.support.grafana import (
    all_panels,
    annotation_queries,
    dashboard_files,
    load_dashboard,
    query_variables,
    variable_query,
)
from tests.support.influxql import (
    QUOTED,
    clause,
    measurements_in_from,
    strip_aliases,
    strip_literals,
)

_VARIABLE_REF = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


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


def fields_named(query: str, measurement: str) -> set[str]:
    """The fields of ``measurement`` that a query names in SELECT and WHERE."""
    clean = strip_literals(query)
    select = strip_aliases(clause(clean, r"^\s*SELECT"))
    where = clause(clean, r"\bWHERE")
    names = set(re.findall(QUOTED, select)) | set(re.findall(QUOTED, where))
    return names & set(CATALOGUE[measurement].fields)
