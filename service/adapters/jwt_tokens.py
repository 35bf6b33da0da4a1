"""Standard JWT user tokens (PyJWT): ``sub`` is the user id.

One key source, set by exactly one of JWT_SECRET (HS256), JWT_PUBLIC_KEY (a
PEM: RS256 for an RSA key, ES256 for a P-256 key) or JWT_JWKS_URL (the key
named by the token's ``kid``; RS256 or ES256 by that key's type). The
algorithm is pinned by the key, never taken from the token: ``none`` and
HS256 signed with a public key as its secret (the algorithm-confusion
attack) are refused. ``exp`` and ``sub`` are required; ``nbf`` is checked
when present, ``aud`` and ``iss`` when JWT_AUDIENCE / JWT_ISSUER are set.

Every rejection is an ``Unauthorized`` whose message names the reason, and
never carries a library's exception text.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.exceptions import InvalidSubjectError

from service.domain.errors import InvalidInput, Unauthorized
from service.domain.model import validate_user_id

LEEWAY_S = 30  # clock skew allowed on exp, nbf and iat
MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as its hash
MAX_JWT_CHARS = 8192  # an RS4096 token with a few claims is under 1.5 KB
JWKS_LIFESPAN_S = 300.0  # a fetched key set is used this long, then fetched again
JWKS_REFETCH_COOLDOWN_S = 10.0  # an unknown kid refetches the key set at most this often
JWKS_FAILURE_BACKOFF_S = 5.0  # after a failed fetch, no other for this long
JWKS_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


class JwtConfigError(ValueError):
    """The JWT settings cannot be used (config.py makes it a ConfigError)."""


def _refuse(reason: str) -> Unauthorized:
    return Unauthorized(f"the user token {reason}", field="token")


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts, the first a JSON object with ``alg``.
    Today's itsdangerous tokens have three parts too, but their first is
    the payload (``{"sub": ...}``), which has no ``alg``."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[0]:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(header, dict) and "alg" in header


def algorithm_for(key: Any) -> str | None:
    """The one algorithm a public key verifies: RS256 for RSA (2048 bits or
    more), ES256 for P-256; None for any other key."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256" if key.key_size >= 2048 else None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ES256" if isinstance(key.curve, ec.SECP256R1) else None
    return None


def read_public_key(value: str) -> str:
    """JWT_PUBLIC_KEY: the PEM text itself (``\\n`` escapes allowed, as some
    hosts put them in variables), or the path of a PEM file."""
    text = value.strip()
    if not text.startswith("-----BEGIN"):
        try:
            text = Path(text).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise JwtConfigError(
                "JWT_PUBLIC_KEY is neither a PEM (-----BEGIN PUBLIC KEY-----...) nor the path "
                f"of a readable PEM file: {type(exc).__name__} on {value[:200]!r}") from None
    return text.replace("\\n", "\n")


def load_public_key(pem: str) -> tuple[Any, str]:
    """The key and its algorithm; JwtConfigError names what is wrong."""
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise JwtConfigError("JWT_PUBLIC_KEY is not a PEM public key (-----BEGIN PUBLIC KEY-----;"
                             " a private key or a certificate is not taken)") from None
    algorithm = algorithm_for(key)
    if algorithm is None:
        raise JwtConfigError("JWT_PUBLIC_KEY must be an RSA key of 2048 bits or more (RS256) "
                             "or an EC P-256 key (ES256)")
    return key, algorithm


class _JwksClient(jwt.PyJWKClient):
    """PyJWKClient, whose cache and unknown-kid cooldown we keep, plus a
    back-off after a failed fetch: with the JWKS server down, a flood of
    connections must not become a flood of fetches."""

    def __init__(self, url: str, *, cooldown_s: float, backoff_s: float) -> None:
        super().__init__(url, cache_jwk_set=True, lifespan=JWKS_LIFESPAN_S,
                         timeout=JWKS_TIMEOUT_S, cooldown_duration=cooldown_s)
        self._backoff_s = backoff_s
        self._failed_at: float | None = None

    def fetch_data(self) -> Any:
        if self._failed_at is not None and time.monotonic() - self._failed_at < self._backoff_s:
            raise jwt.PyJWKClientConnectionError("backing off after a failed fetch")
        try:
            data = super().fetch_data()
        except (jwt.PyJWTError, OSError, ValueError) as exc:  # ValueError: not JSON
            self._failed_at = time.monotonic()
            log.warning("fetching the JWKS at %s failed (%s); JWTs naming keys not yet "
                        "fetched are refused, next try in %g s", self.uri, type(exc).__name__,
                        self._backoff_s)
            raise jwt.PyJWKClientConnectionError(type(exc).__name__) from None
        self._failed_at = None
        return data


