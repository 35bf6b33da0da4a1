"""/api/v1/config: the live tunables, their history, time travel and rollback
(admin token). Answers that show a config carry ``ETag: "<seq>"``; a change
sent with ``If-Match: <seq>`` is refused with 409 if the log has moved on.
The admin token's name is the actor the control log records."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from service.domain.control import parse_time
from service.entrypoints.auth import BearerAuth
from service.entrypoints.http_input import CONTROL_BODY_MAX, if_match, json_body
from service.service_layer.live_config import LiveConfig


def config_blueprint(config: LiveConfig, admins: BearerAuth) -> Blueprint:
    bp = Blueprint("config", __name__, url_prefix="/api/v1")

    @bp.get("/config")
    def get_config() -> Response:
        admins.require()
        return tagged(config.snapshot())

    @bp.put("/config")
    def put_config() -> Response:
        actor = admins.require()
        return tagged(config.change(json_body(CONTROL_BODY_MAX), actor=actor,
                                    expected_seq=if_match()))

    @bp.post("/config/rollback")
    def rollback() -> Response:
        actor = admins.require()
        return tagged(config.rollback(json_body(CONTROL_BODY_MAX), actor=actor,
                                      expected_seq=if_match()))

    @bp.get("/config/history")
    def history() -> Response:
        admins.require()
        return jsonify({"events": config.history(request.args.get("limit"))})

    @bp.get("/config/at")
    def config_at() -> Response:
        admins.require()
        return jsonify(config.at(parse_time(request.args.get("t"))))

    return bp


def tagged(snapshot: dict) -> Response:
    response = jsonify(snapshot)
    response.set_etag(str(snapshot["seq"]))
    return response
