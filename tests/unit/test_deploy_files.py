"""Checks of the deployment files: docker-compose.yml, .env.example, Grafana
provisioning and the dashboards.

The dashboards may name only measurements, fields and tags from the telemetry
catalogue (service/domain/telemetry.py). Their InfluxQL is parsed roughly:
identifiers in FROM are measurements, double-quoted identifiers elsewhere are
fields or tags, and unquoted field or tag names are rejected so that nothing
escapes the check.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from service.domain.telemetry import CATALOGUE, COMMON_TAGS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DATASOURCES_DIR = ROOT / "provisioning" / "datasources"
DASHBOARD_PROVIDERS_DIR = ROOT / "provisioning" / "dashboards"
DASHBOARDS_DIR = ROOT / "dashboards"

DATASOURCE_UID = "notify-influxdb"
HEALTH_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
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
# Loading


def load_yaml(path: Path) -> dict:
    with path.open() as fh:
        return yaml.safe_load(fh)


def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


def compose_services() -> dict[str, dict]:
    return compose().get("services") or {}


def env_example_names() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, _ = line.partition("=")
        assert sep, f".env.example: not NAME=value: {line!r}"
        names.add(name.removeprefix("export ").strip())
    return names


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {name: value for name, _, value in pairs}
    return {name: "" if value is None else str(value) for name, value in env.items()}


def yaml_strings(node: object) -> list[str]:
    """Every string key and value in a loaded YAML document (comments are gone)."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in yaml_strings(k) + yaml_strings(v)]
    if isinstance(node, list):
        return [s for item in node for s in yaml_strings(item)]
    return [node] if isinstance(node, str) else []


def yaml_variables(path: Path) -> set[str]:
    return set().union(*(compose_variables(s) for s in yaml_strings(load_yaml(path))))


def compose_variables(text: str) -> set[str]:
    """Names interpolated by Compose: ${VAR}, ${VAR:-x}, ${VAR:?msg}, $VAR; not $$."""
    text = text.replace("$$", "")
    braced = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)
    bare = re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", text)
    return set(braced) | set(bare)


def datasources() -> list[dict]:
    found = []
    for path in sorted(DATASOURCES_DIR.glob("*.y*ml")):
        found.extend(load_yaml(path).get("datasources") or [])
    return found


def notify_datasource() -> dict:
    matches = [ds for ds in datasources() if ds.get("uid") == DATASOURCE_UID]
    assert len(matches) == 1, f"expected one datasource with uid {DATASOURCE_UID}: {matches}"
    return matches[0]


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


# Panels that query nothing: rows group panels, text panels show markdown.
QUERYLESS_PANEL_TYPES = {"row", "text"}


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


def dashboard_variable_names(dashboard: dict) -> set[str]:
    return {v["name"] for v in dashboard.get("templating", {}).get("list", [])}


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --------------------------------------------------------------------------
# A rough InfluxQL checker against the telemetry catalogue

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_CLAUSE_END = (
    r"(?=\b(?:FROM|WHERE|GROUP\s+BY|ORDER\s+BY|LIMIT|SLIMIT|OFFSET|SOFFSET|FILL|TZ|WITH)\b|$)"
)
_OPERATORS = r"(?:=~|!~|!=|<>|<=|>=|=|<|>)"


def _strip_literals(query: str) -> str:
    """Blank out regex and string literals so their contents are not read as names."""
    query = re.sub(r"(=~|!~)\s*/(?:\\.|[^/\\])*/", r"\1 //", query)
    return re.sub(r"'(?:\\.|[^'\\])*'", "''", query)


def _strip_aliases(text: str) -> str:
    return re.sub(r"\bAS\s+(?:" + _QUOTED + r"|[A-Za-z_]\w*)", " ", text, flags=re.IGNORECASE)


def _clause(query: str, start: str) -> str:
    match = re.search(start + r"\s+(.*?)" + _CLAUSE_END, query, re.IGNORECASE | re.DOTALL)
    return match.group(1) if match else ""


def _measurements_in_from(from_clause: str) -> tuple[list[str], list[str]]:
    names, problems = [], []
    for item in from_clause.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("/") or item.startswith("("):
            problems.append(f"FROM {item!r}: regex or subquery sources cannot be checked")
            continue
        parts = re.findall(_QUOTED + r"|([A-Za-z_][\w]*)", item)
        if not parts:
            problems.append(f"FROM {item!r}: no measurement name")
            continue
        quoted, bare = parts[-1]
        names.append(quoted or bare)
    return names, problems


