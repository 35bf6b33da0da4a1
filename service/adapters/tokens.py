"""Signed, expiring user tokens, bound to one user id (itsdangerous HMAC)."""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from service.domain.errors import Unauthorized
from service.domain.model import validate_user_id


class UserTokens:
    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="notify.user-token.v1")
        self._ttl = ttl_seconds

    def issue(self, user_id: str) -> str:
        return self._serializer.dumps({"sub": validate_user_id(user_id)})

    def verify(self, token: object) -> str:
        """Return the user id the token was issued for, or raise Unauthorized."""
        if not isinstance(token, str) or not token or len(token) > 1024:
            raise Unauthorized("a user token is required in auth.token", field="token")
        if not token.isascii():  # never one of ours; "\ud800" would not even encode
            raise Unauthorized("the user token is not valid", field="token")
        try:
            claims = self._serializer.loads(token, max_age=self._ttl)
        except SignatureExpired:
            raise Unauthorized("the user token has expired", field="token") from None
        except BadSignature:
            raise Unauthorized("the user token is not valid", field="token") from None
        user_id = claims.get("sub") if isinstance(claims, dict) else None
        return validate_user_id(user_id, "token")
