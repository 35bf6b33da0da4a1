"""GET and PUT /api/v1/config: the live tunables of this node (admin token)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from service.entrypoints.auth import require_token
from service.entrypoints.publish_api import json_body
from service.service_layer.tuning import LiveConfig


def config_blueprint(config: LiveConfig, admin_token: str) -> Blueprint:
    bp = Blueprint("config", __name__, url_prefix="/api/v1")

    @bp.get("/config")
    def get_config() -> Response:
        require_token(admin_token, "admin")
        return jsonify(config.snapshot())

    @bp.put("/config")
    def put_config() -> Response:
        require_token(admin_token, "admin")
        return jsonify(config.change(json_body(), actor="admin"))

    return bp
