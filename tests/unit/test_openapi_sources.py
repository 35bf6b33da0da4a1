"""Every pattern and limit of the OpenAPI document is the code's own.

The document (service.entrypoints.api_spec) imports the constants that
validation uses; these tests fail when it carries a pattern or a limit that
is not one of them, when a constant stops being what the validator checks,
and when the prose states a limit the code does not hold."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.wrappers import Response

from service.domain import alerts, control, history, idempotency, model
from service.domain.errors import InvalidInput, PayloadTooLarge
from service.entrypoints import docs_site, http_input, publish_api
from service.entrypoints.admin_api import OVERVIEW_DASHBOARD
from service.entrypoints.openapi import spec
from service.service_layer import live_config, recommendations, reports
from service.service_layer.ports import UNREAD_CAP

# The patterns the code matches whole (fullmatch), by what they check.
REQUEST_PATTERNS = {
    "user id": model.USER_ID_PATTERN,
    "category": model.CATEGORY_PATTERN,
    "Idempotency-Key": idempotency.KEY_PATTERN,
    "If-Match": http_input.IF_MATCH_PATTERN,
    "docs page": docs_site.PAGE_NAME.pattern,
}


def literal(text: str) -> str:
    """A pattern for exactly ``text`` (re.escape escapes more than ECMA needs)."""
    return re.sub(r"([\\.^$*+?()\[\]{}|])", r"\\\1", text)


# What the code sends: a pattern of the answers, declared where it is made.
ANSWER_PATTERNS = {
    "notification id": model.NOTIFICATION_ID_PATTERN,
    "ETag": http_input.ETAG_PATTERN,
    "WWW-Authenticate": literal(http_input.BEARER_CHALLENGE),
}
# The config's schemas are derived from the tunables' table, which owns
# their bounds and the THROTTLE pattern (tests/unit/test_tuning.py and the
# config's own tests hold them); everything else is held here.
CONFIG_SCHEMAS = ("#/components/schemas/ParameterChanges",
                  "#/components/schemas/ParameterValues", "#/components/schemas/Parameters")
LIMITS = ("minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "default")
PUBLISH = "#/paths/~1api~1v1~1notifications/post"
HISTORY = "#/paths/~1api~1v1~1users~1{user_id}~1notifications/get/parameters"
GRAFANA = "#/components/schemas/GrafanaAlert/properties"
USER_ID = {"minLength": 1, "maxLength": model.USER_ID_MAX_LENGTH}
CATEGORY = {"minLength": 1, "maxLength": model.CATEGORY_MAX_LENGTH}
OFFSET = {"minimum": 0, "maximum": model.MAX_OFFSET}
ISSUED_ID = {"minLength": 1, "maxLength": control.MAX_TEXT}

# Each limit of what a request may send, where the document states it, and
# the constant the validator checks it against.
EXPECTED_REQUEST_LIMITS: dict[str, dict[str, Any]] = {
    "#/components/schemas/UserId": USER_ID,
    f"{PUBLISH}/parameters/Idempotency-Key": {"minLength": 1,
                                              "maxLength": idempotency.KEY_MAX_LENGTH},
    "#/components/schemas/PublishRequest/properties/user_id": USER_ID,
    "#/components/schemas/PublishRequest/properties/user_ids": {
        "minItems": 1, "maxItems": model.MAX_RECIPIENTS},
    "#/components/schemas/PublishRequest/properties/category": CATEGORY,
    "#/components/schemas/PublishRequest/properties/priority": {
        "default": model.Priority.NORMAL.value},
    "#/components/schemas/PublishRequest/properties/payload": {"default": {}},
    f"{HISTORY}/before": OFFSET,
    f"{HISTORY}/after": OFFSET,
    f"{HISTORY}/limit": {"minimum": 1, "maximum": history.MAX_LIMIT,
                         "default": history.DEFAULT_LIMIT},
    f"{HISTORY}/category": CATEGORY,
    "#/components/schemas/ReadRequest/properties/offset": OFFSET,
    "#/components/schemas/Reason": {"maxLength": control.MAX_REASON},
    "#/paths/~1api~1v1~1config~1history/get/parameters/limit": {
        "minimum": 1, "maximum": live_config.HISTORY_MAX, "default": live_config.HISTORY_DEFAULT},
    "#/paths/~1api~1v1~1config~1rollback/post/requestBody/properties/to_seq": {"minimum": 0},
    "#/paths/~1api~1v1~1recommendations~1{recommendation_id}/get/parameters/"
    "recommendation_id": ISSUED_ID,
    "#/paths/~1api~1v1~1recommendations~1{recommendation_id}~1apply/post/parameters/"
    "recommendation_id": ISSUED_ID,
    "#/paths/~1api~1v1~1recommendations~1{recommendation_id}~1dismiss/post/parameters/"
    "recommendation_id": ISSUED_ID,
    "#/paths/~1admin~1api~1performance~1apply-recommendation/post/requestBody/properties/"
    "recommendation_id": ISSUED_ID,
    "#/paths/~1admin~1api~1performance~1optimization-report/get/parameters/format": {
        "default": "json"},
    "#/components/schemas/GrafanaWebhook/properties/alerts": {
        "minItems": 1, "maxItems": alerts.MAX_ALERTS},
    "#/components/schemas/GrafanaWebhook/properties/truncatedAlerts": {"minimum": 0},
    f"{GRAFANA}/labels/properties/alertname": {"minLength": 1},
    f"{GRAFANA}/startsAt": {"maxLength": alerts.MAX_MARK},
    f"{GRAFANA}/fingerprint": {"maxLength": alerts.MAX_MARK},
}


def walk(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(JSON pointer, schema-like object) for every object of the document."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from walk(value, f"{where}/{str(key).replace('/', '~1')}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{where}/{i}")


def request_schemas(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, schema) for each schema a request is checked against: the
    parameters and the request bodies, with the named schemas they use
    (each under its own name); parameters are named, not numbered."""
    seen: set[str] = set()
    todo: list[tuple[str, Any]] = []
    for path, item in document["paths"].items():
        for method, op in item.items():
            at = f"#/paths/{path.replace('/', '~1')}/{method}"
            for parameter in op.get("parameters", []):
                if "$ref" in parameter:
                    parameter = document["components"]["parameters"][
                        parameter["$ref"].rsplit("/", 1)[1]]
                todo.append((f"{at}/parameters/{parameter['name']}", parameter["schema"]))
            if "requestBody" in op:
                todo.append((f"{at}/requestBody",
                             op["requestBody"]["content"]["application/json"]["schema"]))
    while todo:
        where, schema = todo.pop()
        if isinstance(schema, list):
            todo += [(f"{where}/{i}", s) for i, s in enumerate(schema)]
            continue
        if not isinstance(schema, dict):
            continue
        if "$ref" in schema:
            ref = schema["$ref"]
            if ref not in seen:
                seen.add(ref)
                todo.append((ref, document["components"]["schemas"][ref.rsplit("/", 1)[1]]))
            continue
        yield where, schema
        for key in ("items", "additionalProperties", "allOf", "anyOf", "oneOf"):
            if key in schema:
                todo.append((where if key.endswith("Of") else f"{where}/{key}", schema[key]))
        for name, prop in schema.get("properties", {}).items():
            todo.append((f"{where}/properties/{name}", prop))


