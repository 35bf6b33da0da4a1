"""The OpenAPI document against the app's routes, itself and docs/api.md.

Every route create_app serves is described, every described operation is
served, the document is valid OpenAPI 3.1 with no dangling reference, each
operation says which token it takes, and docs/api.md is what the generator
writes from it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis

from service.bootstrap import App
from service.domain.errors import ServiceError
from service.entrypoints.api_doc import DOC, render
from service.entrypoints.error_answers import HTTP_STATUS, http_status
from service.entrypoints.openapi import spec
from tests.support.api_app import PUBLIC, USER_ROUTES, WEBHOOK, build_app, operations


def served(app: App) -> set[tuple[str, str]]:
    """(method, path) of every Flask rule, in OpenAPI's `{name}` form.
    Socket.IO is not a Flask rule: python-socketio's WSGI app serves it."""
    found = set()
    for rule in app.flask.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule.startswith("/socket.io"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        found |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return found


@pytest.fixture
def app(sqlite_url, tmp_path):
    built = build_app(sqlite_url, str(tmp_path / "var"))
    yield built
    built.close()


def test_every_route_is_described_and_every_described_operation_is_served(app):
    described = {(m, p) for m, p, _ in operations(spec())}
    undescribed = sorted(served(app) - described)
    assert undescribed == [], f"routes missing from the OpenAPI document: {undescribed}"
    unserved = sorted(described - served(app))
    assert unserved == [], f"described operations the app does not serve: {unserved}"


def test_docs_api_md_is_generated_from_the_document():
    assert DOC.read_text() == render(), "docs/api.md is stale: run `make docs`"


def test_the_document_is_valid_openapi_3_1():
    document = spec()
    assert document["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(document).validate()  # against the OpenAPI meta-schema


def test_every_reference_resolves():
    document = spec()

    def walk(node: Any, where: str) -> Iterator[str]:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                target: Any = document
                for part in ref.removeprefix("#/").split("/"):
                    target = target.get(part.replace("~1", "/")) if isinstance(
                        target, dict) else None
                if target is None:
                    yield f"{where}: {ref}"
            for key, value in node.items():
                yield from walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{where}/{i}")

    assert list(walk(document, "#")) == []


def test_each_operation_names_its_token_and_documents_the_refusal():
    document = spec()
    schemes = set(document["components"]["securitySchemes"])
    assert schemes == {"publishToken", "adminToken", "alertWebhookToken", "userToken"}
    for method, path, op in operations(document):
        assert "security" in op, f"{method} {path} does not say which token it takes"
        tokens = {name for requirement in op["security"] for name in requirement}
        assert tokens <= schemes
        if (method, path) in PUBLIC:
            assert op["security"] == [], f"{method} {path} is public"
            continue
        assert "401" in op["responses"], f"{method} {path} does not document its 401"
        if (method, path) == WEBHOOK:
            assert op["security"] == [{"adminToken": []}, {"alertWebhookToken": []}]
            continue
        if (method, path) in USER_ROUTES:
            assert op["security"] == [{"publishToken": []}, {"userToken": []}]
            assert "403" in op["responses"], f"{method} {path} documents its 403"
            continue
        assert "userToken" not in tokens, f"{method} {path}: user tokens open user routes only"
        assert len(tokens) == 1, f"{method} {path} takes exactly one kind of token"
        expected = "adminToken" if not path.startswith(("/api/v1/notifications",
                                                         "/api/v1/users/", "/api/v1/presence"
                                                         )) else "publishToken"
        assert tokens == {expected}, f"{method} {path} takes the {expected}"
        assert op["operationId"] and op["summary"] and op["tags"]
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids)), "operationIds are unique"


def test_request_bodies_refuse_unknown_fields_unless_the_sender_is_not_ours():
    document = spec()
    for method, path, op in operations(document):
        if "requestBody" not in op:
            continue
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        if "$ref" in schema:
            schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        # Grafana owns its webhook's shape and adds fields in new versions
        expected = path != "/api/v1/alerts/grafana"
        assert (schema.get("additionalProperties") is False) is expected, f"{method} {path}"


def test_each_documented_error_status_is_the_one_the_server_maps_the_error_to():
    def subclasses(kind: type) -> Iterator[type]:
        for sub in kind.__subclasses__():
            yield sub
            yield from subclasses(sub)

    # every module that defines an HTTP error is imported by the mapping's module
    errors_by_code = {k.code: k for k in (*HTTP_STATUS, *subclasses(ServiceError))}
    checked = 0
    for entry in spec()["x-errors"]:
        kind = errors_by_code.get(entry["error"])
        if kind is None:
            continue  # raised by Flask/werkzeug, not a ServiceError (405)
        assert http_status(kind.__new__(kind)) == entry["status"], entry
        checked += 1
    assert checked >= 8


def test_the_document_is_served_without_a_token(app):
    response = app.flask.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == spec()
