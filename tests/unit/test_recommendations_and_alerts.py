"""Deciding on recommendations and receiving Grafana's alerts, through the
control log (in memory here; on real databases in tests/e2e/test_control_api.py)."""

import copy

import pytest

from service.domain.alerts import MAX_ALERTS, parse_grafana
from service.domain.control import RECOMMENDATION_ISSUED, EventDraft
from service.domain.errors import ConflictError, InvalidInput, NotFound
from service.service_layer import recommendations as recs
from service.service_layer.alert_webhook import receive_grafana
from tests.support.grafana_webhook import GRAFANA_BODY


def issue(config, rid="r1", **change):
    change = change or {"parameters": {"batch_timeout_ms": 80}}
    config.append([EventDraft(RECOMMENDATION_ISSUED,
                              {"id": rid, **change, "evidence": {"flush_by_timeout": 0.9},
                               "expected_effect": "fewer, fuller batches", "confidence": 0.8},
                              "jobs")])


def test_applying_a_recommendation_changes_the_config_once(config, log):
    issue(config)
    applied = recs.apply_recommendation(config, "r1", "alice", "looks right")
    assert applied["status"] == "applied" and applied["changed"] is True
    assert applied["decided_by"] == "alice" and applied["decision_reason"] == "looks right"
    assert applied["evidence"] == {"flush_by_timeout": 0.9} and applied["confidence"] == 0.8
    assert config.values["batch_timeout_ms"] == 80
    events = len(log.events)
    again = recs.apply_recommendation(config, "r1", "bob")
    assert again["changed"] is False and again["decided_by"] == "alice"
    assert len(log.events) == events  # idempotent: nothing appended


def test_a_level_recommendation_moves_the_level(config):
    issue(config, "up", level="aggressive")
    recs.apply_recommendation(config, "up", "alice")
    assert config.level == "aggressive"


def test_decisions_refuse_what_cannot_be_decided(config):
    with pytest.raises(NotFound):
        recs.apply_recommendation(config, "never-issued", "alice")
    with pytest.raises(InvalidInput):
        recs.apply_recommendation(config, "", "alice")
    issue(config, "a")
    issue(config, "d")
    recs.apply_recommendation(config, "a", "alice")
    recs.dismiss_recommendation(config, "d", "alice", "not now")
    with pytest.raises(ConflictError):
        recs.dismiss_recommendation(config, "a", "alice")  # applied: roll back instead
    with pytest.raises(ConflictError):
        recs.apply_recommendation(config, "d", "alice")
    assert recs.dismiss_recommendation(config, "d", "bob")["changed"] is False


def test_a_stale_if_match_is_refused_and_appends_nothing(config, log):
    issue(config)
    stale = config.seq - 1
    with pytest.raises(ConflictError):
        recs.apply_recommendation(config, "r1", "alice", expected_seq=stale)
    assert recs.get_recommendation(config, "r1")["status"] == "issued"


def test_a_decision_made_meanwhile_elsewhere_is_not_made_twice(config, log):
    issue(config)
    real_append = config.append

    def racing_append(drafts, expected_seq=None):
        # another node applies it between our read and our append
        config.append = real_append
        real_append([EventDraft("recommendation_applied",
                                {"id": "r1", "parameters": {"batch_timeout_ms": 80}}, "bob")])
        return real_append(drafts, expected_seq)

    config.append = racing_append
    answer = recs.apply_recommendation(config, "r1", "alice")
    assert answer["changed"] is False and answer["decided_by"] == "bob"
    assert [e.type for e in log.events].count("recommendation_applied") == 1


def test_listing_filters_by_status(config):
    issue(config, "a")
    issue(config, "b")
    recs.dismiss_recommendation(config, "b", "alice")
    assert [r["id"] for r in recs.list_recommendations(config)] == ["a", "b"]
    assert [r["id"] for r in recs.list_recommendations(config, "issued")] == ["a"]
    with pytest.raises(InvalidInput) as caught:
        recs.list_recommendations(config, "open")
    assert caught.value.field == "status"


