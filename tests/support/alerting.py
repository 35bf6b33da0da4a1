"""provisioning/alerting/ loaded as Grafana's file provisioning reads it:
rule groups, rules, contact points and the notification policy, for
tests/unit/test_alerting_files.py, test_alert_notifications.py and the
integration test of the rules.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.compose import ALERTING_DIR, load_yaml

EXPR_UID = "__expr__"
# The variable render-alerting fills into runbook_url (Grafana does not).
DOCS_VARIABLE = "DOCS_URL"
WEBHOOK = "notify-control-api"
PEOPLE = "people"

# Contract of issue 19: the panel each rule's notification links to.
RULE_PANELS = {
    "NotifyDeliveryP99High": ("notify-overview", 11),
    "NotifyDeliveryDrops": ("notify-overview", 33),
    "NotifyCacheHitRateLow": ("notify-overview", 16),
    "NotifyMemoryCritical": ("notify-resources", 8),
    "NotifyTelemetryDropping": ("notify-telemetry", 3),
    "NotifyTelemetrySpoolGrowing": ("notify-telemetry", 4),
    "NotifyRegressionDetected": ("notify-optimization", 6),
    "NotifyNodeSilent": ("notify-resources", 9),
    "NotifyComponentCritical": ("notify-overview", 2),
    "NotifyRedisDown": ("notify-resources", 18),
    "NotifyBooksUnbalanced": ("notify-overview", 19),
}


def alerting_files(directory: Path = ALERTING_DIR) -> list[Path]:
    return sorted(directory.glob("*.y*ml"))


def documents(directory: Path = ALERTING_DIR) -> dict[Path, dict]:
    return {path: load_yaml(path) for path in alerting_files(directory)}


def groups(directory: Path = ALERTING_DIR) -> list[dict]:
    return [g for doc in documents(directory).values() for g in doc.get("groups") or []]


def rules(directory: Path = ALERTING_DIR) -> list[dict]:
    return [r for g in groups(directory) for r in g.get("rules") or []]


def rule_ids() -> list[str]:
    return [r.get("title", "?") for r in rules()]


def rule_by_title(title: str) -> dict:
    [found] = [r for r in rules() if r.get("title") == title]
    return found


def folder_of(rule: dict) -> str:
    [group] = [g for g in groups() if any(r.get("uid") == rule.get("uid") for r in g["rules"])]
    return group["folder"]


def contact_points() -> list[dict]:
    return [c for doc in documents().values() for c in doc.get("contactPoints") or []]


def contact_point(name: str) -> dict:
    [found] = [c for c in contact_points() if c.get("name") == name]
    return found


def receivers() -> list[dict]:
    return [r for c in contact_points() for r in c.get("receivers") or []]


def policies() -> list[dict]:
    return [p for doc in documents().values() for p in doc.get("policies") or []]


def data_queries(rule: dict) -> list[dict]:
    return [d for d in rule.get("data") or [] if d.get("datasourceUid") != EXPR_UID]


def expressions(rule: dict) -> list[dict]:
    return [d for d in rule.get("data") or [] if d.get("datasourceUid") == EXPR_UID]
