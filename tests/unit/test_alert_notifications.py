"""What the provisioned alerts become once they fire: who gets them (the
contact points and the notification policy, routed as Alertmanager routes)
and what their summaries read like, including when a rule is in error or has
no data (Grafana's templating, modelled in tests/support/go_template.py).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from service.domain.alerts import MAX_ALERTS
from tests.support import alertmanager_routes as am
from tests.support import go_template
from tests.support.alerting import (
    EXPR_UID,
    PEOPLE,
    WEBHOOK,
    contact_point,
    contact_points,
    data_queries,
    expressions,
    folder_of,
    policies,
    receivers,
    rules,
)
from tests.support.compose import compose_services, compose_variables, environment_of, required

WEBHOOK_PATH = "/api/v1/alerts/grafana"
WEBHOOK_TOKEN_VARIABLE = "GRAFANA_WEBHOOK_TOKEN"
WEBHOOK_ACTOR = "grafana"
UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
# A plausible value for each tag a rule groups by.
TAG_VALUES = {"node": "notify-2", "role": "serve", "reason": "slow_consumer",
              "component": "delivery", "metric": "rss_bytes", "direction": "up"}


# --------------------------------------------------------------------------
# Contact points


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
    [found] = contact_point(WEBHOOK)["receivers"]
    assert found["type"] == "webhook"
    return found


def test_webhook_reaches_the_control_api_of_a_compose_service():
    settings = webhook()["settings"]
    url = urlsplit(settings["url"])
    assert url.path == WEBHOOK_PATH
    services = compose_services()
    assert url.hostname in services, f"{url.hostname} is not a compose service"
    environment = environment_of(services[url.hostname])
    assert str(url.port or 80) == environment.get("PORT", "8000")
    assert settings.get("httpMethod", "POST") == "POST"
    assert 0 < int(settings.get("maxAlerts", 0)) <= MAX_ALERTS


def test_webhook_token_is_accepted_by_the_alert_webhook_only():
    settings = webhook()["settings"]
    assert settings.get("authorization_scheme") == "Bearer"
    credentials = settings.get("authorization_credentials", "")
    assert re.fullmatch(r"\$\{?" + WEBHOOK_TOKEN_VARIABLE + r"\}?", credentials), credentials
    grafana_env = environment_of(compose_services()["grafana"])
    assert required(grafana_env.get(WEBHOOK_TOKEN_VARIABLE, ""))
    target = environment_of(compose_services()[urlsplit(settings["url"]).hostname])
    named = dict(entry.split(":", 1) for entry in
                 target.get("ALERT_WEBHOOK_TOKENS", "").split(",") if ":" in entry)
    assert WEBHOOK_ACTOR in named, target.get("ALERT_WEBHOOK_TOKENS")
    assert compose_variables(named[WEBHOOK_ACTOR]) == {WEBHOOK_TOKEN_VARIABLE}
    # not an admin token: it may not change the config or apply recommendations
    for name in ("ADMIN_TOKEN", "ADMIN_TOKENS", "PUBLISH_TOKEN"):
        assert WEBHOOK_TOKEN_VARIABLE not in compose_variables(target.get(name, "")), name


def test_people_get_email_and_slack_from_grafanas_environment():
    by_type = {r["type"]: r["settings"] for r in contact_point(PEOPLE)["receivers"]}
    assert set(by_type) == {"email", "slack"}
    assert by_type["email"]["addresses"] == "${ALERT_EMAIL_TO}"
    assert by_type["slack"]["url"] == "${ALERT_SLACK_WEBHOOK_URL}"
    # with url set, the Slack receiver needs no token or recipient (grafana/alerting
    # receivers/slack: those are required only for the chat API, its default url)
    assert "token" not in by_type["slack"] and "recipient" not in by_type["slack"]


def test_grafana_cannot_start_with_an_empty_people_setting():
    """An e-mail receiver without addresses, or a Slack one without url, fails
    validation and Grafana refuses the whole file: Compose must refuse first."""
    env = environment_of(compose_services()["grafana"])
    for name in ("ALERT_EMAIL_TO", "ALERT_SLACK_WEBHOOK_URL"):
        assert compose_variables(env.get(name, "")) == {name} and required(env[name]), name


def test_grafana_sends_mail_through_the_configured_relay():
    env = environment_of(compose_services()["grafana"])
    assert env["GF_SMTP_ENABLED"] == "true"
    assert compose_variables(env["GF_SMTP_HOST"]) == {"SMTP_HOST"} and required(
        env["GF_SMTP_HOST"])
    assert compose_variables(env["GF_SMTP_FROM_ADDRESS"]) == {"SMTP_FROM"} and required(
        env["GF_SMTP_FROM_ADDRESS"])
    assert compose_variables(env["GF_SMTP_USER"]) == {"SMTP_USER"}
    assert compose_variables(env["GF_SMTP_PASSWORD"]) == {"SMTP_PASSWORD"}


# --------------------------------------------------------------------------
# The policy, routed as Alertmanager routes it


def policy() -> dict:
    [found] = policies()
    return found


def alert_labels(rule: dict, **extra: str) -> dict[str, str]:
    return {"alertname": rule["title"], "grafana_folder": folder_of(rule),
            **rule.get("labels", {}), **extra}


def test_policy_fields_and_receivers_are_provisioned():
    names = {c["name"] for c in contact_points()}
    stack = [policy()]
    while stack:
        node = stack.pop()
        assert node.get("receiver", WEBHOOK) in names, node
        for field in ("group_wait", "group_interval", "repeat_interval"):
            if field in node:
                assert DURATION.match(str(node[field])), (field, node[field])
        stack.extend(node.get("routes") or [])
    assert policy()["receiver"] == WEBHOOK


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("title", "?"))
def test_critical_goes_to_people_and_the_webhook_the_rest_to_the_webhook(rule):
    expected = [PEOPLE, WEBHOOK] if rule["labels"]["severity"] == "critical" else [WEBHOOK]
    assert am.receivers(policy(), alert_labels(rule, node="notify")) == expected
    # a critical rule in error or without data is for people too (Grafana keeps
    # the rule's labels and renames the alert: compat.go, errorAlert/noDataAlert)
    for name in ("DatasourceError", "DatasourceNoData"):
        labels = {**alert_labels(rule), "alertname": name, "rulename": rule["title"]}
        assert am.receivers(policy(), labels) == expected


def test_the_router_is_alertmanagers():
    """The three rules the policy relies on, on trees of their own."""
    critical = {"alertname": "X", "severity": "critical"}
    child = {"receiver": PEOPLE, "object_matchers": [["severity", "=", "critical"]]}
    # a matching child stops the search: the root's receiver is not used
    assert am.receivers({"receiver": WEBHOOK, "routes": [child]}, critical) == [PEOPLE]
    # continue: true goes on to the next child, not back to the root
    tree = {"receiver": WEBHOOK, "routes": [{**child, "continue": True}]}
    assert am.receivers(tree, critical) == [PEOPLE]
    # no child matched: the root
    assert am.receivers(tree, {"severity": "warning"}) == [WEBHOOK]
    # a child without a receiver inherits its parent's
    inherit = {"receiver": WEBHOOK, "routes": [{"matchers": ["severity=critical"]}]}
    assert am.receivers(inherit, critical) == [WEBHOOK]
    regex = {"receiver": WEBHOOK, "routes": [{"receiver": PEOPLE,
                                              "object_matchers": [["severity", "=~", "crit"]]}]}
    assert am.receivers(regex, critical) == [WEBHOOK], "regexes are anchored"


# --------------------------------------------------------------------------
# Summaries in every state


def grouped_tags(rule: dict) -> set[str]:
    """The tags of the series: what the queries group by."""
    tags: set[str] = set()
    for step in data_queries(rule):
        match = re.search(r"GROUP\s+BY\s+(.*)$", step["model"]["query"], re.IGNORECASE | re.DOTALL)
        if match:
            tags |= set(re.findall(r'"(\w+)"', match.group(1)))
    return tags


def extra_labels(rule: dict) -> dict[str, str]:
    """The labels Grafana adds to every instance (scheduler, ruleExtraLabels)."""
    return {"alertname": rule["title"], "grafana_folder": folder_of(rule),
            "__alert_rule_uid__": rule["uid"]}


def state_data(rule: dict, state: str) -> go_template.Data:
    if state == "normal":
        series = {tag: TAG_VALUES[tag] for tag in grouped_tags(rule)}
        values = {e["refId"]: go_template.Value(1.25, series) for e in expressions(rule)}
        return go_template.Data({**extra_labels(rule), **series}, values, "[ var='C' ]")
    if state == "nodata":  # a query returned nothing (eval.go, evaluateExecutionResult)
        ref = data_queries(rule)[0]["refId"]
        return go_template.Data({**extra_labels(rule), "datasource_uid": "notify-influxdb",
                                 "ref_id": ref}, {})
    return go_template.Data(extra_labels(rule), {})  # error


@pytest.mark.parametrize("state", ["normal", "nodata", "error"])
@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("title", "?"))
def test_every_annotation_renders_in_every_state(rule, state):
    data = state_data(rule, state)
    for name, template in (rule.get("annotations") or {}).items():
        try:
            text = go_template.expand(template, data)
        except go_template.TemplateError as exc:
            pytest.fail(f"{name}: Grafana would show the raw template ({exc})")
        assert go_template.NO_VALUE not in text, f"{name}: {text}"
        assert "{{" not in text and "NaN" not in text, f"{name}: {text}"
        assert text.strip(), name


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("title", "?"))
def test_a_firing_summary_names_its_series_and_figures(rule):
    summary = rule["annotations"]["summary"]
    text = go_template.expand(summary, state_data(rule, "normal"))
    for tag in re.findall(r"\$labels\.(\w+)", summary):
        assert TAG_VALUES[tag] in text, f"{tag} missing: {text}"
    if re.search(r"\$values\.\w+", summary):
        assert re.search(r"\d", text), text
    assert EXPR_UID not in text


def test_the_template_model_fails_where_grafana_does():
    empty = go_template.Data({"alertname": "X"}, {})
    with pytest.raises(go_template.TemplateError):  # humanize of nothing
        go_template.expand("p99 {{ humanize $values.B.Value }} ms", empty)
    assert go_template.expand("on {{ $labels.node }}", empty) == "on [no value]"
    guarded = "{{ if $values.B }}{{ $values.B.Value }}{{ else }}none{{ end }}"
    assert go_template.expand(guarded, empty) == "none"
    zero = go_template.Data({}, {"B": go_template.Value(0.0)})
    assert go_template.expand(guarded, zero) == "0", "a Value is a struct: true even at 0"
    assert go_template.expand("a  {{- $value -}}  b", empty) == "ab"


@pytest.mark.parametrize(("function", "value", "text"), [
    ("humanize", 1234.0, "1.234k"), ("humanize", 0.05, "50m"), ("humanize", 180.0, "180"),
    ("humanize", 0.0, "0"), ("humanize1024", 1048576.0, "1Mi"),
    ("humanize1024", 0.5, "0.5"), ("humanizePercentage", 0.953, "95.3%"),
])
def test_the_prometheus_functions(function, value, text):
    data = go_template.Data({}, {"B": go_template.Value(value)})
    assert go_template.expand(f"{{{{ {function} $values.B.Value }}}}", data) == text
