"""The one place where service errors become HTTP and Socket.IO answers."""

from __future__ import annotations

import logging
import math

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from service.domain.backpressure import Overloaded
from service.domain.connections import ConnectionLimitReached
from service.domain.errors import (
    ConflictError,
    IdempotencyConflict,
    InternalError,
    InvalidInput,
    MalformedRequest,
    NotFound,
    OffsetOutOfRange,
    PayloadTooLarge,
    PresenceUnavailable,
    ServiceError,
    StorageUnavailable,
    Unauthorized,
    new_error_id,
)
from service.domain.throttle import Throttled

log = logging.getLogger(__name__)

HTTP_STATUS: dict[type[ServiceError], int] = {
    MalformedRequest: 400,
    Unauthorized: 401,
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
        response.headers["WWW-Authenticate"] = 'Bearer realm="notify"'
    if isinstance(error, PresenceUnavailable):
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if isinstance(error, Throttled | Overloaded | StorageUnavailable):
        response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return response


def socket_error(error: ServiceError) -> dict:
    """The body of an ``error`` event, and of a refused connection's data."""
    return error.to_dict()


def register_http_errors(app: Flask) -> None:
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
