"""GET /api/v1/presence and /api/v1/users/<user_id>/presence: who is online.

For an app's backend (send an e-mail instead when a user is offline), so it
takes the publish token, as the unread count does. With ``REDIS_URL`` the
answer covers every node, as each last reported (every PRESENCE_INTERVAL);
this node's own part is always current.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, jsonify

from service.domain.model import validate_user_id
from service.domain.presence import Presence
from service.entrypoints.auth import BearerAuth


def presence_blueprint(cluster: Callable[[], Presence],
                       nodes_of: Callable[[str], list[str]],
                       node_id: str, publishers: BearerAuth) -> Blueprint:
    bp = Blueprint("presence", __name__)

    @bp.get("/api/v1/presence")
    def get_presence() -> tuple[Response, int]:
        publishers.require()
        return jsonify({"node": node_id, **cluster().to_json()}), 200

    @bp.get("/api/v1/users/<user_id>/presence")
    def get_user_presence(user_id: str) -> tuple[Response, int]:
        publishers.require()
        nodes = nodes_of(validate_user_id(user_id))
        return jsonify({"user_id": user_id, "online": bool(nodes), "nodes": nodes}), 200

    return bp
