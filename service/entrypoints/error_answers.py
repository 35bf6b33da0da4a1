"""The one place where service errors become HTTP and Socket.IO answers."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Iterable

from flask import Flask, Response, jsonify
from gevent import GreenletExit
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from service.domain.backpressure_policy import Overloaded
from service.domain.connections import ConnectionLimitReached
from service.domain.errors import (
    ConflictError,
    Forbidden,
    IdempotencyConflict,
    InternalError,
    InvalidInput,
    MalformedRequest,
    NodeStopping,
    NotFound,
    OffsetOutOfRange,
    PayloadTooLarge,
    PresenceUnavailable,
    ServiceError,
    StorageUnavailable,
    Unauthorized,
    new_error_id,
)
from service.domain.token_bucket import Throttled
from service.entrypoints.http_input import BEARER_CHALLENGE

log = logging.getLogger(__name__)

HTTP_STATUS: dict[type[ServiceError], int] = {
    MalformedRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    OffsetOutOfRange: 409,
    ConflictError: 409,
    IdempotencyConflict: 409,
    PayloadTooLarge: 413,
    InvalidInput: 422,
    StorageUnavailable: 503,
    InternalError: 500,
    PresenceUnavailable: 503,
    ConnectionLimitReached: 503,
    Throttled: 429,
    Overloaded: 429,
}
RETRY_AFTER_SECONDS = 1


def http_status(error: ServiceError) -> int:
    for kind in type(error).__mro__:
        if kind in HTTP_STATUS:
            return HTTP_STATUS[kind]
    return 400


def to_response(error: ServiceError) -> Response:
    response = jsonify(error.to_dict())
    response.status_code = http_status(error)
    if isinstance(error, Unauthorized):
        response.headers["WWW-Authenticate"] = BEARER_CHALLENGE
    if isinstance(error, PresenceUnavailable):
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if isinstance(error, Throttled | Overloaded | StorageUnavailable):
        response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return response


def socket_error(error: ServiceError) -> dict:
    """The body of an ``error`` event, and of a refused connection's data."""
    return error.to_dict()


def register_http_errors(app: Flask) -> None:
    # Flask's documented way to wrap its WSGI app; mypy takes it for a method
    app.wsgi_app = _answer_when_stopped(app.wsgi_app)  # type: ignore[method-assign]

    @app.errorhandler(ServiceError)
    def _service_error(error: ServiceError) -> Response:
        return to_response(error)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_error: RequestEntityTooLarge) -> Response:
        limit = app.config.get("MAX_CONTENT_LENGTH")
        return to_response(PayloadTooLarge(f"the request body is over {limit} bytes", field="body"))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        response = jsonify(
            {
                "error": (error.name or "error").lower().replace(" ", "_"),
                "detail": error.description,
            }
        )
        response.status_code = error.code or 500
        allowed = getattr(error, "valid_methods", None)  # a 405 says what is allowed
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        error_id = new_error_id()
        log.exception("unhandled error [%s]: %s", error_id, error)
        response = jsonify({"error": "internal_error", "detail": "internal server error",
                            "error_id": error_id})
        response.status_code = 500
        return response


def _answer_when_stopped(wsgi_app: Callable) -> Callable:
    """A request still running when the node stops is killed (GreenletExit,
    which Flask's handlers never see): answered 503 ``node_stopping``, not
    the WSGI server's bare 500 (a publish killed mid-commit may be stored:
    its retry with the same Idempotency-Key says which)."""
    def answering(environ: dict, start_response: Callable) -> Iterable[bytes]:
        try:
            return wsgi_app(environ, start_response)
        except GreenletExit:
            error = NodeStopping("this node stopped before answering; retry on another node "
                                 "(a publish with the same Idempotency-Key)")
            start_response("503 SERVICE UNAVAILABLE",
                           [("Content-Type", "application/json"),
                            ("Retry-After", str(RETRY_AFTER_SECONDS))], sys.exc_info())
            return [json.dumps(error.to_dict()).encode()]
    return answering
