"""The control API's routes kept from the older design, and /healthz.

``/admin/api/performance/*`` answer as the older admin page's API did, now
from the live node (metrics, health), the control log (recommendations) and
the analysis jobs' output in InfluxDB (trends, the optimization report).
``/admin/performance`` was that page; it now sends the browser to Grafana."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, redirect, request
from werkzeug.wrappers import Response as WerkzeugResponse

from service.domain.control import parse_time
from service.domain.errors import InvalidInput, StorageUnavailable
from service.domain.health import overall
from service.entrypoints.auth import BearerAuth
from service.entrypoints.http_input import json_object
from service.service_layer import recommendations as recs
from service.service_layer.live_config import LiveConfig
from service.service_layer.status import CRITICAL, StatusSources, component_health, live_metrics

OVERVIEW_DASHBOARD = "/d/notify-overview"
Report = Callable[[datetime | None, datetime | None], dict[str, Any]]


def admin_blueprint(sources: StatusSources, admins: BearerAuth, config: LiveConfig, *,
                    trends: Callable[[], dict[str, Any]], report: Report,
                    cluster_health: Callable[[], dict[str, Any]],
                    render_markdown: Callable[[dict[str, Any]], str]) -> Blueprint:
    bp = Blueprint("admin", __name__, url_prefix="/admin/api/performance")

    @bp.before_request
    def _admins_only() -> None:
        g.actor = admins.require()

    @bp.get("/metrics")
    def metrics() -> Response:
        return jsonify(live_metrics(sources))

    @bp.get("/health")
    def health() -> Response:
        """This node's own checks, and the health job's view of the cluster
        (from InfluxDB: null, with the reason, when it cannot be read)."""
        answer = component_health(sources)
        try:
            components = cluster_health()
            answer["cluster"] = {"status": overall(components) if components else None,
                                 "components": components}
        except StorageUnavailable as exc:
            answer["cluster"] = None
            answer["cluster_unavailable"] = exc.message
        return jsonify(answer)

    @bp.get("/trends")
    def get_trends() -> Response:
        return jsonify(trends())

    @bp.get("/recommendations")
    def recommendations() -> Response:
        return jsonify({"recommendations": recs.list_recommendations(
            config, request.args.get("status"))})

    @bp.post("/apply-recommendation")
    def apply_recommendation() -> Response:
        body = json_object(("recommendation_id", "reason"))
        if "recommendation_id" not in body:
            raise InvalidInput("recommendation_id is required", field="recommendation_id")
        decided = recs.apply_recommendation(config, body["recommendation_id"], g.actor,
                                            body.get("reason"))
        return jsonify({"recommendation": decided, "config": config.snapshot()})

    @bp.get("/optimization-report")
    def optimization_report() -> Response:
        form = request.args.get("format", "json")
        if form not in ("json", "markdown"):
            raise InvalidInput("format must be json or markdown", field="format")
        since, until = (parse_time(request.args[k], k) if request.args.get(k) else None
                        for k in ("since", "until"))
        built = report(since, until)
        if form == "json":
            return jsonify(built)
        return Response(render_markdown(built), mimetype="text/markdown")

    return bp


def grafana_blueprint(grafana_url: str) -> Blueprint:
    """No token: a browser follows it, and Grafana asks for its own login."""
    bp = Blueprint("grafana", __name__)

    @bp.get("/admin/performance")
    def overview() -> WerkzeugResponse:  # what flask.redirect makes
        return redirect(grafana_url.rstrip("/") + OVERVIEW_DASHBOARD, code=302)

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
