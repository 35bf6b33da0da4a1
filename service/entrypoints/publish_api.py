"""POST /api/v1/notifications: parse, call the handler, shape the answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from service.domain.idempotency import HEADER as IDEMPOTENCY_HEADER
from service.domain.model import PublishResult, format_time
from service.entrypoints.auth import BearerAuth
from service.entrypoints.http_input import json_body

MAX_OFFSETS_IN_ANSWER = 1000


def publish_blueprint(publish: Callable[[Any, str | None], PublishResult],
                      publishers: BearerAuth) -> Blueprint:
    bp = Blueprint("publish", __name__)

    @bp.post("/api/v1/notifications")
    def create_notification() -> tuple[Response, int]:
        publishers.require()
        result = publish(json_body(), request.headers.get(IDEMPOTENCY_HEADER))
        return jsonify(_answer(result)), 202

    return bp


def _answer(result: PublishResult) -> dict:
    """Every recipient holds the entry at the same offset; a targeted answer
    also lists it per user, as the design's answer shape has it."""
    answer: dict[str, Any] = {
        "id": result.id,
        "created_at": format_time(result.created_at),
        "offset": result.offset,
        "recipients": result.recipients,
    }
    if result.user_ids is None:
        answer["broadcast"] = True
        return answer
    users = result.user_ids
    if len(users) > MAX_OFFSETS_IN_ANSWER:
        users = users[:MAX_OFFSETS_IN_ANSWER]
        answer["offsets_truncated"] = True
    answer["offsets"] = dict.fromkeys(users, result.offset)
    return answer
