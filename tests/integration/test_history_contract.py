"""The history routes fuzzed from the OpenAPI document, as every route is in
test_api_contract, but on a node whose log holds a history (pages with
items, cursors inside it, read marks that move) and with the user's own
token as well as the publish token: no request is a server error, and every
answer conforms to the document."""

from __future__ import annotations

import zlib

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from service.adapters.tokens import UserTokens
from service.config import Settings
from service.entrypoints.openapi import spec
from tests.support.api_app import create_test_app

PUBLISH = "history-contract-publish-token"
USER_SECRET = "history-contract-user-secret"
schema = schemathesis.openapi.from_dict(spec()).include(tag="Notification history")
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance,
          response_headers_conformance]


@pytest.fixture
def seeded(sqlite_url, tmp_path):
    """A node on SQLite (nothing in the background) whose log holds alice's
    history: her own entries of two categories and priorities, a broadcast,
    and another user's entries in between."""
    app = create_test_app(Settings.from_env({
        "DATABASE_URL": sqlite_url, "VAR_DIR": str(tmp_path / "var"),
        "PUBLISH_TOKEN": PUBLISH, "ADMIN_TOKEN": "history-contract-admin-token",
        "USER_TOKEN_SECRET": USER_SECRET, "NODE_ID": "history-contract",
        "INFLUX_URL": "http://127.0.0.1:9", "TELEMETRY_ENABLED": "0"}))
    client = app.flask.test_client()
    for i in range(30):
        target = ({"broadcast": True} if i % 10 == 9 else
                  {"user_id": "bob"} if i % 7 == 3 else {"user_id": "alice"})
        answer = client.post("/api/v1/notifications", headers={
            "Authorization": f"Bearer {PUBLISH}"}, json={
            **target, "category": ("news", "chat")[i % 2],
            "priority": ("low", "normal", "high", "critical")[i % 4], "payload": {"i": i}})
        assert answer.status_code == 202, answer.get_json()
    yield app
    app.close()


@schema.parametrize()
@settings(max_examples=60, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_generated_history_requests_get_documented_answers(case, seeded):
    """Most cases are moved onto alice (the generated user ids have no
    history) and page one way (both cursors at once is a 422), mostly with
    cursors, categories and read marks inside her history; a third of them
    carry alice's own token (a 403 on another user)."""
    pick = zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode())
    if pick % 4:
        case.path_parameters = {**case.path_parameters, "user_id": "alice"}
    query = case.query or {}
    if "before" in query and "after" in query and pick % 5:  # mostly one way, as clients page
        case.query = {k: v for k, v in query.items() if k != ("before", "after")[pick % 2]}
    if case.query and pick % 3:  # cursors and filters that land inside alice's history
        case.query = {k: v % 40 if k in ("before", "after") and isinstance(v, int) else
                      ("news", "chat")[pick % 2] if k == "category" else v
                      for k, v in case.query.items()}
    if isinstance(case.body, dict) and isinstance(case.body.get("offset"), int) and pick % 3:
        case.body = {**case.body, "offset": case.body["offset"] % 40}
    token = UserTokens(USER_SECRET, 3600).issue("alice") if pick % 3 == 0 else PUBLISH
    case.call_and_validate(app=seeded.wsgi, headers={"Authorization": f"Bearer {token}"},
                           checks=CHECKS)