def influxql_problems(query: str, variables: set[str] = frozenset()) -> list[str]:
    """What in one InfluxQL query is not in the catalogue (empty when all is)."""
    problems: list[str] = []

    for name in re.findall(r"\$\{?(\w+)", query):
        if name not in GRAFANA_BUILTINS and name not in variables:
            problems.append(f"${name} is neither a dashboard variable nor a Grafana built-in")

    clean = _strip_literals(query)
    measurements, from_problems = _measurements_in_from(_clause(clean, r"\bFROM"))
    problems += from_problems
    unknown = [m for m in measurements if m not in CATALOGUE]
    problems += [f"measurement {m!r} is not in the telemetry catalogue" for m in unknown]
    known = [CATALOGUE[m] for m in measurements if m in CATALOGUE]

    tags = set(COMMON_TAGS).union(*(m.tags for m in known))
    fields = set().union(*(m.fields for m in known))
    if unknown:  # already reported; do not pile a report per name on top
        return problems

    select = _strip_aliases(_clause(clean, r"^\s*SELECT"))
    where = _clause(clean, r"\bWHERE")
    group_by = re.sub(r"\bfill\s*\([^)]*\)", " ", _clause(clean, r"\bGROUP\s+BY"), flags=re.I)
    show_key = _clause(clean, r"\bWITH\s+KEY")

    for name in re.findall(_QUOTED, select) + re.findall(_QUOTED, where):
        if name not in fields and name not in tags:
            problems.append(f"{name!r} is not a field or tag of {measurements or 'any'}")
    for name in re.findall(_QUOTED, group_by) + re.findall(_QUOTED, show_key):
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
        if item and item != "*" and not re.fullmatch(r"time\s*\(.*\)|" + _QUOTED, item, re.I):
            problems.append(f"GROUP BY {item!r}: write tags double-quoted")

    # Tag values compared with a literal must be values the catalogue lists.
    for measurement in known:
        for tag, values in measurement.tag_values.items():
            pattern = rf'"{re.escape(tag)}"\s*(?:=|!=|<>)\s*\'((?:\\.|[^\'\\])*)\''
            for value in re.findall(pattern, query):
                if value not in values:
                    problems.append(f"{tag} = {value!r}: not one of {values}")
    return problems


# --------------------------------------------------------------------------
# The checker itself: it must pass what the catalogue documents and fail on
# each kind of mistake.


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_checker_accepts_catalogue_example_queries(name):
    assert influxql_problems(CATALOGUE[name].example_query) == []


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ('SELECT sum("count") FROM "notify_bogus" WHERE $timeFilter', "notify_bogus"),
        ('SELECT sum("count") FROM notify_bogus WHERE $timeFilter', "notify_bogus"),
        ('SELECT sum("count") FROM "notify"."autogen"."notify_bogus"', "notify_bogus"),
        ('SELECT sum("bogus") FROM "notify_publish" WHERE $timeFilter', "bogus"),
        ('SELECT mean("active") FROM "notify_publish" WHERE $timeFilter', "active"),
        ('SELECT sum("count") FROM "notify_ack" WHERE "user_id" = \'u1\'', "user_id"),
        (
            'SELECT sum("count") FROM "notify_delivery" WHERE $timeFilter '
            'GROUP BY time($__interval), "latency_ms_max"',
            "latency_ms_max",
        ),
        ('SELECT sum(count) FROM "notify_ack" WHERE $timeFilter', "count"),
        ('SELECT sum("count") FROM "notify_ack" WHERE node =~ /x/', "node"),
        ('SELECT sum("count") FROM "notify_ack" GROUP BY time(1m), node', "node"),
        ('SELECT sum("count") FROM "notify_connection" WHERE "event" = \'boom\'', "boom"),
        ('SELECT sum("count") FROM /notify_.*/ WHERE $timeFilter', "regex"),
        ('SELECT sum("count") FROM "notify_ack" WHERE "node" =~ /^$nod$/', "$nod"),
        ('SHOW TAG VALUES FROM "notify_publish" WITH KEY = "count"', "count"),
    ],
)
def test_checker_rejects(query, complaint):
    problems = influxql_problems(query)
    assert any(complaint in p for p in problems), problems


