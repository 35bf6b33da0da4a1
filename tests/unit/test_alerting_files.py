"""Checks of provisioning/alerting/: Grafana's file-provisioning schema for
alert rules, contact points and notification policies, the rules' queries
against the telemetry catalogue (the checker of tests/support/influxql.py), their
panels and runbook anchors, and the shape of the rules the issues fixed.

How the rules behave against data: tests/integration/test_alert_rules.py.
What their notifications read like and where they go:
tests/unit/test_alert_notifications.py.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from service.domain.alerts import MITIGATIONS, mitigation_for, parse_grafana
from service.domain.measurements import CATALOGUE
from tests.support.alerting import (
    DOCS_VARIABLE,
    EXPR_UID,
    RULE_PANELS,
    alerting_files,
    data_queries,
    expressions,
    groups,
    policies,
    receivers,
    rule_by_title,
    rule_ids,
    rules,
)
from tests.support.compose import (
    ALERTING_DIR,
    COMPOSE_SCRIPTS,
    compose_services,
    compose_variables,
    datasources,
    environment_of,
    load_yaml,
    mounts,
    relative,
    yaml_strings,
)
from tests.support.grafana import all_panels, dashboard_files, load_dashboard
from tests.support.influxql import influxql_problems

RUNBOOK = ALERTING_DIR.parents[1] / "docs" / "runbook.md"
RENDER = COMPOSE_SCRIPTS / "render-alerting.sh"
RAW_FROM = re.compile(r'\bFROM\s+"raw"\."(\w+)"', re.IGNORECASE)

# Grafana's enums (pkg/services/ngalert/models): KeepLast came with 10.4.
NO_DATA_STATES = {"Alerting", "NoData", "OK"}
EXEC_ERR_STATES = {"Alerting", "Error", "OK"}
KEEP_LAST = "KeepLast"
KEEP_LAST_SINCE = (10, 4)
REDUCERS = {"last", "mean", "min", "max", "sum", "count"}
REDUCE_MODES = {"", "strict", "dropNN", "replaceNN"}
THRESHOLD_PARAMS = {"gt": 1, "lt": 1, "within_range": 2, "outside_range": 2}
EXPRESSION_TYPES = {"reduce", "math", "threshold"}
SEVERITIES = {"critical", "warning"}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")

# What the issues ask the rules to cover, and the rule that does.
REQUIRED_RULES = {
    "p99 latency above target": "NotifyDeliveryP99High",
    "delivery drops greater than 0": "NotifyDeliveryDrops",
    "cache hit rate below 70%": "NotifyCacheHitRateLow",
    "memory above 90% of budget": "NotifyMemoryCritical",
    "telemetry dropping": "NotifyTelemetryDropping",
    "telemetry spool growing": "NotifyTelemetrySpoolGrowing",
    "a regression detected": "NotifyRegressionDetected",
    "no events from a node": "NotifyNodeSilent",
    "component health critical": "NotifyComponentCritical",
    "the books do not balance": "NotifyBooksUnbalanced",
}


def datasource_uids() -> set[str]:
    return {ds["uid"] for ds in datasources() if ds.get("uid")}


def grafana_version() -> tuple[int, ...]:
    tag = compose_services()["grafana"]["image"].rsplit(":", 1)[1]
    return tuple(int(part) for part in re.findall(r"\d+", tag)[:3])


def allowed_states(base: set[str]) -> set[str]:
    return base | ({KEEP_LAST} if grafana_version() >= KEEP_LAST_SINCE else set())


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (and the service's /docs)."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", RUNBOOK.read_text(), re.MULTILINE)
    return {github_anchor(h) for h in headings}


def refs_in_math(expression: str) -> set[str]:
    return set(re.findall(r"\$\{?([A-Za-z]\w*)\}?", expression))


def condition_of(rule: dict) -> dict:
    [found] = [e["model"] for e in expressions(rule) if e["refId"] == rule["condition"]]
    return found


# --------------------------------------------------------------------------
# The files


def test_there_are_alerting_files_with_rules_a_contact_point_and_a_policy():
    assert alerting_files(), "provisioning/alerting/ holds no YAML"
    assert rules() and receivers() and policies()


@pytest.mark.parametrize("path", alerting_files(), ids=relative)
def test_file_has_api_version_1_and_known_sections(path):
    document = load_yaml(path)
    assert document.get("apiVersion") == 1
    known = {"apiVersion", "groups", "deleteRules", "contactPoints", "deleteContactPoints",
             "policies", "resetPolicies", "templates", "deleteTemplates", "muteTimes",
             "deleteMuteTimes"}
    assert set(document) <= known, set(document) - known


def test_the_issue_list_is_covered():
    titles = set(rule_ids())
    missing = {need: title for need, title in REQUIRED_RULES.items() if title not in titles}
    assert not missing, missing


# --------------------------------------------------------------------------
# Rule groups and rules


@pytest.mark.parametrize("group", groups(), ids=lambda g: g.get("name", "?"))
def test_group_fields(group):
    assert isinstance(group.get("orgId"), int) and group["orgId"] >= 1
    assert group.get("name", "").strip(), "a group needs a name"
    assert group.get("folder", "").strip(), "a group needs a folder"
    assert DURATION.match(str(group.get("interval", ""))), group.get("interval")
    assert group.get("rules"), "a group needs rules"


def test_rule_uids_and_titles_are_unique():
    uids = [r.get("uid") for r in rules()]
    assert len(uids) == len(set(uids)), uids
    titles = rule_ids()
    assert len(titles) == len(set(titles)), titles


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("title", "?"))
def test_rule_required_fields_and_enums(rule):
    assert UID.match(rule.get("uid") or ""), f"uid {rule.get('uid')!r}"
    assert rule.get("title", "").strip()
    assert rule.get("condition"), "no condition"
    assert rule.get("data"), "no data"
    assert rule.get("noDataState") in allowed_states(NO_DATA_STATES), rule.get("noDataState")
    assert rule.get("execErrState") in allowed_states(EXEC_ERR_STATES), rule.get("execErrState")
    assert DURATION.match(str(rule.get("for", ""))), f"for {rule.get('for')!r}"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("title", "?"))
def test_rule_refs_exist_and_the_condition_is_one_of_them(rule):
    ref_ids = [d.get("refId") for d in rule["data"]]
    assert all(ref_ids) and len(ref_ids) == len(set(ref_ids)), ref_ids
    assert rule["condition"] in ref_ids, f"condition {rule['condition']} not in {ref_ids}"
    seen: set[str] = set()
    for step in rule["data"]:
        model = step.get("model") or {}
        assert model.get("refId", step["refId"]) == step["refId"], step["refId"]
        if step["datasourceUid"] == EXPR_UID:
            used = (refs_in_math(model.get("expression", "")) if model.get("type") == "math"
                    else {model.get("expression")})
            assert used and used <= seen, f"{step['refId']} uses {used}, defined: {seen}"
        seen.add(step["refId"])
    assert rule["condition"] in {e["refId"] for e in expressions(rule)}


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("title", "?"))
def test_rule_datasources_are_provisioned_or_expressions(rule):
    provisioned = datasource_uids()
    for step in rule["data"]:
        uid = step.get("datasourceUid")
        assert uid == EXPR_UID or uid in provisioned, f"{step['refId']}: datasource {uid!r}"
        model_source = (step.get("model") or {}).get("datasource") or {}
        assert model_source.get("uid", uid) == uid, f"{step['refId']}: model says {model_source}"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("title", "?"))
def test_rule_queries_are_raw_influxql_over_a_relative_range(rule):
    assert data_queries(rule), "no query"
    for step in data_queries(rule):
        where = f"{rule['title']} {step['refId']}"
        model = step["model"]
        assert model.get("rawQuery") is True, f"{where}: not a raw InfluxQL query"
        query = model.get("query", "")
        # Grafana renders $timeFilter from relativeTimeRange: "time >= <from>ms
        # and time <= <to>ms". A rule has no dashboard variables, and now()
        # would escape the range Grafana evaluates.
        assert "$timeFilter" in query, f"{where}: no $timeFilter"
        others = set(re.findall(r"\$\{?(\w+)", query)) - {"timeFilter"}
        assert not others, f"{where}: {others} are not filled in alert queries"
        assert "now()" not in query.lower(), f"{where}: now() instead of $timeFilter"
        span = step.get("relativeTimeRange") or {}
        assert isinstance(span.get("from"), int) and isinstance(span.get("to"), int), where
        assert span["from"] > span["to"] >= 0, f"{where}: relativeTimeRange {span}"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("title", "?"))
def test_rule_queries_read_the_raw_retention_policy_by_name(rule):
    """Without a policy a query reads the database's default mapping, which on
    InfluxDB 2.x was a rollup bucket (issue 19, defect 1)."""
    for step in data_queries(rule):
        query = step["model"]["query"]
        sources = re.findall(r"\bFROM\s+(\S+)", query, re.IGNORECASE)
        assert sources and all(RAW_FROM.match(f"FROM {s}") for s in sources), (
            f"{step['refId']}: {sources}")


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("title", "?"))
def test_rule_queries_name_only_catalogue_names(rule):
    problems = [f"{step['refId']}: {problem}"
                for step in data_queries(rule)
                for problem in influxql_problems(step["model"].get("query", ""))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("title", "?"))
def test_rule_expressions_are_ones_grafana_has(rule):
    for step in expressions(rule):
        model = step["model"]
        where = f"{rule['title']} {step['refId']}"
        assert model.get("type") in EXPRESSION_TYPES, f"{where}: type {model.get('type')!r}"
        assert (model.get("datasource") or {}).get("uid", EXPR_UID) == EXPR_UID, where
        if model["type"] == "reduce":
            assert model.get("reducer") in REDUCERS, f"{where}: reducer {model.get('reducer')}"
            mode = (model.get("settings") or {}).get("mode", "")
            assert mode in REDUCE_MODES, f"{where}: mode {mode!r}"
            if mode == "replaceNN":
                assert "replaceWithValue" in model["settings"], where
        elif model["type"] == "threshold":
            [condition] = model.get("conditions") or [None]
            evaluator = condition["evaluator"]
            kind = evaluator.get("type")
            assert kind in THRESHOLD_PARAMS, f"{where}: evaluator {kind!r}"
            params = evaluator.get("params") or []
            assert len(params) >= THRESHOLD_PARAMS[kind], f"{where}: params {params}"
            assert all(isinstance(p, int | float) for p in params), where
        else:
            assert refs_in_math(model.get("expression", "")), f"{where}: math with no $ref"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("title", "?"))
def test_rule_annotations_and_labels(rule):
    annotations = rule.get("annotations") or {}
    assert annotations.get("summary", "").strip(), "no summary"
    # Grafana keeps annotations as written; only render-alerting fills DOCS_URL
    others = {k: v for k, v in annotations.items() if k != "runbook_url"}
    assert "${" not in "".join(others.values()), "annotations are not env variables"
    labels = rule.get("labels") or {}
    assert labels.get("severity") in SEVERITIES, labels
    # every alert names its component: a label, or the query's "component" tag
    grouped = any('"component"' in step["model"].get("query", "").split("GROUP BY")[-1]
                  for step in data_queries(rule) if "GROUP BY" in step["model"].get("query", ""))
    assert labels.get("component") or grouped, "no component label"
    assert not (labels.get("component") and grouped), "the label would hide the query's"
    # Grafana expands $VAR in labels from its environment when provisioning
    assert not any("$" in s for s in yaml_strings(labels)), labels


# --------------------------------------------------------------------------
# Panels and runbook links


def test_every_rule_links_the_panel_the_contract_names():
    links = {r["title"]: (r.get("dashboardUid"), r.get("panelId")) for r in rules()}
    assert links == RULE_PANELS


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("title", "?"))
def test_the_linked_panel_exists_in_that_dashboard(rule):
    """Grafana 11.2 reads dashboardUid and panelId (rules_types.go, AlertRuleV1)
    and a notification links to /d/<uid>?viewPanel=<id>."""
    assert isinstance(rule.get("panelId"), int), "panelId must be a number"
    dashboards = {load_dashboard(p)["uid"]: load_dashboard(p) for p in dashboard_files()}
    dashboard = dashboards.get(rule.get("dashboardUid"))
    assert dashboard, f"no dashboard with uid {rule.get('dashboardUid')!r}"
    ids = {p.get("id") for p in all_panels(dashboard.get("panels") or [])}
    assert rule["panelId"] in ids, f"{rule['dashboardUid']} has no panel {rule['panelId']}"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("title", "?"))
def test_rule_runbook_url_is_built_from_docs_url_and_its_anchor_exists(rule):
    url = (rule.get("annotations") or {}).get("runbook_url", "")
    prefix = "${" + DOCS_VARIABLE + "}/runbook#"
    assert url.startswith(prefix), f"runbook_url {url!r}: not absolute, not from DOCS_URL"
    anchor = url.removeprefix(prefix)
    assert anchor in runbook_anchors(), f"docs/runbook.md has no heading for #{anchor}"


def render(tmp_path: Path, docs_url: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), DOCS_VARIABLE: docs_url}
    return subprocess.run(["bash", str(RENDER), str(ALERTING_DIR), str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=30)


def test_grafana_reads_rules_with_absolute_runbook_links(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.yml").write_text("apiVersion: 1\n")
    result = render(tmp_path, "https://ops.example.org/notify/docs/")
    assert result.returncode == 0, result.stderr
    rendered = {p.name: load_yaml(p) for p in sorted((tmp_path / "out").glob("*.yml"))}
    assert set(rendered) == {p.name for p in alerting_files()}, "stale files stay"
    for path in alerting_files():
        source, output = load_yaml(path), rendered[path.name]
        for rule in [r for g in output.get("groups") or [] for r in g["rules"]]:
            url = rule["annotations"]["runbook_url"]
            parts = urlsplit(url)
            assert parts.scheme == "https" and parts.netloc == "ops.example.org", url
            assert parts.path == "/notify/docs/runbook" and parts.fragment in runbook_anchors()
        # nothing else changes: the contact points' ${...} are Grafana's to fill
        for group in source.get("groups") or []:
            for rule in group["rules"]:
                rule["annotations"]["runbook_url"] = rule["annotations"]["runbook_url"].replace(
                    "${" + DOCS_VARIABLE + "}", "https://ops.example.org/notify/docs")
        assert output == source, path.name


@pytest.mark.parametrize("bad", ["", "docs", "/docs", "http://host/docs#x", "http://a b/"])
def test_rendering_refuses_a_docs_url_that_is_not_absolute(tmp_path, bad):
    result = render(tmp_path, bad)
    assert result.returncode != 0
    assert "DOCS_URL" in result.stderr


def test_compose_renders_the_rules_before_grafana_reads_them():
    services = compose_services()
    renderer = services["render-alerting"]
    command = renderer.get("entrypoint") or renderer.get("command")
    assert command[:2] == ["bash", "/compose/render-alerting.sh"], command
    source, output = command[2:4]
    volumes = mounts(renderer)
    assert volumes[source] == "./provisioning/alerting" and volumes["/compose"] == (
        "./provisioning/compose")
    assert compose_variables(environment_of(renderer)[DOCS_VARIABLE]) == {DOCS_VARIABLE}
    grafana = services["grafana"]
    assert mounts(grafana)["/etc/grafana/provisioning/alerting"] == volumes[output]
    assert grafana["depends_on"]["render-alerting"] == {
        "condition": "service_completed_successfully"}
    # and nothing else provides Grafana's alerting directory
    assert not any(target in ("/etc/grafana/provisioning", "/etc/grafana")
                   for target in mounts(grafana))


def test_anchor_function_matches_githubs():
    assert github_anchor("NotifyMemoryCritical") == "notifymemorycritical"
    assert github_anchor("How alerts reach the `service`") == "how-alerts-reach-the-service"


# --------------------------------------------------------------------------
# The rules issue 19 changed


def test_p99_is_judged_against_the_live_target_not_a_constant():
    rule = rule_by_title("NotifyDeliveryP99High")
    queries = {step["refId"]: step["model"]["query"] for step in data_queries(rule)}
    [target] = [ref for ref, q in queries.items() if '"analysis_targets"' in q]
    assert 'last("delivery_p99_ms")' in queries[target]
    assert "delivery_p99_ms" in CATALOGUE["analysis_targets"].fields
    # no GROUP BY: a number without labels joins every node's p99 (pkg/expr/mathexp, union)
    assert "GROUP BY" not in queries[target].upper()
    steps = {e["refId"]: e["model"] for e in expressions(rule)}
    divisions = [m for m in steps.values() if m["type"] == "math" and "/" in m["expression"]]
    assert divisions, "the p99 is never set against the target"
    assert condition_of(rule)["conditions"][0]["evaluator"] == {"type": "gt", "params": [1]}


def test_drops_are_a_rate_per_second_without_disconnects():
    rule = rule_by_title("NotifyDeliveryDrops")
    [step] = data_queries(rule)
    query = step["model"]["query"]
    assert "\"reason\" != 'disconnected'" in query
    divisor = re.search(r'sum\("count"\)\s*/\s*(\d+)', query)
    assert divisor, "a count, not a rate"
    assert int(divisor.group(1)) == step["relativeTimeRange"]["from"] - step[
        "relativeTimeRange"]["to"], "the rate's divisor is not the window"
    threshold = condition_of(rule)["conditions"][0]["evaluator"]
    assert threshold["type"] == "gt" and 0 < threshold["params"][0] < 1, threshold


def test_books_unbalanced_fires_on_any_non_zero_last_value_and_pages():
    rule = rule_by_title("NotifyBooksUnbalanced")
    [step] = data_queries(rule)
    assert 'last("unaccounted")' in step["model"]["query"]
    assert '"notify_books"' in step["model"]["query"]
    assert step["model"]["query"].rstrip().endswith('GROUP BY "node"')
    assert condition_of(rule)["conditions"][0]["evaluator"] == {
        "type": "outside_range", "params": [0, 0]}
    assert rule["labels"]["severity"] == "critical"
    assert rule["for"] == "1m", "two evaluations: a loss persists, one odd sample does not"


def test_every_mitigated_alertname_is_a_rule_title():
    """Grafana sends a rule's title as labels.alertname: the control API
    applies a mitigation only to the names in MITIGATIONS, exactly."""
    titles = set(rule_ids())
    for mitigation in MITIGATIONS:
        assert mitigation.alertname in titles, f"no rule is titled {mitigation.alertname!r}"
    assert "alertname" not in (rule_by_title("NotifyMemoryCritical").get("labels") or {})


def test_the_memory_alert_as_grafana_sends_it_is_mitigated():
    """The webhook body Grafana builds from the rule (alertname = title, the
    rule's labels, the series' labels) is one the control API mitigates."""
    rule = rule_by_title("NotifyMemoryCritical")
    [group] = [g for g in groups() if rule in g["rules"]]
    alert = {"status": "firing", "fingerprint": "0f3c5e1d2a4b6c7d",
             "startsAt": "2026-11-27T10:00:00Z", "values": {"E": 0.95},
             "labels": {"alertname": rule["title"], "grafana_folder": group["folder"],
                        **rule["labels"], "node": "notify"},
             "annotations": {"summary": "notify uses 95 % of its memory budget"}}
    [parsed] = parse_grafana({"receiver": "notify-control-api", "status": "firing",
                              "alerts": [alert]})
    mitigation = mitigation_for(parsed)
    assert mitigation is not None and mitigation.level == "conservative"
    resolved = parse_grafana({"alerts": [{**alert, "status": "resolved"}]})
    assert mitigation_for(resolved[0]) is None


def test_memory_rule_fires_above_90_percent():
    evaluator = condition_of(rule_by_title("NotifyMemoryCritical"))["conditions"][0]["evaluator"]
    assert evaluator == {"type": "gt", "params": [0.9]}
