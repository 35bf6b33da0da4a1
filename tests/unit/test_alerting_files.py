"""Checks of provisioning/alerting/: Grafana's file-provisioning schema for
alert rules, contact points and notification policies, the rules' queries
against the telemetry catalogue (the checker of test_deploy_files), their
runbook anchors, and the webhook that reaches the control API.

How the rules behave against data: tests/integration/test_alert_rules.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from service.domain.alerts import MITIGATIONS, mitigation_for, parse_grafana
from tests.unit.test_deploy_files import (
    COMPOSE_FILE,
    ROOT,
    compose_services,
    compose_variables,
    datasources,
    environment_of,
    influxql_problems,
    load_yaml,
    relative,
    yaml_strings,
)

ALERTING_DIR = ROOT / "provisioning" / "alerting"
RUNBOOK = ROOT / "docs" / "runbook.md"
EXPR_UID = "__expr__"
WEBHOOK_PATH = "/api/v1/alerts/grafana"
WEBHOOK_TOKEN_VARIABLE = "GRAFANA_WEBHOOK_TOKEN"
WEBHOOK_ACTOR = "grafana"

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

# What issue 8 asks the rules to cover, and the rule that does.
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
}


# --------------------------------------------------------------------------
# Loading


def alerting_files() -> list[Path]:
    return sorted(ALERTING_DIR.glob("*.y*ml"))


def documents() -> dict[Path, dict]:
    return {path: load_yaml(path) for path in alerting_files()}


def groups() -> list[dict]:
    return [g for doc in documents().values() for g in doc.get("groups") or []]


def rules() -> list[dict]:
    return [r for g in groups() for r in g.get("rules") or []]


def rule_ids() -> list[str]:
    return [r.get("title", "?") for r in rules()]


def rule_by_title(title: str) -> dict:
    [found] = [r for r in rules() if r.get("title") == title]
    return found


def contact_points() -> list[dict]:
    return [c for doc in documents().values() for c in doc.get("contactPoints") or []]


def receivers() -> list[dict]:
    return [r for c in contact_points() for r in c.get("receivers") or []]


def policies() -> list[dict]:
    return [p for doc in documents().values() for p in doc.get("policies") or []]


def datasource_uids() -> set[str]:
    return {ds["uid"] for ds in datasources() if ds.get("uid")}


def grafana_version() -> tuple[int, ...]:
    image = compose_services()["grafana"]["image"]
    tag = image.rsplit(":", 1)[1]
    return tuple(int(part) for part in re.findall(r"\d+", tag)[:3])


def allowed_states(base: set[str]) -> set[str]:
    return base | ({KEEP_LAST} if grafana_version() >= KEEP_LAST_SINCE else set())


def data_queries(rule: dict) -> list[dict]:
    return [d for d in rule.get("data") or [] if d.get("datasourceUid") != EXPR_UID]


def expressions(rule: dict) -> list[dict]:
    return [d for d in rule.get("data") or [] if d.get("datasourceUid") == EXPR_UID]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", RUNBOOK.read_text(), re.MULTILINE)
    return {github_anchor(h) for h in headings}


def refs_in_math(expression: str) -> set[str]:
    return set(re.findall(r"\$\{?([A-Za-z]\w*)\}?", expression))


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
    # the condition is an expression, and every step leads to it
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
    assert "${" not in "".join(annotations.values()), "annotations are not env variables"
    labels = rule.get("labels") or {}
    assert labels.get("severity") in SEVERITIES, labels
    # every alert names its component: a label, or the query's "component" tag
    grouped = any('"component"' in step["model"].get("query", "").split("GROUP BY")[-1]
                  for step in data_queries(rule) if "GROUP BY" in step["model"].get("query", ""))
    assert labels.get("component") or grouped, "no component label"
    assert not (labels.get("component") and grouped), "the label would hide the query's"
    # Grafana expands $VAR in labels from its environment when provisioning
    assert not any("$" in s for s in yaml_strings(labels)), labels


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("title", "?"))
def test_rule_runbook_url_is_an_anchor_of_the_runbook(rule):
    url = (rule.get("annotations") or {}).get("runbook_url", "")
    path, _, anchor = url.partition("#")
    assert path == "docs/runbook.md" and anchor, f"runbook_url {url!r}"
    assert anchor in runbook_anchors(), f"docs/runbook.md has no heading for #{anchor}"


def test_anchor_function_matches_githubs():
    assert github_anchor("NotifyMemoryCritical") == "notifymemorycritical"
    assert github_anchor("How alerts reach the `service`") == "how-alerts-reach-the-service"


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
    rule = rule_by_title("NotifyMemoryCritical")
    [condition] = [e for e in expressions(rule) if e["refId"] == rule["condition"]]
    evaluator = condition["model"]["conditions"][0]["evaluator"]
    assert evaluator == {"type": "gt", "params": [0.9]}


# --------------------------------------------------------------------------
# Contact point and policy


def test_contact_point_and_receiver_fields():
    names = [c.get("name") for c in contact_points()]
    assert all(names) and len(names) == len(set(names)), names
    for contact in contact_points():
        assert isinstance(contact.get("orgId", 1), int)
        assert contact.get("receivers"), f"{contact['name']}: no receivers"
    uids = [r.get("uid") for r in receivers()]
    assert all(u and UID.match(u) for u in uids) and len(uids) == len(set(uids)), uids
    for receiver in receivers():
        assert receiver.get("type"), receiver
        assert receiver.get("settings"), f"{receiver['uid']}: no settings"


def webhook() -> dict:
    found = [r for r in receivers() if r.get("type") == "webhook"]
    assert len(found) == 1, found
    return found[0]


def test_webhook_reaches_the_control_api_of_a_compose_service():
    settings = webhook()["settings"]
    url = urlsplit(settings["url"])
    assert url.path == WEBHOOK_PATH
    services = compose_services()
    assert url.hostname in services, f"{url.hostname} is not a compose service"
    port = url.port or 80
    environment = environment_of(services[url.hostname])
    assert str(port) == environment.get("PORT", "8000"), (port, environment.get("PORT"))
    assert settings.get("httpMethod", "POST") == "POST"


def test_webhook_uses_a_named_admin_token_from_grafanas_environment():
    settings = webhook()["settings"]
    assert settings.get("authorization_scheme") == "Bearer"
    credentials = settings.get("authorization_credentials", "")
    assert compose_variables(credentials) == {WEBHOOK_TOKEN_VARIABLE}, credentials
    assert re.fullmatch(r"\$\{?" + WEBHOOK_TOKEN_VARIABLE + r"\}?", credentials), credentials
    grafana_env = environment_of(compose_services()["grafana"])
    assert WEBHOOK_TOKEN_VARIABLE in compose_variables(grafana_env.get(WEBHOOK_TOKEN_VARIABLE, ""))
    # the service it calls knows that token by a name, the actor it records
    target = environment_of(compose_services()[urlsplit(settings["url"]).hostname])
    named = dict(entry.split(":", 1) for entry in target.get("ADMIN_TOKENS", "").split(",")
                 if ":" in entry)
    assert WEBHOOK_ACTOR in named, target.get("ADMIN_TOKENS")
    assert compose_variables(named[WEBHOOK_ACTOR]) == {WEBHOOK_TOKEN_VARIABLE}
    assert WEBHOOK_TOKEN_VARIABLE not in compose_variables(target.get("ADMIN_TOKEN", ""))


def test_webhook_sends_no_more_alerts_than_the_control_api_takes():
    from service.domain.alerts import MAX_ALERTS

    max_alerts = int(webhook()["settings"].get("maxAlerts", 0))
    assert 0 < max_alerts <= MAX_ALERTS


def test_policy_routes_to_a_provisioned_contact_point():
    names = {c["name"] for c in contact_points()}
    for policy in policies():
        assert policy.get("receiver") in names, policy
        for field in ("group_wait", "group_interval", "repeat_interval"):
            if field in policy:
                assert DURATION.match(str(policy[field])), (field, policy[field])
        for child in policy.get("routes") or []:
            assert child.get("receiver", policy["receiver"]) in names, child


def test_grafana_mounts_the_alerting_directory():
    mounts = [v.split(":") for v in compose_services()["grafana"].get("volumes") or []]
    target = {source.rstrip("/"): dest for source, dest, *_ in mounts}
    provisioning = target.get("./provisioning")
    alerting = target.get("./provisioning/alerting")
    assert provisioning == "/etc/grafana/provisioning" or (
        alerting == "/etc/grafana/provisioning/alerting"), target
    assert COMPOSE_FILE.exists()
