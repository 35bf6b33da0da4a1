"""The app, in process, against its OpenAPI document.

- Every operation that takes a token refuses a request without one, with a
  wrong one and with the other kind of token, with the documented error body.
- A body with a field the document does not list is refused, naming it.
- Schemathesis generates requests for every operation from the document
  (a fixed, derandomized number per operation, with the right token) and
  checks that none is a server error and every answer conforms to it.
- The few behaviours the document promises that generated requests rarely
  reach: the Grafana redirect, 409 on a stale If-Match, recommendations'
  decisions, trends' 503 without InfluxDB, the Markdown report.
"""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from service.domain.control import RECOMMENDATION_ISSUED, EventDraft
from service.entrypoints.openapi import spec
from tests.support.api_app import ADMIN_TOKEN, PUBLIC, PUBLISH_TOKEN, build_app, operations
from tests.support.backing_services import INFLUX_URL

DOCUMENT = spec()
TOKEN_OF = {"publishToken": PUBLISH_TOKEN, "adminToken": ADMIN_TOKEN}
SAMPLE_PATH_VALUES = {"user_id": "alice", "recommendation_id": "rec-batch"}
SECURED = [(m, p, op) for m, p, op in operations(DOCUMENT) if (m, p) not in PUBLIC]


def token_for(method: str, path: str) -> str | None:
    """The token the operation takes; for a method the path does not serve,
    the path's (each path takes one kind), so that the 405 is reached."""
    item = DOCUMENT["paths"][path]
    op = item.get(method.lower()) or next(iter(item.values()))
    names = [name for requirement in op["security"] for name in requirement]
    return TOKEN_OF[names[0]] if names else None


def inline(node: Any) -> Any:
    """The schema with every $ref replaced by what it names (none recurse)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = DOCUMENT
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/")]
            return inline({**target, **{k: v for k, v in node.items() if k != "$ref"}})
        return {k: inline(v) for k, v in node.items()}
    if isinstance(node, list):
        return [inline(v) for v in node]
    return node


def conforms(method: str, path: str, response: Any, status: int | None = None) -> Any:
    """The answer's JSON, after checking its status (``status``, if given) is
    documented for the operation (or is an error, `default`) and its body
    and required headers match the document."""
    if status is not None:
        assert response.status_code == status, (method, path, response.get_data())
    responses = DOCUMENT["paths"][path][method.lower()]["responses"]
    documented = responses.get(str(response.status_code), responses.get("default"))
    assert documented is not None, f"{method} {path}: {response.status_code} is not documented"
    documented = inline(documented)
    for header, spec_header in documented.get("headers", {}).items():
        if spec_header.get("required"):
            assert header in response.headers, f"{method} {path}: no {header} header"
    content = documented.get("content", {}).get(response.mimetype)
    assert content is not None, f"{method} {path}: {response.mimetype} is not documented"
    body = response.get_json() if response.mimetype == "application/json" else response.text
    errors = [e.message for e in jsonschema_rs.validator_for(
        content["schema"], validate_formats=True).iter_errors(body)]
    assert errors == [], f"{method} {path} {response.status_code}: {errors}\n{body}"
    return body


def request(client: Any, method: str, path: str, token: str | None = None,
            body: Any = None, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    headers.update(kwargs.pop("headers", {}))
    return client.open(path, method=method, headers=headers, json=body, **kwargs)


def concrete(path: str) -> str:
    for name, value in SAMPLE_PATH_VALUES.items():
        path = path.replace(f"{{{name}}}", value)
    return path


def example_body(op: dict[str, Any]) -> Any:
    media = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    return media.get("example")


@pytest.fixture
def app(sqlite_url, tmp_path):
    thresholds = gc.get_threshold()  # a config change sets the process's gc threshold
    built = build_app(sqlite_url, str(tmp_path / "var"))
    yield built
    built.close()
    gc.set_threshold(*thresholds)


@pytest.fixture
def client(app):
    return app.flask.test_client()


def issue(app: Any, rec_id: str, **proposal: Any) -> None:
    """A recommendation, as the analysis jobs issue one."""
    draft = EventDraft(RECOMMENDATION_ISSUED, {"id": rec_id, **proposal}, "jobs", "analysis")
    app.control_log.append_many([draft], None)


@pytest.mark.parametrize(("method", "path"), [(m, p) for m, p, _ in SECURED])
def test_a_token_is_required_and_only_the_right_kind_is_taken(client, method, path):
    op = DOCUMENT["paths"][path][method.lower()]
    right = token_for(method, path)
    other = PUBLISH_TOKEN if right == ADMIN_TOKEN else ADMIN_TOKEN
    for token in (None, "not-a-token", f"{right}x", other):
        response = request(client, method, concrete(path), token, example_body(op))
        body = conforms(method, path, response, 401)
        assert body["error"] == "unauthorized" and body["field"] == "Authorization"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path"), [  # Grafana's webhook: Grafana owns its fields
    (m, p) for m, p, op in SECURED if "requestBody" in op and p != "/api/v1/alerts/grafana"])
def test_an_unknown_field_is_refused_and_named(client, method, path):
    op = DOCUMENT["paths"][path][method.lower()]
    body = {**example_body(op), "colour": "blue"}
    response = request(client, method, concrete(path), token_for(method, path), body)
    assert conforms(method, path, response, 422)["field"] == "colour"


@pytest.mark.parametrize(("body", "field"), [
    ({"user_id": "alice\n", "category": "news"}, "user_id"),
    ({"user_ids": ["alice", "bob\n"], "category": "news"}, "user_ids"),
    ({"user_id": "alice", "category": "news\n"}, "category"),
])
def test_a_pattern_holds_for_the_whole_value(client, body, field):
    """The document's patterns match whole values: a trailing newline is not
    one of a user id's or a category's characters (and would break the
    notification's JSON on the wire)."""
    path = "/api/v1/notifications"
    response = request(client, "POST", path, PUBLISH_TOKEN, body)
    assert conforms("POST", path, response, 422)["field"] == field


def test_a_user_id_in_a_path_holds_for_the_whole_segment(client):
    response = request(client, "GET", "/api/v1/users/alice%0A/unread", PUBLISH_TOKEN)
    assert conforms("GET", "/api/v1/users/{user_id}/unread", response, 422)["field"] == "user_id"


# -- generated requests -------------------------------------------------------------


# Built from the document, not loaded from an app at import: the app is each
# test's own (test_openapi checks that /openapi.json serves this document).
schema = schemathesis.openapi.from_dict(DOCUMENT)
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance,
          response_headers_conformance]


