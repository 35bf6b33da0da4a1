"""GET /openapi.json: the HTTP API's OpenAPI document, with no token.

The document itself is data, one module per area, in
service.entrypoints.api_spec; docs/api.md is generated from it
(service.entrypoints.api_doc)."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response

from service.entrypoints.api_spec import SPEC


def spec() -> dict[str, Any]:
    """A copy of the document: callers may change theirs."""
    return json.loads(SPEC_JSON)


SPEC_JSON = json.dumps(SPEC, ensure_ascii=False)


def openapi_blueprint() -> Blueprint:
    bp = Blueprint("openapi", __name__)
    encoded = SPEC_JSON.encode()

    @bp.get("/openapi.json")
    def openapi_json() -> Response:
        return Response(encoded, mimetype="application/json")

    return bp
