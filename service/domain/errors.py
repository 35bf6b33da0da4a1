"""One exception type per kind of failure.

The entrypoints map each of these to an HTTP status or a Socket.IO error in
one place (``service.entrypoints.error_answers``); nothing below the entrypoints
knows about HTTP.
"""

from __future__ import annotations

import uuid


def new_error_id() -> str:
    """An id for one failure: the answer carries it, and the one log line
    that holds the failure's own text names it. Clients never see that text."""
    return uuid.uuid4().hex[:12]


class ServiceError(Exception):
    """Base class: every error the service raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None,
                 error_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.error_id = error_id

    def to_dict(self) -> dict[str, str | float]:
        body: dict[str, str | float] = {"error": self.code, "detail": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.error_id is not None:
            body["error_id"] = self.error_id
        return body


class InvalidInput(ServiceError):
    """The request is well-formed but a field breaks a rule."""

    code = "invalid_input"


class MalformedRequest(ServiceError):
    """The request could not be parsed at all (bad JSON, wrong content type)."""

    code = "malformed_request"


class PayloadTooLarge(ServiceError):
    code = "payload_too_large"


class Unauthorized(ServiceError):
    """No credentials, or credentials that do not verify."""

    code = "unauthorized"


class Forbidden(ServiceError):
    """Valid credentials, for someone else: a user's token names another user."""

    code = "forbidden"


class OffsetOutOfRange(ServiceError):
    """A client named an offset that its stream never reached."""

    code = "offset_out_of_range"


class StorageUnavailable(ServiceError):
    """The notification log cannot be reached; the caller may retry."""

    code = "storage_unavailable"
    retry_after = 1.0


class StorageBusy(StorageUnavailable):
    """Every database connection of the pool is in use and none came free
    in time: the database is fine, this node is busy; retry after
    ``retry_after`` seconds."""

    code = "storage_busy"

    def __init__(self, message: str, *, retry_after: float = 1.0,
                 error_id: str | None = None) -> None:
        super().__init__(message, error_id=error_id)
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, str | float]:
        return {**super().to_dict(), "retry_after": self.retry_after}


class NodeStopping(StorageUnavailable):
    """The node was stopped (SIGTERM) before it answered: what the request
    did may or may not have been stored. A publish retried with the same
    Idempotency-Key, on another node, is answered either way."""

    code = "node_stopping"


class ConflictError(ServiceError):
    """A change was made against a version of the state that is no longer the
    latest (optimistic concurrency): re-read, then decide again."""

    code = "conflict"


class IdempotencyConflict(ServiceError):
    """An ``Idempotency-Key`` already stored came with a different body."""

    code = "idempotency_conflict"


class NotFound(ServiceError):
    """The request names something that does not exist (a recommendation id)."""

    code = "not_found"


class PresenceUnavailable(ServiceError):
    """Redis, which holds the cluster's presence, cannot be reached; retry."""

    code = "presence_unavailable"


class PublishOnlyNode(ServiceError):
    """A Socket.IO client reached a node that only publishes (WRITE_ONLY=1)."""

    code = "publish_only_node"


class InternalError(ServiceError):
    """A bug met while serving one client: it is told, and the node goes on."""

    code = "internal_error"