def test_checker_ignores_aliases_regexes_and_strings():
    query = (
        'SELECT max("latency_ms_max") AS "worst", mean("latency_ms_p50") AS avg '
        'FROM "notify_delivery" WHERE "node" =~ /^"x"$/ AND "mode" = \'live\' AND $timeFilter '
        'GROUP BY time($__interval), "mode" fill(null)'
    )
    assert influxql_problems(query) == []


# --------------------------------------------------------------------------
# docker-compose.yml and .env.example


def test_compose_has_no_version_key():
    assert "version" not in compose(), "the Compose spec has no top-level version key"


@pytest.mark.parametrize("name", sorted(compose_services()))
def test_compose_image_is_pinned_or_built(name):
    service = compose_services()[name]
    if "build" in service:
        return
    image = service.get("image")
    assert image, f"{name}: neither image nor build"
    if "@sha256:" in image:
        return
    last = image.rsplit("/", 1)[-1]
    assert ":" in last, f"{name}: image {image!r} has no tag"
    tag = last.rsplit(":", 1)[1]
    assert tag != "latest", f"{name}: image {image!r} uses latest"
    assert re.search(r"\d", tag), f"{name}: image tag {tag!r} is not a version"


@pytest.mark.parametrize("name", sorted(compose_services()))
def test_compose_service_has_healthcheck(name):
    check = compose_services()[name].get("healthcheck")
    assert check, f"{name}: no healthcheck"
    assert not check.get("disable"), f"{name}: healthcheck disabled"
    test = check.get("test")
    assert test and test not in (["NONE"], "NONE"), f"{name}: healthcheck has no test"


@pytest.mark.parametrize("name", sorted(compose_services()))
def test_compose_depends_on_uses_conditions(name):
    services = compose_services()
    depends = services[name].get("depends_on")
    if depends is None:
        return
    assert isinstance(depends, dict), f"{name}: depends_on as a list has no conditions"
    for other, spec in depends.items():
        assert other in services, f"{name}: depends on unknown service {other!r}"
        condition = (spec or {}).get("condition")
        assert condition in HEALTH_CONDITIONS, f"{name} -> {other}: condition {condition!r}"
        if condition == "service_healthy":
            assert services[other].get("healthcheck"), f"{other} has no healthcheck to wait on"


def test_every_compose_variable_is_in_env_example():
    used = yaml_variables(COMPOSE_FILE)
    missing = used - env_example_names()
    assert not missing, f"used in docker-compose.yml but not in .env.example: {sorted(missing)}"


def test_every_env_example_variable_is_used():
    unused = env_example_names() - yaml_variables(COMPOSE_FILE)
    assert not unused, f"in .env.example but not used by docker-compose.yml: {sorted(unused)}"


def test_compose_variable_scanner():
    text = "a: ${ONE}\nb: ${TWO:-x}\nc: ${THREE:?say}\nd: $FOUR\ne: $$NOT_ME\n"
    assert compose_variables(text) == {"ONE", "TWO", "THREE", "FOUR"}


# --------------------------------------------------------------------------
# Grafana provisioning


def test_datasource_is_influxql_with_token_header():
    ds = notify_datasource()
    json_data = ds.get("jsonData") or {}
    assert ds.get("type") == "influxdb"
    assert json_data.get("version", "InfluxQL") == "InfluxQL", "must be InfluxQL, not Flux/SQL"
    assert json_data.get("dbName") == "notify"
    assert json_data.get("httpHeaderName1") == "Authorization"
    value = (ds.get("secureJsonData") or {}).get("httpHeaderValue1", "")
    assert re.fullmatch(r"Token \$\{INFLUX_TOKEN\}", value), value


def grafana_interpolated_variables(path: Path) -> set[str]:
    """The $VARs Grafana expands from its environment when it provisions a
    file: everything but alert rules' queries and annotations, which it keeps
    as written ($timeFilter in a query, {{ $labels.node }} in a summary)."""
    document = load_yaml(path) or {}
    for group in document.get("groups") or []:
        for rule in group.get("rules") or []:
            rule.pop("data", None)
            rule.pop("annotations", None)
    return set().union(*(compose_variables(s) for s in yaml_strings(document)))


def test_grafana_defines_every_variable_its_provisioning_uses():
    grafana_env = environment_of(compose_services()["grafana"])
    assert "INFLUX_TOKEN" in grafana_env
    for path in sorted((ROOT / "provisioning").rglob("*.y*ml")):
        for name in grafana_interpolated_variables(path):
            assert name in grafana_env, f"{relative(path)} uses ${name}; grafana lacks it"