def test_every_pattern_of_the_document_is_one_the_code_declares():
    declared = {f"^{p}$" for p in (*REQUEST_PATTERNS.values(), *ANSWER_PATTERNS.values())}
    declared |= {f"^({p})$" for p in REQUEST_PATTERNS.values()}  # a top-level alternation
    declared.add(f"{literal(OVERVIEW_DASHBOARD)}$")  # after GRAFANA_URL, whatever it is
    stray = {where: node["pattern"] for where, node in walk(spec(), "#")
             if isinstance(node.get("pattern"), str) and not where.startswith(CONFIG_SCHEMAS)
             and node["pattern"] not in declared}
    assert stray == {}, "patterns the code does not declare (import its constant instead)"


def test_each_request_limit_is_the_constant_its_validator_checks():
    found: dict[str, dict[str, Any]] = {}
    for where, schema in request_schemas(spec()):
        if where.startswith(CONFIG_SCHEMAS):
            continue
        limits = {k: schema[k] for k in LIMITS if k in schema}
        if limits:
            found[where] = limits
    assert found == EXPECTED_REQUEST_LIMITS


# a pattern as JSON Schema applies it (search, anchored by ^ and $) and as the
# validator does (fullmatch) must agree: on these, at and past each limit
SAMPLES = {
    "user id": ["alice", "a" * model.USER_ID_MAX_LENGTH, "a" * (model.USER_ID_MAX_LENGTH + 1),
                "", "bob\n", "a b", "x@y.z:1+2-_", "é"],
    "category": ["order.shipped", "c" * model.CATEGORY_MAX_LENGTH,
                 "c" * (model.CATEGORY_MAX_LENGTH + 1), "", "a@b", "chat\n"],
    "Idempotency-Key": ["k", "k" * idempotency.KEY_MAX_LENGTH,
                        "k" * (idempotency.KEY_MAX_LENGTH + 1), "", "a b", "ü", "~!"],
    "If-Match": ["*", "5", '"5"', 'W/"12"', '"5', "", 'W/ "5"', '""5""', "²", "-1"],
    "docs page": ["runbook", "api_v2-x", "../x", "a.md", ""],
}


