"""Checks of the deployment files: docker-compose.yml, .env.example, Grafana
provisioning and the dashboards.

The dashboards may name only measurements, fields and tags from the telemetry
catalogue (service/domain/measurements/). Their InfluxQL is parsed roughly:
identifiers in FROM are measurements, double-quoted identifiers elsewhere are
fields or tags, and unquoted field or tag names are rejected so that nothing
escapes the check.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.domain.measurements import CATALOGUE
from tests.support.compose import (
    COMPOSE_FILE,
    DATASOURCE_UID,
    ROOT,
    compose,
    compose_services,
    compose_variables,
    env_example,
    environment_of,
    load_yaml,
    notify_datasource,
    one_shots,
    relative,
    yaml_strings,
)
from tests.support.grafana import (
    all_panels,
    dashboard_files,
    load_dashboard,
    query_panels,
    query_variables,
    variable_query,
)
from tests.support.influxql import influxql_problems

DASHBOARD_PROVIDERS_DIR = ROOT / "provisioning" / "dashboards"

HEALTH_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


# --------------------------------------------------------------------------
# Loading (compose and datasources: tests/support/compose.py)


def env_example_names() -> set[str]:
    return set(env_example())


def yaml_variables(path: Path) -> set[str]:
    return set().union(*(compose_variables(s) for s in yaml_strings(load_yaml(path))))


def dashboard_variable_names(dashboard: dict) -> set[str]:
    return {v["name"] for v in dashboard.get("templating", {}).get("list", [])}


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
    if name in one_shots():
        # others wait for it to exit 0 (service_completed_successfully): it
        # is never "healthy", and must not restart
        assert str(compose_services()[name].get("restart", "no")) == "no", name
        return
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


def test_datasource_is_influxql_as_the_read_only_user():
    # the credentials themselves: tests/unit/test_influx_provisioning.py
    ds = notify_datasource()
    json_data = ds.get("jsonData") or {}
    assert ds.get("type") == "influxdb"
    assert json_data.get("version", "InfluxQL") == "InfluxQL", "must be InfluxQL, not Flux/SQL"
    assert json_data.get("dbName") == "notify"
    assert ds.get("basicAuth") is True
    value = (ds.get("secureJsonData") or {}).get("basicAuthPassword", "")
    assert value == "${INFLUX_READ_TOKEN}", value
    assert "INFLUX_TOKEN" not in compose_variables(str(ds)), "the operator token"


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
    assert "INFLUX_READ_TOKEN" in grafana_env and "INFLUX_TOKEN" not in grafana_env
    for path in sorted((ROOT / "provisioning").rglob("*.y*ml")):
        for name in grafana_interpolated_variables(path):
            assert name in grafana_env, f"{relative(path)} uses ${name}; grafana lacks it"


def test_grafana_mounts_provisioning_and_dashboards():
    mounts = {}
    for volume in compose_services()["grafana"].get("volumes") or []:
        source, _, rest = volume.partition(":")
        mounts[source.rstrip("/")] = rest.split(":")[0]
    # alerting/ is rendered first (test_alerting_files.py); the rest as it is
    assert mounts.get("./provisioning/datasources") == "/etc/grafana/provisioning/datasources"
    assert mounts.get("./provisioning/dashboards") == "/etc/grafana/provisioning/dashboards"
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
    # run against a stand-in influx CLI: tests/unit/test_influx_provisioning.py
    from service.domain.measurements import ROLLUP_POLICIES

    text = (ROOT / "provisioning" / "influxdb" / "init-buckets.sh").read_text()
    for rp in ROLLUP_POLICIES.values():
        assert f"{rp} ${{INFLUX_" in text  # a bucket and a DBRP mapping per policy
    influx = compose()["services"]["influxdb"]
    assert "./provisioning/influxdb:/docker-entrypoint-initdb.d:ro" in influx["volumes"]
