"""The control API's routes kept from the older design, and /healthz."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from service.entrypoints.auth import require_token
from service.service_layer.status import CRITICAL, StatusSources, component_health, live_metrics


def admin_blueprint(sources: StatusSources, admin_token: str) -> Blueprint:
    bp = Blueprint("admin", __name__, url_prefix="/admin/api/performance")

    @bp.before_request
    def _admin_only() -> None:
        require_token(admin_token, "admin")

    @bp.get("/metrics")
    def metrics() -> Response:
        return jsonify(live_metrics(sources))

    @bp.get("/health")
    def health() -> Response:
        return jsonify(component_health(sources))

    return bp


def health_blueprint(sources: StatusSources) -> Blueprint:
    bp = Blueprint("healthz", __name__)

    @bp.get("/healthz")
    def healthz() -> tuple[Response, int]:
        report = component_health(sources)
        storage_down = report["components"]["storage"]["status"] == CRITICAL
        body = {
            "status": "unavailable"
            if storage_down
            else ("ok" if report["status"] == "healthy" else "degraded"),
            "node": report["node"],
            "components": {k: v["status"] for k, v in report["components"].items()},
        }
        return jsonify(body), 503 if storage_down else 200

    return bp
