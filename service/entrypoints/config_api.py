"""/api/v1/config: the live tunables, their history, time travel and rollback
(admin token). Answers that show a config carry ``ETag: "<seq>"``; a change
sent with ``If-Match: <seq>`` is refused with 409 if the log has moved on."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from service.domain.control import parse_time
from service.domain.errors import InvalidInput
from service.entrypoints.auth import require_token
from service.entrypoints.publish_api import json_body
from service.service_layer.tuning import LiveConfig


def config_blueprint(config: LiveConfig, admin_token: str) -> Blueprint:
    bp = Blueprint("config", __name__, url_prefix="/api/v1")

    @bp.get("/config")
    def get_config() -> Response:
        require_token(admin_token, "admin")
        return _tagged(config.snapshot())

    @bp.put("/config")
    def put_config() -> Response:
        require_token(admin_token, "admin")
        return _tagged(config.change(json_body(), actor="admin", expected_seq=_if_match()))

    @bp.post("/config/rollback")
    def rollback() -> Response:
        require_token(admin_token, "admin")
        return _tagged(config.rollback(json_body(), actor="admin", expected_seq=_if_match()))

    @bp.get("/config/history")
    def history() -> Response:
        require_token(admin_token, "admin")
        return jsonify({"events": config.history(request.args.get("limit"))})

    @bp.get("/config/at")
    def config_at() -> Response:
        require_token(admin_token, "admin")
        return jsonify(config.at(parse_time(request.args.get("t"))))

    return bp


def _tagged(snapshot: dict) -> Response:
    response = jsonify(snapshot)
    response.set_etag(str(snapshot["seq"]))
    return response


def _if_match() -> int | None:
    """The seq the client last read, from ``If-Match`` ("5", 5 or W/"5"); none
    or ``*`` means change whatever is there."""
    header = request.headers.get("If-Match", "").strip()
    if not header or header == "*":
        return None
    value = header.removeprefix("W/").strip('"')
    if not value.isdigit():
        raise InvalidInput('If-Match must be a config seq, as in ETag: "12"', field="If-Match")
    return int(value)
