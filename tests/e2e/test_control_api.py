"""The control API on a running node (real PostgreSQL, real InfluxDB):
recommendations, Grafana's webhook and its token, named admin tokens, bounds
and errors."""

import copy

import pytest
from sqlalchemy import create_engine

from service.adapters.control_log import SqlControlLog
from service.domain.control import RECOMMENDATION_ISSUED, EventDraft
from tests.support.grafana_webhook import GRAFANA_BODY
from tests.support.server_process import start_server, stop_server

ALICE = "alice-admin-token-0123456789"
GRAFANA = "grafana-webhook-token-0123456789"
GRAFANA_URL = "http://grafana.example:3000/"


@pytest.fixture
def node(pg_url, influx_database, tmp_path):
    running = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                            "ADMIN_TOKENS": f"alice:{ALICE}",
                            "ALERT_WEBHOOK_TOKENS": f"grafana:{GRAFANA}",
                            "GRAFANA_URL": GRAFANA_URL}, tmp_path)
    yield running
    assert stop_server(running) == 0, running.log_text()


@pytest.fixture
def issue(node):
    """Issue recommendations as the analysis jobs will: straight into the log."""
    engine = create_engine(node.env["DATABASE_URL"])
    log = SqlControlLog(engine)

    def issue_one(rid, **change):
        log.append(EventDraft(RECOMMENDATION_ISSUED,
                              {"id": rid, **(change or {"parameters": {"batch_size": 30}}),
                               "expected_effect": "fuller batches", "confidence": 0.7},
                              "jobs", "test"))
    yield issue_one
    engine.dispose()


def call(node, method, path, token=ALICE, **kwargs):
    return node.request(method, path, token=token, **kwargs)


def test_recommendations_are_listed_applied_once_and_dismissed(node, issue):
    issue("batch-30")
    issue("go-aggressive", level="aggressive")
    listed = call(node, "GET", "/admin/api/performance/recommendations")
    assert listed.status == 200
    assert [r["id"] for r in listed.json()["recommendations"]] == ["batch-30", "go-aggressive"]

    applied = call(node, "POST", "/admin/api/performance/apply-recommendation",
                   body={"recommendation_id": "batch-30", "reason": "measured"})
    assert applied.status == 200, applied.data
    assert applied.json()["recommendation"]["status"] == "applied"
    assert applied.json()["recommendation"]["decided_by"] == "alice"
    assert applied.json()["config"]["parameters"]["batch_size"] == 30
    seq = applied.json()["config"]["seq"]
    again = call(node, "POST", "/api/v1/recommendations/batch-30/apply")
    assert again.status == 200 and again.json()["recommendation"]["changed"] is False
    assert again.json()["config"]["seq"] == seq  # idempotent: no event appended

    stale = call(node, "POST", "/api/v1/recommendations/go-aggressive/apply",
                 raw=b"", token=ALICE)
    assert stale.status == 200  # no body is fine: reason is optional
    assert call(node, "GET", "/api/v1/config").json()["level"] == "aggressive"

    issue("later")
    conflict = node.http.request("POST", node.url + "/api/v1/recommendations/later/apply",
                                 headers={"Authorization": f"Bearer {ALICE}",
                                          "If-Match": f'"{seq}"'})
    assert conflict.status == 409 and conflict.json()["field"] == "If-Match"
    dismissed = call(node, "POST", "/api/v1/recommendations/later/dismiss",
                     body={"reason": "not now"})
    assert dismissed.json()["recommendation"]["status"] == "dismissed"
    refused = call(node, "POST", "/api/v1/recommendations/batch-30/dismiss")
    assert refused.status == 409 and "roll" in refused.json()["detail"]
    missing = call(node, "GET", "/api/v1/recommendations/nope")
    assert missing.status == 404 and missing.json() == {
        "error": "not_found", "detail": "no recommendation 'nope' was issued",
        "field": "recommendation_id"}
    only = call(node, "GET", "/api/v1/recommendations?status=dismissed").json()
    assert [r["id"] for r in only["recommendations"]] == ["later"]
    assert call(node, "GET", "/api/v1/recommendations?status=open").status == 422