def test_grafana_mounts_provisioning_and_dashboards():
    mounts = {}
    for volume in compose_services()["grafana"].get("volumes") or []:
        source, _, rest = volume.partition(":")
        mounts[source.rstrip("/")] = rest.split(":")[0]
    assert mounts.get("./provisioning") == "/etc/grafana/provisioning"
    paths = set()
    for path in sorted(DASHBOARD_PROVIDERS_DIR.glob("*.y*ml")):
        for provider in load_yaml(path).get("providers") or []:
            paths.add(provider["options"]["path"])
    assert paths, "no dashboard provider"
    assert mounts.get("./dashboards") in paths, (mounts, paths)


# --------------------------------------------------------------------------
# Dashboards


def test_there_are_dashboards():
    assert dashboard_files(), "dashboards/ holds no dashboard JSON"


def test_dashboard_uids_are_unique():
    uids = [load_dashboard(path).get("uid") for path in dashboard_files()]
    assert len(uids) == len(set(uids)), uids


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_dashboard_has_uid_title_and_tag(path):
    dashboard = load_dashboard(path)
    assert dashboard.get("uid"), "no uid"
    assert len(dashboard["uid"]) <= 40, "Grafana uids are at most 40 characters"
    assert dashboard.get("title"), "no title"
    assert "notify" in (dashboard.get("tags") or []), "dashboards are found by the tag notify"


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_dashboard_panels_have_unique_ids_and_positions(path):
    panels = all_panels(load_dashboard(path).get("panels") or [])
    assert panels, "no panels"
    ids = [p.get("id") for p in panels]
    assert None not in ids and len(ids) == len(set(ids)), ids
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel.get("gridPos") or {}), panel.get("title")


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_dashboard_targets_use_the_datasource_and_time_filter(path):
    dashboard = load_dashboard(path)
    for panel in query_panels(dashboard):
        targets = panel.get("targets") or []
        assert targets, f"panel {panel.get('title')!r} has no query"
        panel_source = panel.get("datasource")
        if panel_source is not None:
            assert isinstance(panel_source, dict), f"panel {panel.get('title')!r}: by name"
            assert panel_source.get("uid") == DATASOURCE_UID, f"panel {panel.get('title')!r}"
        for target in targets:
            where = f"panel {panel.get('title')!r} target {target.get('refId')}"
            source = target.get("datasource") or panel.get("datasource") or {}
            assert isinstance(source, dict), f"{where}: datasource by name, not uid"
            assert source.get("uid") == DATASOURCE_UID, f"{where}: datasource {source}"
            assert target.get("rawQuery") is True, f"{where}: not a raw InfluxQL query"
            assert "$timeFilter" in target.get("query", ""), f"{where}: no $timeFilter"
    for variable in query_variables(dashboard):
        source = variable.get("datasource") or {}
        assert source.get("uid") == DATASOURCE_UID, f"variable {variable.get('name')}: {source}"


@pytest.mark.parametrize("path", dashboard_files(), ids=relative)
def test_dashboard_queries_name_only_catalogue_measurements_fields_and_tags(path):
    dashboard = load_dashboard(path)
    variables = dashboard_variable_names(dashboard)
    problems = []
    for panel in query_panels(dashboard):
        for target in panel.get("targets") or []:
            for problem in influxql_problems(target.get("query", ""), variables):
                problems.append(f"panel {panel.get('title')!r}: {problem}")
    for variable in query_variables(dashboard):
        for problem in influxql_problems(variable_query(variable), variables):
            problems.append(f"variable {variable.get('name')!r}: {problem}")
    assert not problems, "\n".join(problems)


def test_influxdb_2_gets_the_rollup_buckets_the_jobs_write_to():
    import subprocess

    from service.domain.telemetry import ROLLUP_POLICIES

    script = ROOT / "provisioning" / "influxdb" / "init-rollups.sh"
    text = script.read_text()
    for rp in ROLLUP_POLICIES.values():
        assert f"{rp} ${{INFLUX_" in text  # a bucket and a DBRP mapping per policy
    assert "v1 dbrp create" in text and "--db notify" in text
    subprocess.run(["bash", "-n", str(script)], check=True)
    influx = compose()["services"]["influxdb"]
    assert "./provisioning/influxdb:/docker-entrypoint-initdb.d:ro" in influx["volumes"]
