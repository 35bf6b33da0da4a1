"""A rough InfluxQL checker against the telemetry catalogue, shared by the
deploy, dashboard and alerting tests (tests/unit/test_deploy_files.py shows
it failing on each kind of mistake).

InfluxQL is parsed roughly: identifiers in FROM are measurements,
double-quoted identifiers elsewhere are fields or tags, and unquoted field or
tag names are rejected so that nothing escapes the check.
"""

from __future__ import annotations

import re

from service.domain.measurements import CATALOGUE, COMMON_TAGS

# Variables Grafana itself defines; any other $name in a query must be a
# templating variable of the dashboard.
GRAFANA_BUILTINS = {
    "timeFilter",
    "__timeFilter",
    "interval",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
    "__rate_interval",
    "__from",
    "__to",
    "__dashboard",
    "__org",
    "__user",
}


# --------------------------------------------------------------------------
# A rough InfluxQL checker against the telemetry catalogue

QUOTED = r'"((?:[^"\\]|\\.)*)"'
_CLAUSE_END = (
    r"(?=\b(?:FROM|WHERE|GROUP\s+BY|ORDER\s+BY|LIMIT|SLIMIT|OFFSET|SOFFSET|FILL|TZ|WITH)\b|$)"
)
_OPERATORS = r"(?:=~|!~|!=|<>|<=|>=|=|<|>)"


def strip_literals(query: str) -> str:
    """Blank out regex and string literals so their contents are not read as names."""
    query = re.sub(r"(=~|!~)\s*/(?:\\.|[^/\\])*/", r"\1 //", query)
    return re.sub(r"'(?:\\.|[^'\\])*'", "''", query)


def strip_aliases(text: str) -> str:
    return re.sub(r"\bAS\s+(?:" + QUOTED + r"|[A-Za-z_]\w*)", " ", text, flags=re.IGNORECASE)


def clause(query: str, start: str) -> str:
    match = re.search(start + r"\s+(.*?)" + _CLAUSE_END, query, re.IGNORECASE | re.DOTALL)
    return match.group(1) if match else ""


def measurements_in_from(from_clause: str) -> tuple[list[str], list[str]]:
    names, problems = [], []
    for item in from_clause.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("/") or item.startswith("("):
            problems.append(f"FROM {item!r}: regex or subquery sources cannot be checked")
            continue
        parts = re.findall(QUOTED + r"|([A-Za-z_][\w]*)", item)
        if not parts:
            problems.append(f"FROM {item!r}: no measurement name")
            continue
        quoted, bare = parts[-1]
        names.append(quoted or bare)
    return names, problems


def influxql_problems(query: str, variables: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """What in one InfluxQL query is not in the catalogue (empty when all is)."""
    problems: list[str] = []

    for name in re.findall(r"\$\{?(\w+)", query):
        if name not in GRAFANA_BUILTINS and name not in variables:
            problems.append(f"${name} is neither a dashboard variable nor a Grafana built-in")

    clean = strip_literals(query)
    measurements, from_problems = measurements_in_from(clause(clean, r"\bFROM"))
    problems += from_problems
    unknown = [m for m in measurements if m not in CATALOGUE]
    problems += [f"measurement {m!r} is not in the telemetry catalogue" for m in unknown]
    known = [CATALOGUE[m] for m in measurements if m in CATALOGUE]

    tags = set(COMMON_TAGS).union(*(m.tags for m in known))
    fields = set().union(*(m.fields for m in known))
    if unknown:  # already reported; do not pile a report per name on top
        return problems

    select = strip_aliases(clause(clean, r"^\s*SELECT"))
    where = clause(clean, r"\bWHERE")
    group_by = re.sub(r"\bfill\s*\([^)]*\)", " ", clause(clean, r"\bGROUP\s+BY"), flags=re.I)
    show_key = clause(clean, r"\bWITH\s+KEY")

    for name in re.findall(QUOTED, select) + re.findall(QUOTED, where):
        if name not in fields and name not in tags:
            problems.append(f"{name!r} is not a field or tag of {measurements or 'any'}")
    for name in re.findall(QUOTED, group_by) + re.findall(QUOTED, show_key):
        if name not in tags:
            problems.append(f"{name!r} is not a tag of {measurements or 'any'}")

    # Unquoted names would slip past the checks above: refuse them.
    for name in re.findall(r"\w+\(\s*([A-Za-z_]\w*)\s*[,)]", select):
        problems.append(f'unquoted field {name!r} in SELECT; write it as "{name}"')
    for name, _op in re.findall(r"(?<![\w$\"])([A-Za-z_]\w*)\s*(" + _OPERATORS + ")", where):
        if name.lower() != "time":
            problems.append(f'unquoted name {name!r} in WHERE; write it as "{name}"')
    for item in group_by.split(","):
        item = item.strip()
        if item and item != "*" and not re.fullmatch(r"time\s*\(.*\)|" + QUOTED, item, re.I):
            problems.append(f"GROUP BY {item!r}: write tags double-quoted")

    # Tag values compared with a literal must be values the catalogue lists.
    for measurement in known:
        for tag, values in measurement.tag_values.items():
            pattern = rf'"{re.escape(tag)}"\s*(?:=|!=|<>)\s*\'((?:\\.|[^\'\\])*)\''
            for value in re.findall(pattern, query):
                if value not in values:
                    problems.append(f"{tag} = {value!r}: not one of {values}")
    return problems