def test_grafana_webhook_records_mitigates_and_can_be_undone(node):
    first = call(node, "POST", "/api/v1/alerts/grafana", token=GRAFANA, body=GRAFANA_BODY)
    assert first.status == 200, first.data
    assert first.json()["recorded"] == 2
    [mitigation] = first.json()["mitigations"]
    assert mitigation["applied"] and mitigation["level"] == "conservative"
    assert call(node, "GET", "/api/v1/config").json()["level"] == "conservative"
    history = call(node, "GET", "/api/v1/config/history").json()["events"]
    assert [(e["type"], e["actor"]) for e in history] == [
        ("alert_received", "grafana"), ("alert_received", "grafana"), ("level_set", "grafana"),
        ("parameter_overridden", "grafana")]

    undone = call(node, "POST", "/api/v1/config/rollback",
                  body={**mitigation["undo"], "reason": "memory fixed"})
    assert undone.status == 200 and undone.json()["level"] == "balanced"
    repeat = call(node, "POST", "/api/v1/alerts/grafana", token=GRAFANA, body=GRAFANA_BODY)
    assert repeat.json()["repeats"] == 2 and repeat.json()["mitigations"] == []
    assert call(node, "GET", "/api/v1/config").json()["level"] == "balanced"

    bad = copy.deepcopy(GRAFANA_BODY)
    bad["alerts"][0]["status"] = "pending"
    refused = call(node, "POST", "/api/v1/alerts/grafana", token=GRAFANA, body=bad)
    assert refused.status == 422 and refused.json()["field"] == "alerts[0].status"


def test_the_webhook_token_opens_the_webhook_and_nothing_else(node, issue):
    """Every other operation the API describes answers Grafana's token exactly
    as it answers a token nobody was given."""
    from service.entrypoints.openapi import spec

    issue("batch-30")
    webhook = ("POST", "/api/v1/alerts/grafana")
    checked = []
    for path, item in spec()["paths"].items():
        for method, op in item.items():
            if (method.upper(), path) == webhook or not op.get("security"):
                continue
            concrete = (path.replace("{recommendation_id}", "batch-30")
                        .replace("{user_id}", "u"))
            body = ({"parameters": {"batch_size": 12}, "level": "aggressive"}
                    if method in ("put", "post") else None)
            refused = call(node, method.upper(), concrete, token=GRAFANA, body=body)
            unknown = call(node, method.upper(), concrete, token="nobody-has-this-token",
                           body=body)
            assert (refused.status, refused.json()) == (unknown.status, unknown.json()), path
            assert refused.status == 401 and refused.headers["WWW-Authenticate"]
            checked.append((method.upper(), path))
    assert {("PUT", "/api/v1/config"), ("POST", "/api/v1/recommendations/{recommendation_id}"
            "/apply"), ("POST", "/api/v1/notifications"),
            ("POST", "/admin/api/performance/apply-recommendation")} <= set(checked)
    config = call(node, "GET", "/api/v1/config").json()
    assert config["seq"] == 1 and config["level"] == "balanced"  # only the issued one
    answered = call(node, "POST", "/api/v1/alerts/grafana", token=GRAFANA, body=GRAFANA_BODY)
    assert answered.status == 200, answered.data
    as_admin = call(node, "POST", "/api/v1/alerts/grafana", body=GRAFANA_BODY)
    assert as_admin.status == 200 and as_admin.json()["repeats"] == 2  # admins may too


def test_tokens_name_the_actor_and_keep_to_their_purpose(node):
    changed = call(node, "PUT", "/api/v1/config", body={"parameters": {"batch_size": 12}})
    assert changed.status == 200
    [event] = call(node, "GET", "/api/v1/config/history").json()["events"]
    assert event["actor"] == "alice"
    for token in (None, "wrong", node.env["PUBLISH_TOKEN"]):
        refused = call(node, "GET", "/api/v1/recommendations", token=token)
        assert refused.status == 401 and refused.json()["error"] == "unauthorized"
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    for token in (ALICE, node.env["ADMIN_TOKEN"]):  # admins cannot publish by default
        published = call(node, "POST", "/api/v1/notifications", token=token,
                         body={"user_id": "u", "category": "c"})
        assert published.status == 401


