"""User tokens, bound to one user id: signed, expiring itsdangerous tokens
(HMAC, the format ``python -m service token`` prints) and, when a JWT key is
configured, standard JWTs (``service.adapters.jwt_tokens``). Both are taken
during the deprecation period of the first; a token with the JWT shape goes
to the JWT verifier, any other to itsdangerous."""

from __future__ import annotations

from typing import TYPE_CHECKING

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from service.adapters.jwt_tokens import MAX_JWT_CHARS, looks_like_jwt
from service.domain.errors import Unauthorized
from service.domain.model import validate_user_id

if TYPE_CHECKING:
    from service.adapters.jwt_tokens import JwtVerifier

MAX_TOKEN_CHARS = 1024  # an itsdangerous token for a 128-character id is under 250


class UserTokens:
    def __init__(self, secret: str, ttl_seconds: int, jwt: JwtVerifier | None = None) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="notify.user-token.v1")
        self._ttl = ttl_seconds
        self._jwt = jwt

    def issue(self, user_id: str) -> str:
        return self._serializer.dumps({"sub": validate_user_id(user_id)})

    def verify(self, token: object) -> str:
        """Return the user id the token was issued for, or raise Unauthorized."""
        if not isinstance(token, str) or not token:
            raise Unauthorized("a user token is required in auth.token", field="token")
        if len(token) > MAX_JWT_CHARS or not token.isascii():
            # never one of ours ("\ud800" would not even encode)
            raise Unauthorized("the user token is not valid", field="token")
        if looks_like_jwt(token):
            if self._jwt is None:
                raise Unauthorized("the user token is a JWT, and this node takes no JWTs",
                                   field="token")
            return self._jwt.verify(token)
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("the user token is not valid", field="token")
        try:
            claims = self._serializer.loads(token, max_age=self._ttl)
        except SignatureExpired:
            raise Unauthorized("the user token has expired", field="token") from None
        except BadSignature:
            raise Unauthorized("the user token is not valid", field="token") from None
        user_id = claims.get("sub") if isinstance(claims, dict) else None
        return validate_user_id(user_id, "token")