@pytest.mark.parametrize("name", sorted(REQUEST_PATTERNS))
def test_the_document_pattern_and_the_validator_agree(name):
    document_patterns = {node["pattern"] for _, node in walk(spec(), "#")
                         if isinstance(node.get("pattern"), str)}
    pattern = REQUEST_PATTERNS[name]
    [anchored] = [p for p in document_patterns if p in (f"^{pattern}$", f"^({pattern})$")]
    ecma = anchored.removesuffix("$") + r"\Z"  # ECMA's $ is the end; Python's admits a \n
    for sample in SAMPLES[name]:
        assert (re.search(ecma, sample) is not None) is (
            re.fullmatch(pattern, sample) is not None), (name, sample)


def refused(check: Any, *args: Any) -> bool:
    try:
        check(*args)
    except (InvalidInput, PayloadTooLarge):
        return True
    return False


def test_the_validators_check_the_declared_constants():
    """At each limit a value is taken, one past it is refused: a validator
    that kept a literal of its own fails here."""
    user, category = "u" * model.USER_ID_MAX_LENGTH, "c" * model.CATEGORY_MAX_LENGTH
    assert not refused(model.validate_user_id, user)
    assert refused(model.validate_user_id, user + "u")
    body = {"user_id": "a", "category": category}
    assert not refused(model.PublishRequest.from_body, body)
    assert refused(model.PublishRequest.from_body, {**body, "category": category + "c"})
    many = [f"u{i}" for i in range(model.MAX_RECIPIENTS)]
    assert not refused(model.PublishRequest.from_body, {"user_ids": many, "category": "c"})
    assert refused(model.PublishRequest.from_body, {"user_ids": [*many, "x"], "category": "c"})
    room = model.MAX_PAYLOAD_BYTES - len('{"t":""}')
    assert not refused(model.PublishRequest.from_body, {**body, "payload": {"t": "x" * room}})
    assert refused(model.PublishRequest.from_body, {**body, "payload": {"t": "x" * (room + 1)}})
    key = "k" * idempotency.KEY_MAX_LENGTH
    assert not refused(idempotency.parse_key, key, {})
    assert refused(idempotency.parse_key, key + "k", {})
    assert not refused(model.parse_offset, model.MAX_OFFSET, "offset")
    assert refused(model.parse_offset, model.MAX_OFFSET + 1, "offset")
    for name, edge in (("limit", history.MAX_LIMIT), ("before", model.MAX_OFFSET),
                       ("after", model.MAX_OFFSET)):
        assert not refused(history.parse_query, {name: [str(edge)]})
        assert refused(history.parse_query, {name: [str(edge + 1)]})
    assert history.parse_query({}).limit == history.DEFAULT_LIMIT


def test_the_other_validators_check_the_declared_constants():
    def alert(**fields: Any) -> dict[str, Any]:
        return {"status": "firing", "labels": {"alertname": "A"}, **fields}

    for field in ("startsAt", "fingerprint"):
        assert not refused(alerts.parse_grafana, {"alerts": [alert(**{
            field: "x" * alerts.MAX_MARK})]})
        assert refused(alerts.parse_grafana, {"alerts": [alert(**{
            field: "x" * (alerts.MAX_MARK + 1)})]})
    assert not refused(alerts.parse_grafana, {"alerts": [alert()] * alerts.MAX_ALERTS})
    assert refused(alerts.parse_grafana, {"alerts": [alert()] * (alerts.MAX_ALERTS + 1)})
    issue = control.RECOMMENDATION_ISSUED
    assert not refused(control.check_payload, issue, {"id": "r" * control.MAX_TEXT})
    assert refused(control.check_payload, issue, {"id": "r" * (control.MAX_TEXT + 1)})
    level = {"level": "balanced"}
    assert not refused(control.EventDraft, control.LEVEL_SET, level, "admin",
                       "r" * control.MAX_REASON)
    assert refused(control.EventDraft, control.LEVEL_SET, level, "admin",
                   "r" * (control.MAX_REASON + 1))
    assert not refused(live_config._limit, str(live_config.HISTORY_MAX))
    assert refused(live_config._limit, str(live_config.HISTORY_MAX + 1))
    assert live_config._limit(None) == live_config.HISTORY_DEFAULT