@pytest.fixture
def seeded_app(sqlite_url, tmp_path, influx_database):
    """A node on a real InfluxDB database, with two recommendations issued."""
    thresholds = gc.get_threshold()
    app = build_app(sqlite_url, str(tmp_path / "var"), INFLUX_URL=INFLUX_URL,
                    INFLUX_DB=influx_database)
    issue(app, "rec-batch", parameters={"batch_size": 20}, evidence="p99 over budget")
    issue(app, "rec-level", level="aggressive", evidence="CPU idle")
    yield app
    app.close()
    gc.set_threshold(*thresholds)


@schema.parametrize()
@settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_generated_requests_get_documented_answers(case, seeded_app):
    """Through the app's WSGI callable, Socket.IO's wrapper included."""
    token = token_for(case.method, case.path)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    case.call_and_validate(app=seeded_app.wsgi, headers=headers, checks=CHECKS)


# -- what generated requests rarely reach ------------------------------------------


def test_the_older_admin_page_redirects_to_grafana(client):
    response = client.get("/admin/performance")
    assert response.status_code == 302
    assert response.headers["Location"] == "http://grafana.example:3000/d/notify-overview"


def test_a_stale_if_match_is_a_conflict_and_changes_nothing(client):
    path = "/api/v1/config"
    first = request(client, "GET", path, ADMIN_TOKEN)
    etag = first.headers["ETag"]
    changed = request(client, "PUT", path, ADMIN_TOKEN, {"parameters": {"batch_size": 20}},
                      headers={"If-Match": etag})
    assert conforms("PUT", path, changed, 200)["parameters"]["batch_size"] == 20
    stale = request(client, "PUT", path, ADMIN_TOKEN, {"parameters": {"batch_size": 30}},
                    headers={"If-Match": etag})
    assert conforms("PUT", path, stale, 409)["field"] == "If-Match"
    after = conforms("GET", path, request(client, "GET", path, ADMIN_TOKEN), 200)
    assert after["parameters"]["batch_size"] == 20