def test_admins_may_publish_when_configured(pg_url, influx_database, tmp_path):
    running = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                            "ADMIN_CAN_PUBLISH": "1"}, tmp_path)
    try:
        published = running.request("POST", "/api/v1/notifications",
                                    token=running.env["ADMIN_TOKEN"],
                                    body={"user_id": "u", "category": "c"})
        assert published.status == 202, published.data
    finally:
        assert stop_server(running) == 0


def test_bodies_are_bounded_and_unknown_fields_named(node):
    huge = {"parameters": {"batch_size": 20}, "reason": "x" * (70 * 1024)}
    too_large = call(node, "PUT", "/api/v1/config", body=huge)
    assert too_large.status == 413 and too_large.json()["field"] == "body"
    unknown = call(node, "POST", "/admin/api/performance/apply-recommendation",
                   body={"recommendation_id": "x", "zap": 1, "bar": 2})
    assert unknown.status == 422 and unknown.json()["field"] == "bar"
    assert "bar, zap" in unknown.json()["detail"]
    missing = call(node, "POST", "/admin/api/performance/apply-recommendation", body={})
    assert missing.status == 422 and missing.json()["field"] == "recommendation_id"
    not_object = call(node, "POST", "/api/v1/recommendations/x/dismiss", body=[1])
    assert not_object.status == 422 and not_object.json()["field"] == "body"
    assert call(node, "GET", "/api/v1/config").json()["seq"] == 0  # nothing appended


def test_every_error_is_json_and_the_old_page_redirects_to_grafana(node):
    for method, path, status in (("GET", "/nope", 404), ("GET", "/api/v1/alerts/grafana", 405)):
        answer = call(node, method, path)
        assert answer.status == status
        assert set(answer.json()) == {"error", "detail"}
    assert "POST" in answer.headers["Allow"].split(", ")  # the last answer: the 405
    page = node.http.request("GET", node.url + "/admin/performance", redirect=False)
    assert page.status == 302
    assert page.headers["Location"] == "http://grafana.example:3000/d/notify-overview"


def test_trends_come_from_the_analysis_output_in_influxdb(node):
    from datetime import UTC, datetime

    from service.adapters.influx import InfluxClient, InfluxSettings
    from service.adapters.line_protocol import encode

    assert call(node, "GET", "/admin/api/performance/trends").json()["trends"] == []
    influx = InfluxClient(InfluxSettings(url=node.env["INFLUX_URL"],
                                         database=node.env["INFLUX_DB"]))
    influx.ensure_database()
    at = int(datetime.now(UTC).timestamp()) * 1_000_000_000
    influx.write_lines([encode("analysis_trend", {"metric": "connections", "window": "1h"},
                               {"slope_per_h": 120.0, "direction": "rising", "confidence": 0.9,
                                "last": 800.0, "limit": 15000.0, "eta_s": 428400.0},
                               at, {"node": "jobs-1", "role": "jobs"})])
    [trend] = call(node, "GET", "/admin/api/performance/trends").json()["trends"]
    assert (trend["metric"], trend["window"], trend["direction"]) == ("connections", "1h",
                                                                      "rising")
    assert trend["slope_per_h"] == 120.0 and trend["eta_s"] == 428400.0


def test_the_optimization_report_lists_changes_in_json_and_markdown(node, issue):
    call(node, "PUT", "/api/v1/config", body={"level": "aggressive", "reason": "load test"})
    issue("open-one")
    report = call(node, "GET", "/admin/api/performance/optimization-report")
    assert report.status == 200, report.data
    [change] = report.json()["changes"]
    assert change["what"] == "level -> aggressive" and change["actor"] == "alice"
    assert set(change["effect"]) >= {"delivered_per_s", "delivery_p99_ms"}
    assert [r["id"] for r in report.json()["open_recommendations"]] == ["open-one"]
    text = call(node, "GET", "/admin/api/performance/optimization-report?format=markdown")
    assert text.status == 200 and text.headers["Content-Type"].startswith("text/markdown")
    assert "level -> aggressive" in text.data.decode() and "open-one" in text.data.decode()
    for query, field in (("format=xml", "format"), ("since=yesterday", "since"),
                         ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "since")):
        bad = call(node, "GET", f"/admin/api/performance/optimization-report?{query}")
        assert bad.status == 422 and bad.json()["field"] == field, (query, bad.data)
