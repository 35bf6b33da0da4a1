"""/api/v1/recommendations (admin tokens) and /api/v1/alerts/grafana (admin
tokens, and the alert webhook's tokens, which open no other route).

Deciding on a recommendation answers the recommendation and the config it
left live, with the config's ETag; Grafana's webhook answers what it
recorded and which mitigations it applied."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, g, jsonify, request

from service.entrypoints.auth import BearerAuth
from service.entrypoints.http_input import if_match, json_body, json_object
from service.service_layer import recommendations as recs
from service.service_layer.alert_webhook import receive_grafana
from service.service_layer.live_config import LiveConfig

DECISION_FIELDS = ("reason",)


def control_blueprint(config: LiveConfig, admins: BearerAuth) -> Blueprint:
    bp = Blueprint("control", __name__, url_prefix="/api/v1")

    @bp.before_request
    def _admins_only() -> None:
        g.actor = admins.require()

    @bp.get("/recommendations")
    def list_all() -> Response:
        return jsonify({"recommendations": recs.list_recommendations(
            config, request.args.get("status"))})

    @bp.get("/recommendations/<recommendation_id>")
    def get_one(recommendation_id: str) -> Response:
        return jsonify(recs.get_recommendation(config, recommendation_id))

    @bp.post("/recommendations/<recommendation_id>/apply")
    def apply(recommendation_id: str) -> Response:
        return decide(recs.apply_recommendation, recommendation_id)

    @bp.post("/recommendations/<recommendation_id>/dismiss")
    def dismiss(recommendation_id: str) -> Response:
        return decide(recs.dismiss_recommendation, recommendation_id)

    def decide(how: Callable[..., dict], recommendation_id: str) -> Response:
        """``{reason?}`` and ``If-Match``; the decision and the config it left."""
        body = json_object(DECISION_FIELDS, optional=True)
        decided = how(config, recommendation_id, g.actor, body.get("reason"),
                      expected_seq=if_match())
        snapshot = config.snapshot()
        response = jsonify({"recommendation": decided, "config": snapshot})
        response.set_etag(str(snapshot["seq"]))
        return response

    return bp


def alerts_blueprint(config: LiveConfig, callers: BearerAuth) -> Blueprint:
    """The alert webhook alone: ``callers`` are the admin tokens and
    ALERT_WEBHOOK_TOKENS, so Grafana's token can record alerts (and the
    mitigations they trigger) but change nothing else; the token's name is
    the actor."""
    bp = Blueprint("alerts", __name__, url_prefix="/api/v1")

    @bp.before_request
    def _webhook_callers_only() -> None:
        g.actor = callers.require()

    @bp.post("/alerts/grafana")
    def grafana_alert() -> Response:
        # Grafana's shape, not ours: fields it adds in new versions are ignored
        return jsonify(receive_grafana(config, json_body(), g.actor))

    return bp
