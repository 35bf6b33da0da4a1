"""A user's notification history and read mark over HTTP:

    GET  /api/v1/users/<user_id>/notifications?before=&after=&limit=&category=&priority=
    POST /api/v1/users/<user_id>/read   {"offset": N}

Taken with the publish token (an app's backend) or with the user's own token
(``Authorization: Bearer <user token>``: the tokens Socket.IO takes, checked
by the same ``UserTokens.verify``), for that user only: another user's token
is a 403. Paging rules: service.domain.history; reads and marks:
service.service_layer.user_history.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, jsonify, request

from service.adapters.tokens import UserTokens
from service.domain.errors import Forbidden, InvalidInput, Unauthorized
from service.domain.history import HistoryPage, HistoryQuery, cursors, is_read, parse_query
from service.domain.model import parse_offset, validate_user_id
from service.entrypoints.auth import BearerAuth, bearer_token
from service.entrypoints.http_input import json_object
from service.service_layer.ports import StreamPosition
from service.service_layer.user_history import History

READ_BODY_MAX = 1024  # {"offset": N}


def history_blueprint(history: History, publishers: BearerAuth, tokens: UserTokens) -> Blueprint:
    bp = Blueprint("history", __name__)

    def authorize(user_id: str) -> str:
        """The path's user id, once the token may read it: the publish token
        (any user), or that user's own token."""
        token = bearer_token()
        if token is None:
            raise Unauthorized("send Authorization: Bearer <publish token, or the user's own "
                               "token>", field="Authorization")
        try:
            publishers.match(token.encode())
        except Unauthorized:
            pass
        else:
            return validate_user_id(user_id)
        try:
            own = tokens.verify(token)
        except Unauthorized as exc:
            raise Unauthorized(f"the token is neither the publish token nor a valid user "
                               f"token ({exc.message})", field="Authorization") from None
        if own != user_id:
            raise Forbidden("this user token is another user's: a user token reads and marks "
                            "only its own user's notifications", field="user_id")
        return own

    @bp.get("/api/v1/users/<user_id>/notifications")
    def list_notifications(user_id: str) -> Response:
        user_id = authorize(user_id)
        query = parse_query(request.args.to_dict(flat=False))
        page, position = history.page(user_id, query)
        return Response(render(user_id, page, query, position), mimetype="application/json")

    @bp.post("/api/v1/users/<user_id>/read")
    def mark_read(user_id: str) -> tuple[Response, int]:
        user_id = authorize(user_id)
        body = json_object(("offset",), max_bytes=READ_BODY_MAX)
        if "offset" not in body:
            raise InvalidInput("offset is required: the read mark moves up to it",
                               field="offset")
        result = history.mark_read(user_id, parse_offset(body["offset"], "offset"))
        return jsonify({"user_id": user_id, "acked": result.acked, "unread": result.count,
                        "head": result.head}), 200

    return bp


def render(user_id: str, page: HistoryPage, query: HistoryQuery,
           position: StreamPosition) -> str:
    """The answer's JSON. Each item is the entry's Socket.IO form (its
    ``wire_json``, rendered once by the model) with ``read`` added."""
    acked = position.acked
    items = ",".join(
        f'{n.wire_json[:-1]},"read":{"true" if is_read(n.offset, acked) else "false"}}}'
        for n in page.items)
    rest = json.dumps({"user_id": user_id, **cursors(page, query, position.head),
                       "acked": acked, "head": position.head}, separators=(",", ":"))
    return f'{{"items":[{items}],{rest[1:]}'