@pytest.mark.parametrize("apply_path", ["/api/v1/recommendations/{recommendation_id}/apply",
                                        "/admin/api/performance/apply-recommendation"])
def test_recommendations_are_applied_once_and_a_dismissed_one_is_a_conflict(
        app, client, apply_path):
    issue(app, "rec-batch", parameters={"batch_size": 20})
    issue(app, "rec-level", level="aggressive")

    def apply(rec_id: str) -> Any:
        if "{" in apply_path:
            return request(client, "POST", apply_path.replace("{recommendation_id}", rec_id),
                           ADMIN_TOKEN, {"reason": "try it"})
        return request(client, "POST", apply_path, ADMIN_TOKEN,
                       {"recommendation_id": rec_id, "reason": "try it"})

    first = conforms("POST", apply_path, apply("rec-batch"), 200)
    assert first["recommendation"]["status"] == "applied"
    assert first["config"]["parameters"]["batch_size"] == 20
    seq = first["config"]["seq"]
    again = conforms("POST", apply_path, apply("rec-batch"), 200)  # idempotent
    assert again["recommendation"]["status"] == "applied" and again["config"]["seq"] == seq
    assert conforms("POST", apply_path, apply("rec-unknown"), 404)["error"] == "not_found"
    dismiss = "/api/v1/recommendations/{recommendation_id}/dismiss"
    dismissed = request(client, "POST", dismiss.replace("{recommendation_id}", "rec-level"),
                        ADMIN_TOKEN)
    assert conforms("POST", dismiss, dismissed, 200)["recommendation"]["status"] == "dismissed"
    assert conforms("POST", apply_path, apply("rec-level"), 409)["error"] == "conflict"
    for path in ("/api/v1/recommendations", "/admin/api/performance/recommendations"):
        listed = conforms("GET", path, request(client, "GET", path + "?status=applied",
                                               ADMIN_TOKEN), 200)
        assert [r["id"] for r in listed["recommendations"]] == ["rec-batch"]


def test_trends_are_a_503_with_retry_after_when_influxdb_is_unreachable(client):
    path = "/admin/api/performance/trends"
    response = request(client, "GET", path, ADMIN_TOKEN)
    assert conforms("GET", path, response, 503)["error"] == "storage_unavailable"
    assert int(response.headers["Retry-After"]) >= 1


def test_the_optimization_report_comes_as_json_or_markdown(sqlite_url, tmp_path,
                                                           influx_database):
    app = build_app(sqlite_url, str(tmp_path / "var"), INFLUX_URL=INFLUX_URL,
                    INFLUX_DB=influx_database)
    try:
        client = app.flask.test_client()
        path = "/admin/api/performance/optimization-report"
        since = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
        report = request(client, "GET", path, ADMIN_TOKEN,
                         query_string={"since": since.isoformat()})
        assert conforms("GET", path, report, 200)["period"]["since"].startswith(
            since.strftime("%Y-%m-%dT%H:%M:%S"))
        markdown = request(client, "GET", path + "?format=markdown", ADMIN_TOKEN)
        assert markdown.mimetype == "text/markdown"
        assert conforms("GET", path, markdown, 200).startswith("#")
        bad = request(client, "GET", path + "?format=pdf", ADMIN_TOKEN)
        assert conforms("GET", path, bad, 422)["field"] == "format"
    finally:
        app.close()


def test_error_bodies_are_documented_for_routing_errors(client):
    missing = request(client, "GET", "/api/v1/nothing-here", ADMIN_TOKEN)
    assert missing.status_code == 404
    assert json.loads(missing.get_data())["error"] == "not_found"
    wrong_method = request(client, "DELETE", "/api/v1/config", ADMIN_TOKEN)
    assert wrong_method.status_code == 405
    assert conforms("GET", "/api/v1/config", wrong_method)["error"] == "method_not_allowed"
