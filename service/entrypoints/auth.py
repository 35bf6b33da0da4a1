"""Bearer-token checks for the HTTP APIs, in constant time.

A route is guarded by a ``BearerAuth``: the named tokens allowed for one
purpose (``publish``, ``admin``, or ``alert webhook``: the admin tokens and
ALERT_WEBHOOK_TOKENS). Which token matched names the actor that the control
log records, so several admins (and Grafana) each get their own. A token
outside a route's set is refused exactly as an unknown one is.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from flask import request

from service.domain.errors import Unauthorized


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class BearerAuth:
    def __init__(self, purpose: str, tokens: Mapping[str, str]) -> None:
        if not tokens or not all(tokens.values()):
            raise ValueError(f"{purpose}: at least one non-empty token is needed")
        self.purpose = purpose
        self._tokens = [(name, token.encode()) for name, token in tokens.items()]

    def require(self) -> str:
        """The name of the token the request carries, or Unauthorized."""
        token = bearer_token()
        if token is None:
            raise Unauthorized(f"send Authorization: Bearer <{self.purpose} token>",
                               field="Authorization")
        return self.match(token.encode())

    def match(self, given: bytes) -> str:
        # Every token is compared, whatever matched before: the time taken
        # tells nothing about which token, or how much of one, was right.
        found = None
        for name, token in self._tokens:
            if hmac.compare_digest(given, token):
                found = name
        if found is None:
            raise Unauthorized(f"the {self.purpose} token is not valid", field="Authorization")
        return found