def test_the_enums_are_the_code_s():
    document = spec()
    schemas = document["components"]["schemas"]
    assert document["components"]["parameters"]["RecommendationStatus"]["schema"]["enum"] == \
        list(recommendations.STATUSES)
    assert schemas["GrafanaAlert"]["properties"]["status"]["enum"] == list(alerts.STATES)
    assert schemas["PublishRequest"]["properties"]["priority"]["enum"] == \
        [p.value for p in model.Priority]


def test_the_prose_states_the_code_s_limits():
    document = spec()
    kib = {name: f"{size // 1024} KiB" for name, size in (
        ("payload", model.MAX_PAYLOAD_BYTES), ("body", http_input.MAX_REQUEST_BYTES),
        ("control", http_input.CONTROL_BODY_MAX))}
    [too_large] = [e["when"] for e in document["x-errors"] if e["status"] == 413]
    assert too_large.count(kib["payload"]) + too_large.count(kib["control"]) >= 2
    assert kib["body"] in too_large
    publish = document["paths"]["/api/v1/notifications"]["post"]["description"]
    assert f"the first {publish_api.MAX_OFFSETS_IN_ANSWER}, then" in publish
    assert f"{idempotency.DEFAULT_WINDOW_S / 3600:g} h by default" in publish
    unread = document["paths"]["/api/v1/users/{user_id}/unread"]["get"]["description"]
    assert f"counted up to {UNREAD_CAP:,}" in unread
    report = document["paths"]["/admin/api/performance/optimization-report"]["get"]
    assert f"at most {reports.MAX_PERIOD.days} days" in report["description"]


def test_the_app_holds_requests_and_answers_to_the_same_constants(sqlite_url, tmp_path):
    from service.config import Settings
    from tests.support.api_app import create_test_app  # here: the others need no app

    settings = Settings.from_env({
        "DATABASE_URL": sqlite_url, "VAR_DIR": str(tmp_path / "var"),
        "PUBLISH_TOKEN": "sources-publish-token-0123456789",
        "ADMIN_TOKEN": "sources-admin-token-0123456789", "NODE_ID": "sources",
        "INFLUX_URL": "http://127.0.0.1:9", "TELEMETRY_ENABLED": "0",
        "GRAFANA_URL": "http://grafana.example:3000"})
    app = create_test_app(settings)
    try:
        assert app.flask.config["MAX_CONTENT_LENGTH"] == http_input.MAX_REQUEST_BYTES
        client = app.flask.test_client()
        refused_401 = client.get("/api/v1/config")
        assert refused_401.status_code == 401
        assert refused_401.headers["WWW-Authenticate"] == http_input.BEARER_CHALLENGE
        redirect = client.get("/admin/performance")
        assert redirect.headers["Location"].endswith(OVERVIEW_DASHBOARD)
    finally:
        app.close()


def test_the_etag_pattern_is_what_a_config_answer_carries():
    answer = Response()
    answer.set_etag(str(12))  # as config_api tags a config with its seq
    assert re.fullmatch(http_input.ETAG_PATTERN, answer.headers["ETag"])


@pytest.mark.parametrize("header,seq", [("", None), ("*", None), ("12", 12), ('"12"', 12),
                                        ('W/"12"', 12), ('"12', 12)])
def test_if_match_takes_what_its_pattern_takes(header, seq):
    with Flask(__name__).test_request_context(headers={"If-Match": header}):
        assert http_input.if_match() == seq


@pytest.mark.parametrize("header", ['""12""', "²", "-1", 'W/ "12"', "12a"])
def test_if_match_refuses_what_its_pattern_refuses(header):
    assert not re.fullmatch(http_input.IF_MATCH_PATTERN, header)
    with Flask(__name__).test_request_context(headers={"If-Match": header}):
        assert refused(http_input.if_match)
