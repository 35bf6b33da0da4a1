"""Bearer-token checks for the HTTP APIs, in constant time."""

from __future__ import annotations

import hmac

from flask import request

from service.domain.errors import Unauthorized


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_token(expected: str, purpose: str) -> None:
    """Raise Unauthorized unless the request carries ``expected``."""
    token = bearer_token()
    if token is None:
        raise Unauthorized(f"send Authorization: Bearer <{purpose} token>", field="Authorization")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized(f"the {purpose} token is not valid", field="Authorization")