class JwtVerifier:
    """Verifies a JWT and returns its ``sub``; build it with one key source."""

    def __init__(self, *, secret: str = "", public_key: str = "", jwks_url: str = "",
                 audience: str = "", issuer: str = "",
                 jwks_cooldown_s: float = JWKS_REFETCH_COOLDOWN_S,
                 jwks_backoff_s: float = JWKS_FAILURE_BACKOFF_S) -> None:
        check_sources(secret, public_key, jwks_url, audience, issuer)
        self._audience = audience or None
        self._issuer = issuer or None
        self._key: Any = None
        self._algorithm = ""
        self._jwks: _JwksClient | None = None
        if secret:
            self._key, self._algorithm = secret.encode(), "HS256"
        elif public_key:
            self._key, self._algorithm = load_public_key(public_key)
        else:
            self._jwks = _JwksClient(jwks_url, cooldown_s=jwks_cooldown_s,
                                     backoff_s=jwks_backoff_s)

    def verify(self, token: str) -> str:
        """The user id the token is for, or Unauthorized with the reason."""
        if len(token) > MAX_JWT_CHARS:
            raise _refuse(f"is longer than {MAX_JWT_CHARS} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _refuse("is not a well-formed JWT") from None
        key, algorithm = self._key_for(header)
        if header.get("alg") != algorithm:
            raise _refuse(f"is not signed with {algorithm}, the only algorithm this node "
                          "takes for its key")
        try:
            claims = jwt.decode(
                token, key, algorithms=[algorithm], audience=self._audience,
                issuer=self._issuer, leeway=LEEWAY_S,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None})
        except jwt.PyJWTError as exc:
            raise _reason(exc) from None
        try:
            return validate_user_id(claims["sub"], "token")
        except InvalidInput:
            raise _refuse("has a sub that is not a valid user id (1-128 of letters, digits "
                          "and _.@:+-)") from None

    def _key_for(self, header: dict) -> tuple[Any, str]:
        if self._jwks is None:
            return self._key, self._algorithm
        if header.get("alg") not in ("RS256", "ES256"):  # refused before any fetch
            raise _refuse("is not signed with RS256 or ES256, the algorithms this node takes "
                          "for its key set")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _refuse("has no kid (key id) in its header; the key set needs one")
        try:
            jwk = self._jwks.get_signing_key(kid)  # one at a time: PyJWKClient locks
        except jwt.PyJWKClientConnectionError:
            raise Unauthorized("the user token's key set could not be fetched; retry later",
                               field="token") from None
        except jwt.PyJWTError:
            raise _refuse("names an unknown key (kid not in the key set)") from None
        algorithm = algorithm_for(jwk.key)
        if algorithm is None or (jwk.algorithm_name not in (None, "", algorithm)):
            raise _refuse("names a key of a type this node does not take (RS256 or ES256)")
        return jwk.key, algorithm


def _reason(exc: Exception) -> Unauthorized:
    """The rejection for one PyJWT error; the most specific classes first."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return _refuse("has expired (exp)")
    if isinstance(exc, jwt.InvalidSignatureError):
        return _refuse("has a bad signature")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return _refuse("is not valid yet (nbf or iat in the future)")
    if isinstance(exc, jwt.InvalidAudienceError):
        return _refuse("is for another audience (aud)")
    if isinstance(exc, jwt.InvalidIssuerError):
        return _refuse("is from an issuer this node does not accept (iss)")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        claim = exc.claim if exc.claim in ("exp", "sub", "aud", "iss") else "a required"
        return _refuse(f"has no {claim} claim")
    if isinstance(exc, InvalidSubjectError):
        return _refuse("has a sub that is not a string")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return _refuse("is signed with an algorithm this node does not take")
    if isinstance(exc, jwt.DecodeError):
        return _refuse("is not a well-formed JWT (or a claim has the wrong type)")
    return _refuse("is not valid")


def check_sources(secret: str, public_key: str, jwks_url: str, audience: str = "",
                  issuer: str = "") -> None:
    """At most one key source; JWT_AUDIENCE / JWT_ISSUER only with one."""
    given = [name for name, value in (("JWT_SECRET", secret), ("JWT_PUBLIC_KEY", public_key),
                                      ("JWT_JWKS_URL", jwks_url)) if value]
    if len(given) > 1:
        raise JwtConfigError(f"{' and '.join(given)} are both set: set one of JWT_SECRET, "
                             "JWT_PUBLIC_KEY or JWT_JWKS_URL, so that which key verifies a "
                             "token is never in doubt")
    if not given and (audience or issuer):
        raise JwtConfigError("JWT_AUDIENCE or JWT_ISSUER is set, but no JWT key: set one of "
                             "JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL")
    if secret and len(secret.encode()) < MIN_SECRET_BYTES:
        raise JwtConfigError(f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes "
                             "(RFC 7518: an HS256 key as long as its hash)")
    if jwks_url and not jwks_url.lower().startswith(("https://", "http://")):
        raise JwtConfigError("JWT_JWKS_URL must be an http:// or https:// URL")


def jwt_verifier(*, secret: str, public_key: str, jwks_url: str, audience: str,
                 issuer: str) -> JwtVerifier | None:
    """The verifier the settings describe; None when no JWT key is set."""
    check_sources(secret, public_key, jwks_url, audience, issuer)
    if not (secret or public_key or jwks_url):
        return None
    return JwtVerifier(secret=secret, public_key=public_key, jwks_url=jwks_url,
                       audience=audience, issuer=issuer)