def test_grafana_alerts_are_recorded_and_memory_critical_moves_to_conservative(config, log):
    answer = receive_grafana(config, GRAFANA_BODY, "grafana")
    assert answer["recorded"] == 2 and answer["repeats"] == 0
    alerts = [e for e in log.events if e.type == "alert_received"]
    assert [e.payload["name"] for e in alerts] == ["NotifyMemoryCritical", "NotifyP99High"]
    assert alerts[0].payload["values"] == {"B": 0.97, "C": 1.0}
    assert alerts[0].actor == "grafana"
    [mitigation] = answer["mitigations"]
    assert mitigation["applied"] is True and config.level == "conservative"
    assert config.values["memory_budget_mb"] == 512  # balanced's, kept: not conservative's
    assert [e.type for e in log.events[-2:]] == ["level_set", "parameter_overridden"]
    assert log.events[-1].actor == "grafana" and "NotifyMemoryCritical" in log.events[-1].reason

    config.rollback(mitigation["undo"], actor="alice")  # reversible
    assert config.level == "balanced"


def test_a_repeated_notification_appends_nothing_and_does_not_reapply(config, log):
    [mitigation] = receive_grafana(config, GRAFANA_BODY, "grafana")["mitigations"]
    config.rollback(mitigation["undo"], actor="alice")
    events = len(log.events)
    again = receive_grafana(config, GRAFANA_BODY, "grafana")
    assert again["recorded"] == 0 and again["repeats"] == 2 and again["mitigations"] == []
    assert len(log.events) == events and config.level == "balanced"  # the admin's undo holds


def test_a_resolved_alert_is_recorded_without_mitigation(config):
    body = copy.deepcopy(GRAFANA_BODY)
    body["alerts"] = body["alerts"][:1]
    body["alerts"][0]["status"] = "resolved"
    answer = receive_grafana(config, body, "grafana")
    assert answer["recorded"] == 1 and answer["mitigations"] == []
    assert config.level == "balanced"


def test_no_mitigation_when_already_conservative(config):
    config.change({"level": "conservative"}, actor="alice")
    [mitigation] = receive_grafana(config, GRAFANA_BODY, "grafana")["mitigations"]
    assert mitigation["applied"] is False and "already" in mitigation["why"]


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda b: b.pop("alerts"), "alerts"),
    (lambda b: b.update(alerts=[]), "alerts"),
    (lambda b: b["alerts"][1]["labels"].pop("alertname"), "alerts[1].labels.alertname"),
    (lambda b: b["alerts"][0].update(status="pending"), "alerts[0].status"),
    (lambda b: b["alerts"][0].update(labels=["x"]), "alerts[0].labels"),
    (lambda b: b["alerts"][0].update(values=[1]), "alerts[0].values"),
    (lambda b: b["alerts"][0].update(fingerprint=7), "alerts[0].fingerprint"),
    (lambda b: b.update(alerts=b["alerts"] * (MAX_ALERTS // 2 + 1)), "alerts"),
])
def test_a_malformed_notification_names_its_field_and_records_nothing(config, log, mutate,
                                                                      field):
    body = copy.deepcopy(GRAFANA_BODY)
    mutate(body)
    with pytest.raises(InvalidInput) as caught:
        receive_grafana(config, body, "grafana")
    assert caught.value.field == field
    assert log.events == []


def test_fields_grafana_may_add_are_ignored_and_long_values_bounded():
    body = copy.deepcopy(GRAFANA_BODY)
    body["alerts"][0]["newInGrafana13"] = {"x": 1}
    body["alerts"][0]["labels"].update({f"l{i}": "v" * 5000 for i in range(50)})
    [alert, _] = parse_grafana(body)
    assert len(alert.labels) == 20 and max(len(v) for v in alert.labels.values()) == 200


def test_every_mitigation_rule_is_documented_for_operators():
    from pathlib import Path

    from service.domain.alerts import MITIGATIONS

    operations = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    for rule in MITIGATIONS:
        assert f"| `{rule.alertname}` | level `{rule.level}` | {rule.why} |" in operations
