"""GET /api/v1/users/<user_id>/unread: a user's unread count, for apps.

For an app's backend (a badge, a digest e-mail), so it takes the publish
token, as publishing does. The count is served from the query cache when it
can be (service.service_layer.cached_log) and stops at UNREAD_CAP.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, jsonify

from service.domain.model import validate_user_id
from service.entrypoints.auth import BearerAuth
from service.service_layer.ports import Unread


def unread_blueprint(unread: Callable[[str], Unread], publishers: BearerAuth) -> Blueprint:
    bp = Blueprint("unread", __name__)

    @bp.get("/api/v1/users/<user_id>/unread")
    def get_unread(user_id: str) -> tuple[Response, int]:
        publishers.require()
        result = unread(validate_user_id(user_id))
        return jsonify({"user_id": user_id, "unread": result.count, "acked": result.acked,
                        "head": result.head}), 200

    return bp
